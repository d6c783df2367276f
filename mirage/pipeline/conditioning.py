"""What generation and training both build for a chunk, so a model trains on what it is given.

- the latent sequence of a chunk is [context | first frame | targets]; the context is the last
  `num_context` target latents of the previous chunk (`chunk_context`);
- the side-branch input reads the memory at the camera of every slot but the context slots,
  which carry nothing (zeros, mask False) (`side_condition`);
- the write step turns what a chunk produced into one `Observation`, depth aligned to the
  memory when it is only known up to scale (`observation`).
"""

from __future__ import annotations

import torch

from mirage.geometry import Cameras
from mirage.memory import Observation, Readout, align_to_memory


def chunk_context(prev_targets: torch.Tensor, num_context: int) -> torch.Tensor:
    """The clean context of the next chunk: the last `num_context` of `prev_targets` [k,C,h,w]."""
    if num_context > len(prev_targets):
        raise ValueError(
            f"a context of {num_context} latents needs as many targets, got {len(prev_targets)}"
        )
    return prev_targets[len(prev_targets) - num_context :]


def side_condition(readout: Readout, num_context: int) -> torch.Tensor:
    """Side-branch input [C+1,F,h,w] for F = num_context + len(readout) slots, float32."""
    cond = readout.condition(torch.float32)  # [T,C+1,h,w]
    pad = cond.new_zeros(num_context, *cond.shape[1:])
    return torch.cat([pad, cond]).permute(1, 0, 2, 3).contiguous()


def observation(
    memory,
    frames: torch.Tensor,  # [T,3,H,W]
    latents: torch.Tensor,  # [T,C,h,w] clean image latents of `frames`
    depth: torch.Tensor,  # [T,H,W]
    cameras: Cameras,
    exclude: torch.Tensor | None,  # [T,H,W] bool
    metric_depth: bool,
) -> Observation:
    """The observation the loop inserts: up-to-scale depth scaled to what `memory` renders.

    Alignment uses only static, non-sky cells (`exclude`); the first observation of an empty
    memory fixes the scale. Metric depth is inserted as it is.
    """
    if not metric_depth:
        depth = align_to_memory(memory, depth, cameras, tuple(latents.shape[-2:]), exclude)
    return Observation(frames, latents, depth, cameras, exclude)


def slot_timesteps(num_clean: int, num_noisy: int, t: float | torch.Tensor, device=None):
    """Per-latent-frame timesteps [F]: 0 for clean slots (context, first frame), t for targets."""
    t = torch.as_tensor(t, dtype=torch.float32, device=device)
    return torch.cat([torch.zeros(num_clean, device=device), t.expand(num_noisy)])
