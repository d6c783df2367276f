"""The official code's input file: `geometry.npz` with per-frame depth, intrinsics and poses.

Keys (as the official preprocessing writes them):

- `depths` [N,H,W] camera z-depth (0 = none), `intrinsics` [N,3,3] in pixels of H x W images,
  `poses_c2w` [N,4,4] camera-to-world (OpenCV axes);
- optional `frames` [N,H,W,3] uint8 (or [N,3,H,W] float in [0,1]) and `masks` [N,H,W] bool,
  True = keep (static); the first frame may instead come from a sibling `first_frame.png` or
  the first frame of a sibling `clip.mp4`.

Everything is validated before any model loads: equal lengths, finite values, depth >= 0,
rigid poses and positive focal lengths (`Cameras`), frame and mask sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mirage.geometry import Cameras

REQUIRED = ("depths", "intrinsics", "poses_c2w")


@dataclass
class GeometryFile:
    depths: torch.Tensor  # [N,H,W] float32
    cameras: Cameras  # N cameras of H x W images
    first_frame: torch.Tensor | None  # [3,H,W] in [0,1]
    keep: torch.Tensor | None  # [N,H,W] bool, True = static (may enter the memory)


def load_geometry(path: str | Path) -> GeometryFile:
    """Read and check a `geometry.npz`; raises ValueError / FileNotFoundError naming the key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`geometry` file not found: {path}")
    try:
        data = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable .npz file ({err})") from None
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ValueError(f"{path} lacks {missing} (needs {list(REQUIRED)})")
    depths = _finite(path, "depths", data["depths"], ndim=3)
    N, H, W = depths.shape
    K = _finite(path, "intrinsics", data["intrinsics"], shape=(N, 3, 3))
    c2w = _finite(path, "poses_c2w", data["poses_c2w"], shape=(N, 4, 4))
    if (depths < 0).any():
        raise ValueError(f"{path}: `depths` must be >= 0 (0 = no depth), min {float(depths.min())}")
    try:
        cameras = Cameras(K, c2w, H, W)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    keep = None
    if "masks" in data:
        masks = data["masks"]
        if masks.shape != (N, H, W):
            raise ValueError(f"{path}: `masks` must be [{N},{H},{W}], got {list(masks.shape)}")
        keep = torch.from_numpy(masks.astype(bool))
    first = _first_frame(path, data, (H, W))
    return GeometryFile(depths, cameras, first, keep)


def _finite(path, key, array, ndim=None, shape=None) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(array, dtype=np.float64)).float()
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"{path}: `{key}` must have {ndim} dimensions, got {list(t.shape)}")
    if shape is not None and tuple(t.shape) != shape:
        raise ValueError(f"{path}: `{key}` must be {list(shape)}, got {list(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{path}: `{key}` holds NaN or inf")
    return t


def _first_frame(path: Path, data: dict, size: tuple[int, int]) -> torch.Tensor | None:
    """Frame 0 from `frames`, else `first_frame.png`, else `clip.mp4` beside the file."""
    import imageio.v3 as iio

    if "frames" in data:
        frame = np.asarray(data["frames"][0])
    elif (path.parent / "first_frame.png").is_file():
        frame = np.asarray(iio.imread(path.parent / "first_frame.png"))
    elif (path.parent / "clip.mp4").is_file():
        frame = np.asarray(iio.imread(path.parent / "clip.mp4", index=0))
    else:
        return None
    if frame.ndim == 3 and frame.shape[0] == 3 and frame.dtype != np.uint8:
        image = torch.from_numpy(frame.astype(np.float32))  # [3,H,W] in [0,1]
    else:
        if frame.ndim != 3 or frame.shape[-1] < 3:
            raise ValueError(f"{path}: the first frame must be [H,W,3], got {list(frame.shape)}")
        image = torch.from_numpy(frame[..., :3].astype(np.float32) / 255).permute(2, 0, 1)
    if tuple(image.shape[1:]) != tuple(size):
        raise ValueError(
            f"{path}: the first frame is {image.shape[1]}x{image.shape[2]}, the geometry "
            f"{size[0]}x{size[1]}"
        )
    if not torch.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise ValueError(f"{path}: the first frame must hold values in [0, 1]")
    return image.contiguous()
