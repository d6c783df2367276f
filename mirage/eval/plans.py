"""Index plans of the evaluation protocols: which frames seed the memory, which are scored.

The rules are documented with worked examples in docs/eval.md (and tested with the same).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class NVSPlan:
    context: list[int]  # frames given to the model (they seed the memory)
    targets: list[int]  # frames scored against ground truth


@dataclass(frozen=True)
class LoopPlan:
    outbound: list[int]  # frames 0 .. ceil(n/2) - 1
    pairs: list[tuple[int, int]]  # (return frame, outbound frame at the same pose)

    @property
    def twinned(self) -> list[tuple[int, int]]:
        """The pairs whose outbound frame was generated: all but the last return frame's,
        whose twin is frame 0, the given image."""
        return [(j, i) for j, i in self.pairs if i >= 1]


def nvs_plan(num_frames: int, num_context: int = 1, target_stride: int = 1) -> NVSPlan:
    """Novel-view plan for a clip of `num_frames` frames.

    context = [0, ..., num_context - 1]; targets = [num_context, num_context + target_stride,
    ...] up to num_frames - 1. Example: nvs_plan(9, 1, 2) -> context [0], targets [1, 3, 5, 7].
    """
    if num_context < 1:
        raise ValueError(f"`num_context` must be at least 1, got {num_context}")
    if target_stride < 1:
        raise ValueError(f"`target_stride` must be at least 1, got {target_stride}")
    if num_frames <= num_context:
        raise ValueError(
            f"`num_frames` must exceed num_context = {num_context} (something to score), "
            f"got {num_frames}"
        )
    return NVSPlan(list(range(num_context)), list(range(num_context, num_frames, target_stride)))


def closed_loop_plan(num_frames: int) -> LoopPlan:
    """Pairs (return frame, outbound frame at the same pose) of a palindromic trajectory.

    pose(j) = pose(n - 1 - j), so return frame j in ceil(n/2) .. n-1 pairs with n - 1 - j; for
    odd n the turning frame (n - 1) / 2 has no partner. Example: closed_loop_plan(5) ->
    outbound [0, 1, 2], pairs [(3, 1), (4, 0)].
    """
    if num_frames < 2:
        raise ValueError(f"`num_frames` must be at least 2 for a go-and-return, got {num_frames}")
    half = math.ceil(num_frames / 2)
    pairs = [(j, num_frames - 1 - j) for j in range(half, num_frames)]
    return LoopPlan(list(range(half)), pairs)


def loop_source_indices(num_frames: int) -> list[int]:
    """Frames of an outbound clip that make a go-and-return of `num_frames` frames.

    Index j of the loop shows clip frame min(j, n - 1 - j): out along the clip, then back.
    Example: loop_source_indices(5) -> [0, 1, 2, 1, 0] (needs a clip of ceil(n/2) frames).
    """
    if num_frames < 2:
        raise ValueError(f"`num_frames` must be at least 2, got {num_frames}")
    return [min(j, num_frames - 1 - j) for j in range(num_frames)]


def sample_clip_indices(
    num_source_frames: int, num_frames: int, frame_stride: int = 1, start: int = 0
) -> list[int]:
    """Source-video frames of one evaluation clip: start, start + stride, ... (num_frames)."""
    if num_frames < 1 or frame_stride < 1 or start < 0:
        raise ValueError(
            f"`num_frames` and `frame_stride` must be >= 1 and `start` >= 0, got {num_frames}, "
            f"{frame_stride}, {start}"
        )
    last = start + (num_frames - 1) * frame_stride
    if last >= num_source_frames:
        raise ValueError(
            f"a clip of {num_frames} frames every {frame_stride} from {start} needs "
            f"{last + 1} source frames, got `num_source_frames` = {num_source_frames}"
        )
    return list(range(start, last + 1, frame_stride))
