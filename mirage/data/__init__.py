"""Data: camera trajectories, RealEstate10K camera files and frames, clip datasets."""

from mirage.data.trajectories import (
    PRESETS,
    interpolate_keyframes,
    load_trajectory,
    make_trajectory,
    save_trajectory,
)

__all__ = [
    "PRESETS",
    "interpolate_keyframes",
    "load_trajectory",
    "make_trajectory",
    "save_trajectory",
]
