"""One factory for every memory kind, and one loader for every memory file."""

from __future__ import annotations

import os

import torch

from mirage.memory.base import NoMemory
from mirage.memory.latent import DEFAULT_FUSION, DEFAULT_SUBCELLS, LatentSpatialMemory
from mirage.memory.rgb import FORMAT as RGB_FORMAT
from mirage.memory.rgb import Encoder, RGBPointCache
from mirage.memory.tensors import file_format

MEMORY_KINDS = ("latent", "rgb", "none")


def make_memory(
    kind: str,
    channels: int,
    encode: Encoder | None = None,
    voxel_size: float | str | None = "footprint",
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    fusion: str = DEFAULT_FUSION,
    subcells: int = DEFAULT_SUBCELLS,
):
    """A new, empty memory of `kind` ("latent", "rgb" or "none").

    `channels` is the latent width C (every kind reads C-channel readouts); `encode` (frames
    -> latents, the VAE) is what the RGB cache encodes its renders with; `voxel_size`, `dtype`,
    `fusion` and `subcells` configure the latent memory.
    """
    if kind == "latent":
        return LatentSpatialMemory(
            channels, voxel_size, dtype=dtype, device=device, fusion=fusion, subcells=subcells
        )
    if kind == "rgb":
        if encode is None:
            raise ValueError("an 'rgb' memory needs `encode` (the VAE's frames -> latents)")
        return RGBPointCache(encode=encode, device=device)
    if kind == "none":
        return NoMemory(channels, device=device)
    raise ValueError(f"`kind` must be one of {MEMORY_KINDS}, got {kind!r}")


def load_memory(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a memory file written by `save` of either kind (its header says which)."""
    if file_format(path) == RGB_FORMAT:
        return RGBPointCache.load(path, device=device)
    return LatentSpatialMemory.load(path, device=device)
