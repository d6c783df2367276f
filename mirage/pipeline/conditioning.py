"""Side-branch input of one chunk: memory readout + visibility mask per latent slot.

Shared by generation and training so both see the same readouts. The latent sequence of a
chunk is [context latents | first-frame latent | target latents]; context slots carry no
readout (zeros, mask False), every other slot reads the memory at its camera.
"""

from __future__ import annotations

import torch

from mirage.geometry import Cameras
from mirage.memory import LatentSpatialMemory, Readout, RGBPointCache

Memory = LatentSpatialMemory | RGBPointCache | None


def empty_readout(T: int, channels: int, latent_hw: tuple[int, int], device) -> Readout:
    h, w = latent_hw
    zeros = torch.zeros(T, 1, h, w, device=device)
    return Readout(torch.zeros(T, channels, h, w, device=device), zeros.bool(), zeros)


def read_memory(memory: Memory, cameras: Cameras, channels: int, latent_hw) -> Readout:
    """Readout for `cameras` from any memory kind; `None` (memory off) reads nothing."""
    if memory is None:
        return empty_readout(len(cameras), channels, latent_hw, cameras.device)
    return memory.read(cameras, latent_hw)


def side_condition(readout: Readout, num_context: int) -> torch.Tensor:
    """Side-branch input [C+1,F,h,w] for F = num_context + len(readout) slots, float32."""
    cond = readout.condition(torch.float32)  # [T,C+1,h,w]
    pad = cond.new_zeros(num_context, *cond.shape[1:])
    return torch.cat([pad, cond]).permute(1, 0, 2, 3).contiguous()


def slot_timesteps(num_clean: int, num_noisy: int, t: float | torch.Tensor, device=None):
    """Per-latent-frame timesteps [F]: 0 for clean slots (context, first frame), t for targets."""
    t = torch.as_tensor(t, dtype=torch.float32, device=device)
    return torch.cat([torch.zeros(num_clean, device=device), t.expand(num_noisy)])
