"""Scale alignment of up-to-scale depth to the depth the memory renders (robust median ratio).

A relative depth estimator (DepthAnything V2 relative) gives z-depth up to an unknown factor
per frame, and RealEstate10K poses are themselves defined only up to scale. Before such
frames enter the memory, the loop (generation and training samples alike, through
`align_to_memory`) reads the memory for their cameras; where it sees something, the readout
depth is the reference. The estimated depth is median-pooled to the reference grid (the
pooling the memory's insert uses), dynamic objects and sky left out, and the scale of a frame
is the median of reference / pooled over the cells valid in both. The median ignores up to
half the cells being wrong (estimator outliers, surfaces the memory got wrong).

A frame that overlaps the memory in too few cells keeps its own scale (1) with a warning: it
is never given another frame's scale, which can be wrong by any factor.
"""

from __future__ import annotations

import warnings

import torch

from mirage.memory.pooling import grid_factor, pool_depth


def _masked_median(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Median of `values` over `valid` along the last axis (mean of the two middles if even).

    # values [B,N], valid [B,N] bool -> [B] (NaN where a row has no valid entry)
    """
    count = valid.sum(-1)
    ordered = torch.where(valid, values, torch.inf).sort(dim=-1).values
    lo = ((count - 1).clamp(min=0) // 2).unsqueeze(-1)
    hi = (count // 2).clamp(max=values.shape[-1] - 1).unsqueeze(-1)
    median = 0.5 * (ordered.gather(-1, lo) + ordered.gather(-1, hi)).squeeze(-1)
    return torch.where(count > 0, median, torch.nan)


def _masked_median_loop(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Plain-loop twin of `_masked_median`, for tests and for reading."""
    out = []
    for row, ok in zip(values.tolist(), valid.tolist(), strict=True):
        good = sorted(v for v, k in zip(row, ok, strict=True) if k)
        n = len(good)
        out.append(float("nan") if n == 0 else 0.5 * (good[(n - 1) // 2] + good[n // 2]))
    return torch.tensor(out, dtype=values.dtype)


def default_min_cells(h: int, w: int) -> int:
    """Overlap a frame needs to be aligned: a quarter of the grid, between 4 and 16 cells."""
    return max(4, min(16, (h * w) // 4))


def _check_align_inputs(estimated, reference, reference_mask, exclude, min_cells) -> int:
    """Validate shapes and values; returns the grid factor s."""
    if not isinstance(estimated, torch.Tensor) or estimated.ndim != 3:
        raise ValueError(
            f"`estimated` must be a tensor of shape [T,H,W], "
            f"got {tuple(getattr(estimated, 'shape', ()))}"
        )
    T, H, W = estimated.shape
    if (
        not isinstance(reference, torch.Tensor)
        or reference.ndim != 4
        or reference.shape[:2] != (T, 1)
    ):
        raise ValueError(
            f"`reference` must have shape [{T},1,h,w], got {tuple(getattr(reference, 'shape', ()))}"
        )
    if not isinstance(reference_mask, torch.Tensor) or reference_mask.shape != reference.shape:
        raise ValueError(
            f"`reference_mask` must have the shape of `reference` {tuple(reference.shape)}, "
            f"got {tuple(getattr(reference_mask, 'shape', ()))}"
        )
    if reference_mask.dtype != torch.bool:
        raise ValueError(f"`reference_mask` must be a bool tensor, got {reference_mask.dtype}")
    if exclude is not None and (exclude.shape != estimated.shape or exclude.dtype != torch.bool):
        raise ValueError(
            f"`exclude` must be a bool tensor of shape {tuple(estimated.shape)}, "
            f"got {exclude.dtype} {tuple(exclude.shape)}"
        )
    if min_cells is not None and (int(min_cells) != min_cells or min_cells < 1):
        raise ValueError(f"`min_cells` must be a positive integer, got {min_cells!r}")
    s = grid_factor(H, W, *reference.shape[2:], what="reference grid")
    if torch.isnan(estimated).any() or (estimated < 0).any():
        raise ValueError("`estimated` must be >= 0 without NaN (0 or +inf = no depth)")
    if torch.isnan(reference).any() or (reference < 0).any():
        raise ValueError("`reference` must be >= 0 without NaN (0 = unknown)")
    return s


def align_depth_scale(
    estimated: torch.Tensor,
    reference: torch.Tensor,
    reference_mask: torch.Tensor,
    exclude: torch.Tensor | None = None,
    min_cells: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale `estimated` depth so it agrees with `reference` where both are known.

    Args:
        estimated: [T,H,W] z-depth up to scale; 0 or +inf where there is none.
        reference: [T,1,h,w] z-depth on a grid H/h = W/w = s times coarser (a memory
            readout's depth); 0 where unknown.
        reference_mask: [T,1,h,w] bool, True where `reference` is trusted (readout mask).
        exclude: [T,H,W] bool or None: pixels that never count (dynamic objects, sky); a cell
            with any excluded pixel is left out, as the memory's insert leaves it out.
        min_cells: cells valid in both that a frame needs (default `default_min_cells`); a
            frame with fewer keeps scale 1, with a warning.
    Returns:
        aligned [T,H,W] float32 (= estimated * scale, 0 and +inf kept), scale [T] float32.
    """
    s = _check_align_inputs(estimated, reference, reference_mask, exclude, min_cells)
    T = len(estimated)
    h, w = reference.shape[2:]
    min_cells = default_min_cells(h, w) if min_cells is None else int(min_cells)

    # 1. estimated depth on the reference grid, as the memory's insert would pool it
    est = estimated.to(torch.float32)
    pooled, pooled_valid = pool_depth(est, s, exclude)  # [T,h,w]
    ref = reference[:, 0].to(device=est.device, dtype=torch.float32)  # [T,h,w]
    ok = pooled_valid & reference_mask[:, 0].to(est.device) & (ref > 0) & torch.isfinite(ref)
    ratio = torch.where(ok, ref / pooled.clamp(min=torch.finfo(torch.float32).tiny), 0.0)

    # 2. per-frame median ratio; a frame with too little overlap keeps its own scale
    ratio, ok = ratio.reshape(T, h * w), ok.reshape(T, h * w)
    scale = _masked_median(ratio, ok)  # [T]
    thin = ok.sum(-1) < min_cells  # [T]
    if thin.any():  # host sync: one small branch per call, not per step
        frames = thin.nonzero().flatten().tolist()
        warnings.warn(
            f"align_depth_scale: frames {frames} overlap the reference in fewer than "
            f"{min_cells} static cells; their depth keeps its own scale",
            stacklevel=2,
        )
        scale = torch.where(thin, torch.ones_like(scale), scale)
    return est * scale[:, None, None], scale


def align_to_memory(memory, depth, cameras, latent_hw, exclude=None) -> torch.Tensor:
    """Up-to-scale depth [T,H,W] of frames seen by `cameras`, scaled to what `memory` renders.

    An empty memory has nothing to align to: the depth is returned as given (the first frame
    fixes the scale of the whole memory). `memory` is any `SpatialMemory`.
    """
    if memory.num_points == 0:
        return depth.to(torch.float32)
    reference, mask = memory.read_depth(cameras, latent_hw)
    return align_depth_scale(depth, reference, mask, exclude)[0]
