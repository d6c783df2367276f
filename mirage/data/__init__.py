"""Data: camera trajectories, RealEstate10K camera files and frames, clip datasets."""

from mirage.data.datasets import Re10kClipDataset, SyntheticClipDataset
from mirage.data.re10k import (
    load_frames,
    read_re10k_cameras,
    resize_clip,
    resize_frames,
    write_re10k_cameras,
)
from mirage.data.trajectories import (
    PRESETS,
    interpolate_keyframes,
    load_trajectory,
    make_trajectory,
    save_trajectory,
)

__all__ = [
    "PRESETS",
    "Re10kClipDataset",
    "SyntheticClipDataset",
    "interpolate_keyframes",
    "load_frames",
    "load_trajectory",
    "make_trajectory",
    "read_re10k_cameras",
    "resize_clip",
    "resize_frames",
    "save_trajectory",
    "write_re10k_cameras",
]
