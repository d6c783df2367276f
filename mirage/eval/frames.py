"""The input check every image metric shares: two equal-shaped [T,3,H,W] videos in [0, 1]."""

from __future__ import annotations

import torch

RANGE_TOLERANCE = 1e-4  # values this far outside [0, 1] are accepted (float rounding)


def check_frames(pred: torch.Tensor, target: torch.Tensor) -> None:
    """Raise ValueError unless pred and target are equal-shaped finite [T,3,H,W] in [0, 1]."""
    for name, x in (("pred", pred), ("target", target)):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"`{name}` must be a torch.Tensor [T,3,H,W], got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"`{name}` must have shape [T,3,H,W], got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"`{name}` must be a floating-point tensor in [0, 1], got {x.dtype}")
        if not torch.isfinite(x).all():
            raise ValueError(f"`{name}` must be finite")
        lo, hi = float(x.min()), float(x.max())  # host sync: input validation, once per call
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise ValueError(f"`{name}` must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    if pred.shape != target.shape:
        raise ValueError(
            f"`pred` and `target` must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    if len(pred) == 0:
        raise ValueError("`pred` and `target` must hold at least one frame, got T = 0")
