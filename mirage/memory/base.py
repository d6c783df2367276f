"""The SpatialMemory protocol: what the loop asks of any memory, and the memory that holds nothing.

The generation loop and the training samples hand a memory everything a chunk produced (one
`Observation`: frames, their clean image latents, depth, cameras, exclusion) and each kind
keeps what it needs: `LatentSpatialMemory` the latents, `RGBPointCache` the colours,
`NoMemory` nothing. Reads return a `Readout` at latent resolution whatever the kind, so the
loop never asks which memory it holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from mirage.geometry import Cameras


@dataclass
class Readout:
    """What the memory shows T target cameras at latent resolution."""

    latents: torch.Tensor  # [T,C,h,w], zero where mask is False
    mask: torch.Tensor  # [T,1,h,w] bool, True where some point was visible
    depth: torch.Tensor  # [T,1,h,w] float32 z-depth of the visible point, 0 where empty

    def condition(self, dtype: torch.dtype | None = None) -> torch.Tensor:  # -> [T,C+1,h,w]
        """Readout latents with the visibility mask as one more channel (side-branch input)."""
        dtype = dtype or self.latents.dtype
        return torch.cat([self.latents.to(dtype), self.mask.to(dtype)], dim=1)


def empty_readout(T: int, channels: int, latent_hw: tuple[int, int], device=None, dtype=None):
    """A readout that sees nothing: zero latents, mask False, depth 0."""
    h, w = latent_hw
    zeros = torch.zeros(T, 1, h, w, device=device)
    latents = torch.zeros(T, channels, h, w, device=device, dtype=dtype or torch.float32)
    return Readout(latents, zeros.bool(), zeros)


@dataclass
class Observation:
    """Everything one step of the loop produced for T frames of H x W images.

    frames [T,3,H,W] in [0,1] (None where only latents exist, e.g. training shards);
    latents [T,C,h,w] (their clean image latents); depth [T,H,W] z-depth (0 / +inf = none);
    cameras of the H x W images; exclude [T,H,W] bool or None (dynamic objects, sky: never
    stored).
    """

    frames: torch.Tensor | None
    latents: torch.Tensor
    depth: torch.Tensor
    cameras: Cameras
    exclude: torch.Tensor | None = None


@runtime_checkable
class SpatialMemory(Protocol):
    """A persistent 3D cache the loop writes after each chunk and reads for the next.

    `stores_geometry` says whether `observe` uses depth and exclusion at all (False only for
    the memory that is off), so the loop can skip estimating them.
    """

    stores_geometry: bool

    def observe(self, obs: Observation) -> int:
        """Keep what this memory needs of `obs`; returns the points added."""

    def read(self, cameras: Cameras, latent_hw: tuple[int, int] | None = None) -> Readout:
        """Readout for T image cameras at latent resolution."""

    def read_depth(self, cameras: Cameras, latent_hw: tuple[int, int] | None = None):
        """(depth [T,1,h,w], mask [T,1,h,w] bool) of the readout, without its latents."""

    @property
    def num_points(self) -> int: ...

    @property
    def nbytes(self) -> int: ...

    def save(self, path: str | os.PathLike) -> None: ...

    def export_ply(self, path: str | os.PathLike) -> None: ...


class NoMemory:
    """The memory that is off: stores nothing and shows nothing (mask False everywhere)."""

    def __init__(self, channels: int, device: str | torch.device = "cpu"):
        self.channels = int(channels)
        self.device = torch.device(device)
        self.latent_hw: tuple[int, int] | None = None

    stores_geometry = False
    num_points = 0
    nbytes = 0

    def __repr__(self) -> str:
        return f"NoMemory(channels={self.channels})"

    def observe(self, obs: Observation) -> int:
        if self.latent_hw is None:
            self.latent_hw = tuple(obs.latents.shape[-2:])
        return 0

    def read(self, cameras: Cameras, latent_hw: tuple[int, int] | None = None) -> Readout:
        hw = latent_hw or self.latent_hw
        if hw is None:
            raise ValueError("`latent_hw` is needed to read a memory that has never been written")
        return empty_readout(len(cameras), self.channels, hw, self.device)

    def read_depth(self, cameras: Cameras, latent_hw: tuple[int, int] | None = None):
        readout = self.read(cameras, latent_hw)
        return readout.depth, readout.mask

    def save(self, path: str | os.PathLike) -> None:
        """Nothing to keep: a memory that is off writes no file."""

    def export_ply(self, path: str | os.PathLike) -> None:
        """Nothing to show: a memory that is off writes no file."""
