"""Depth pooling from the image grid to the latent grid, and the input checks that share it.

A latent cell covers an s x s block of pixels. Its depth is the median of the block's valid
pixels (for an even count the lower middle value), and the cell is valid when at least half
of its pixels have depth and none of them is excluded (dynamic objects, sky).
"""

from __future__ import annotations

import torch

from mirage.geometry import Cameras


def check_observation(depth: torch.Tensor, cameras: Cameras, exclude: torch.Tensor | None) -> None:
    """Validate one batch of observed views before any work.  # depth [T,H,W], exclude [T,H,W]

    Depth 0 and +inf mark pixels without depth; NaN, -inf and negative values are errors.
    """
    if depth.ndim != 3:
        raise ValueError(f"`depth` must have shape [T,H,W], got {tuple(depth.shape)}")
    T, H, W = depth.shape
    if len(cameras) != T:
        raise ValueError(f"`cameras` must hold one camera per depth map ({T}), got {len(cameras)}")
    if (cameras.height, cameras.width) != (H, W):
        raise ValueError(
            f"`cameras` belong to {cameras.height}x{cameras.width} images but `depth` is {H}x{W}"
        )
    if torch.isnan(depth).any():
        raise ValueError("`depth` contains NaN; mark pixels without depth with 0 or +inf")
    if (depth < 0).any():
        raise ValueError(
            f"`depth` must be >= 0 (0 or +inf = no depth), got min {float(depth.min())}"
        )
    if exclude is not None:
        if exclude.shape != depth.shape:
            raise ValueError(
                f"`exclude` must have the shape of `depth` {tuple(depth.shape)}, "
                f"got {tuple(exclude.shape)}"
            )
        if exclude.dtype != torch.bool:
            raise ValueError(f"`exclude` must be a bool tensor, got {exclude.dtype}")


def grid_factor(height: int, width: int, h: int, w: int, what: str = "latent grid") -> int:
    """The integer s with H = s h and W = s w, or a ValueError naming the sizes."""
    if h <= 0 or w <= 0 or height % h or width % w or height // h != width // w:
        raise ValueError(
            f"image size {height}x{width} must be one integer multiple of the {what} {h}x{w} "
            f"in both axes"
        )
    return height // h


def pool_depth(depth: torch.Tensor, factor: int, exclude: torch.Tensor | None = None):
    """Median-pool z-depth to a grid `factor` times coarser.

    # depth [T,H,W], exclude [T,H,W] bool | None -> depth [T,h,w] (0 where invalid), valid [T,h,w]
    """
    T, H, W = depth.shape
    s = factor
    h, w = H // s, W // s

    def blocks(x):  # [T,H,W] -> [T,h,w,s*s], pixels of a block in row-major order
        return x.reshape(T, h, s, w, s).permute(0, 1, 3, 2, 4).reshape(T, h, w, s * s)

    d = blocks(depth.to(torch.float32))
    has_depth = torch.isfinite(d) & (d > 0)
    count = has_depth.sum(-1)
    ordered = torch.where(has_depth, d, torch.inf).sort(dim=-1).values
    lower_middle = ((count - 1).clamp(min=0) // 2).unsqueeze(-1)
    median = ordered.gather(-1, lower_middle).squeeze(-1)
    valid = (count > 0) & (2 * count >= s * s)
    if exclude is not None:
        valid &= ~blocks(exclude).any(-1)
    return torch.where(valid, median, 0.0), valid


def _pool_depth(depth: torch.Tensor, factor: int, exclude: torch.Tensor | None = None):
    """Plain-loop twin of `pool_depth`, for tests and for reading."""
    T, H, W = depth.shape
    s = factor
    h, w = H // s, W // s
    out = torch.zeros(T, h, w)
    valid = torch.zeros(T, h, w, dtype=torch.bool)
    for t in range(T):
        for i in range(h):
            for j in range(w):
                block = depth[t, i * s : (i + 1) * s, j * s : (j + 1) * s].flatten().tolist()
                good = sorted(v for v in block if 0 < v < float("inf"))
                excluded = exclude is not None and bool(
                    exclude[t, i * s : (i + 1) * s, j * s : (j + 1) * s].any()
                )
                if good and 2 * len(good) >= s * s and not excluded:
                    out[t, i, j] = good[(len(good) - 1) // 2]
                    valid[t, i, j] = True
    return out, valid
