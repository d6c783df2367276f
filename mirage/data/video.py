"""Writing frames for people to look at: mp4 (imageio-ffmpeg), PNG, and a depth colour map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mirage.atomic import atomic_path

# anchor colours of a perceptual-ish colour map (dark blue -> teal -> yellow), near to far
_DEPTH_COLORS = torch.tensor(
    [
        [0.27, 0.00, 0.33],
        [0.23, 0.32, 0.55],
        [0.13, 0.57, 0.55],
        [0.37, 0.79, 0.38],
        [0.99, 0.91, 0.14],
    ]
)


def _to_uint8(frames: torch.Tensor) -> np.ndarray:  # [T,3,H,W] in [0,1] -> [T,H,W,3] uint8
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"`frames` must have shape [T,3,H,W], got {tuple(frames.shape)}")
    return (
        (frames.detach().float().clamp(0, 1) * 255)
        .round()
        .to(torch.uint8)
        .permute(0, 2, 3, 1)
        .cpu()
        .numpy()
    )


def write_video(path: str | Path, frames: torch.Tensor, fps: float = 16.0) -> None:
    """Write frames [T,3,H,W] in [0, 1] as an H.264 mp4 (yuv420p), atomically.

    Odd sizes are padded by one replicated row/column (yuv420p needs even sizes).
    """
    import imageio_ffmpeg

    arr = _to_uint8(frames)
    if arr.shape[1] % 2 or arr.shape[2] % 2:
        arr = np.pad(
            arr, ((0, 0), (0, arr.shape[1] % 2), (0, arr.shape[2] % 2), (0, 0)), mode="edge"
        )
    T, H, W, _ = arr.shape
    with atomic_path(path, ".mp4") as tmp:
        writer = imageio_ffmpeg.write_frames(
            tmp,
            (W, H),
            fps=fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            quality=8,
            macro_block_size=1,
        )
        try:
            writer.send(None)
            for frame in arr:
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()


def write_png(path: str | Path, image) -> Path:
    """Write one picture as PNG, atomically: a tensor [3,H,W] in [0, 1] or uint8 [H,W,3]."""
    import imageio.v3 as iio

    pixels = _to_uint8(image[None])[0] if isinstance(image, torch.Tensor) else image
    with atomic_path(path, ".png") as tmp:
        iio.imwrite(tmp, pixels)
    return Path(path)


def colorize_depth(depth: torch.Tensor, far: float | None = None) -> torch.Tensor:
    """Depth [T,H,W] -> colour [T,3,H,W]: inverse depth on a colour map, sky (inf/0) black.

    Near is bright yellow, far dark purple; `far` (default: the 98th percentile of the finite
    depths) sets the colour scale so one clip shares one scale.
    """
    valid = torch.isfinite(depth) & (depth > 0)
    finite = depth[valid]
    if far is None:
        far = (
            float(torch.quantile(finite[:: max(1, len(finite) // 100000)], 0.98))
            if len(finite)
            else 1.0
        )
    near = float(finite.min()) if len(finite) else 0.0
    inv = torch.where(valid, 1.0 / depth.clamp_min(1e-6), 0.0)
    lo, hi = 1.0 / max(far, 1e-6), 1.0 / max(near, 1e-6)
    s = ((inv - lo) / max(hi - lo, 1e-12)).clamp(0, 1) * (len(_DEPTH_COLORS) - 1)
    i0 = s.floor().long().clamp(max=len(_DEPTH_COLORS) - 2)
    f = (s - i0)[..., None]
    rgb = _DEPTH_COLORS[i0] * (1 - f) + _DEPTH_COLORS[i0 + 1] * f
    rgb = torch.where(valid[..., None], rgb, 0.0)
    return rgb.permute(0, 3, 1, 2).contiguous()
