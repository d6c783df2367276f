"""Image quality metrics for video frames: PSNR, SSIM (torchmetrics) and LPIPS (plain torch).

Every metric takes `pred` and `target` of shape [T,3,H,W] with values in [0, 1] and returns a
`Score`: one value per frame and their mean (the mean of per-frame values, the usual way
video papers report them). LPIPS lives in `mirage.eval.lpips`; this module re-exports it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from mirage.eval.frames import check_frames
from mirage.eval.lpips import LPIPS, MetricUnavailable, default_backbone_path, lpips_or_none

__all__ = [
    "LPIPS",
    "MetricUnavailable",
    "Score",
    "check_frames",
    "default_backbone_path",
    "lpips_or_none",
    "lpips_score",
    "psnr",
    "ssim",
]


class Score(NamedTuple):
    """A metric over T frames: `per_frame` [T] (float32, CPU) and `mean` (a Python float)."""

    per_frame: torch.Tensor
    mean: float


def _score(per_frame: torch.Tensor) -> Score:
    per_frame = per_frame.detach().to("cpu", torch.float32).reshape(-1)
    return Score(per_frame, float(per_frame.mean()))


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> Score:
    """Peak signal-to-noise ratio per frame, 10 log10(data_range^2 / MSE), in dB.

    Args:
        pred, target: [T,3,H,W] in [0, 1].
        data_range: the peak value (1.0 for images in [0, 1]).
    Returns:
        Score with per-frame PSNR [T]; a frame equal to its target has PSNR = +inf.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    check_frames(pred, target)
    if not data_range > 0:
        raise ValueError(f"`data_range` must be positive, got {data_range}")
    values = peak_signal_noise_ratio(
        pred.float(), target.float(), data_range=data_range, reduction="none", dim=(1, 2, 3)
    )
    return _score(values)


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> Score:
    """Structural similarity per frame (Gaussian window 11, sigma 1.5, the standard constants).

    Args:
        pred, target: [T,3,H,W] in [0, 1], H and W at least 11 (the window size).
        data_range: the peak value (1.0 for images in [0, 1]).
    Returns:
        Score with per-frame SSIM [T] in [-1, 1]; 1 exactly when pred equals target.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    check_frames(pred, target)
    if not data_range > 0:
        raise ValueError(f"`data_range` must be positive, got {data_range}")
    H, W = pred.shape[-2:]
    if H < 11 or W < 11:
        raise ValueError(f"SSIM needs frames of at least 11x11 pixels, got {H}x{W}")
    values = structural_similarity_index_measure(
        pred.float(), target.float(), data_range=data_range, reduction="none"
    )
    return _score(values)


def lpips_score(
    pred: torch.Tensor, target: torch.Tensor, backbone_path=None, heads_path=None
) -> Score | None:
    """LPIPS-AlexNet per frame (lower is closer), or None when its weights are missing.

    None means *unavailable* and must be reported as such ("n/a"), never replaced by a number.
    Frames must be at least 31x31 pixels.
    """
    values = lpips_or_none(pred, target, backbone_path, heads_path)
    return None if values is None else _score(values)
