"""RGBPointCache: the explicit RGB point-cloud memory (Spatia / Voyager / GEN3C path), our baseline.

Every valid pixel becomes a coloured world point. Reading renders T views at pixel resolution
with the same exact z-buffer as the latent memory, then encodes the renders with one call of
an injected `encode(frames [T,3,H,W]) -> latents [T,C,h,w]` (the VAE), so this module needs no
diffusers. Batched and on device: the speed-up we report is against this path at its best.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import torch
from safetensors.torch import save_file

from mirage.atomic import atomic_path
from mirage.geometry import EMPTY, Cameras, backproject, render_index
from mirage.memory.base import Observation, Readout
from mirage.memory.latent import write_ply
from mirage.memory.pooling import check_observation, grid_factor
from mirage.memory.tensors import check_finite, load_tensors

FORMAT = "mirage.rgb_point_cache"
VERSION = 1

Encoder = Callable[[torch.Tensor], torch.Tensor]


class RGBPointCache:
    """Coloured points at pixel resolution.

    Args:
        encode: frames [T,3,H,W] in [0,1] -> latents [T,C,h,w]; needed by `read`, not `render`.
        device: where points live and rendering runs.

    Colours are stored as uint8 (3 bytes a point), the most compact honest choice.
    """

    stores_geometry = True

    def __init__(self, encode: Encoder | None = None, device: str | torch.device = "cpu"):
        self.encode = encode
        self.device = torch.device(device)
        self.positions = torch.zeros(0, 3, device=self.device)  # [N,3] float32
        self.colors = torch.zeros(0, 3, dtype=torch.uint8, device=self.device)  # [N,3]

    @property
    def num_points(self) -> int:
        return len(self.positions)

    @property
    def nbytes(self) -> int:
        return self.positions.nbytes + self.colors.nbytes

    def __repr__(self) -> str:
        return f"RGBPointCache(points={self.num_points}, device={self.device})"

    def observe(self, obs: Observation) -> int:
        """SpatialMemory: keep the colours of an observation (its latents are not needed)."""
        if obs.frames is None:
            raise ValueError("an RGB point cache needs the observation's `frames`")
        return self.insert(obs.frames, obs.depth, obs.cameras, obs.exclude)

    def insert(
        self,
        frames: torch.Tensor,
        depth: torch.Tensor,
        cameras: Cameras,
        exclude: torch.Tensor | None = None,
    ) -> int:
        """Add every pixel with depth that is not excluded.

        # frames [T,3,H,W] in [0,1], depth [T,H,W] (0 / +inf = none), exclude [T,H,W] bool
        """
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"`frames` must have shape [T,3,H,W], got {tuple(frames.shape)}")
        check_observation(depth, cameras, exclude)
        if frames.shape[0] != depth.shape[0] or frames.shape[2:] != depth.shape[1:]:
            raise ValueError(
                f"`frames` {tuple(frames.shape)} and `depth` {tuple(depth.shape)} must match"
            )
        dev = self.device
        depth = depth.to(dev, torch.float32)
        keep = torch.isfinite(depth) & (depth > 0)
        if exclude is not None:
            keep &= ~exclude.to(dev)
        cams = cameras.to(dev)
        points = backproject(torch.where(keep, depth, 1.0), cams.K, cams.c2w)[keep]
        colors = (frames.to(dev).permute(0, 2, 3, 1)[keep].clamp(0, 1) * 255).round()
        self.positions = torch.cat([self.positions, points])
        self.colors = torch.cat([self.colors, colors.to(torch.uint8)])
        return len(points)

    def render(self, cameras: Cameras):
        """Z-buffered point render of T views at the cameras' pixel resolution.

        # -> images [T,3,H,W] in [0,1] (0 where empty), mask [T,1,H,W] bool, depth [T,1,H,W]
        """
        cams = cameras.to(self.device)
        T, H, W = len(cams), cams.height, cams.width
        if self.num_points == 0:
            zeros = torch.zeros(T, 1, H, W, device=self.device)
            return zeros.expand(T, 3, H, W).clone(), zeros.bool(), zeros
        index, depth = render_index(self.positions, cams.K, cams.w2c, H, W)
        hit = index != EMPTY
        rgb = self.colors.index_select(0, index.clamp(min=0).flatten()).view(T, H, W, 3)
        images = torch.where(hit[..., None], rgb.float() / 255, 0).permute(0, 3, 1, 2)
        return images.contiguous(), hit[:, None], depth[:, None]

    def read(self, cameras: Cameras, latent_hw: tuple[int, int] | None = None) -> Readout:
        """Render the views, then encode them with one call of `encode`.

        The latent-grid mask marks cells whose pixel block is at least half covered; the depth
        is the mean depth of the covered pixels (0 where the cell is not visible).
        """
        if self.encode is None:
            raise ValueError(
                "RGBPointCache.read needs an `encode` function (pass it at construction)"
            )
        images, mask, depth = self.render(cameras)
        latents = self.encode(images)  # [T,C,h,w]: one VAE call for all views
        h, w = latents.shape[-2:]
        if latent_hw is not None and tuple(latent_hw) != (h, w):
            raise ValueError(f"`encode` returned a {h}x{w} grid, expected `latent_hw` {latent_hw}")
        cell_depth, cell_mask = _pool_render(mask, depth, (h, w))
        return Readout(latents * cell_mask.to(latents.dtype), cell_mask, cell_depth)

    def read_depth(self, cameras: Cameras, latent_hw: tuple[int, int] | None = None):
        """Depth and visibility at the latent grid as `read` gives them, without encoding.

        # -> depth [T,1,h,w] (0 where not visible), mask [T,1,h,w] bool
        """
        if latent_hw is None:
            raise ValueError("RGBPointCache.read_depth needs `latent_hw` (the encoder's grid)")
        _, mask, depth = self.render(cameras)
        return _pool_render(mask, depth, latent_hw)

    # --- save, load, export ---------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write points and colours as safetensors (atomic: temp file, then rename)."""
        tensors = {"positions": self.positions.cpu(), "colors": self.colors.cpu()}
        meta = {"format": FORMAT, "version": str(VERSION), "config": json.dumps({})}
        with atomic_path(path, ".safetensors") as tmp:
            save_file(tensors, tmp, metadata=meta)

    @classmethod
    def load(cls, path, encode: Encoder | None = None, device="cpu") -> RGBPointCache:
        """Read a cache written by `save`; refuses other files and non-finite positions."""
        _, tensors = load_tensors(path, FORMAT, (str(VERSION),))
        if {"positions", "colors"} - set(tensors):
            raise ValueError(f"{path} lacks the tensors positions and colors")
        pos, col = tensors["positions"], tensors["colors"]
        if pos.ndim != 2 or pos.shape[1] != 3 or col.shape != pos.shape:
            raise ValueError(f"{path} holds tensors of inconsistent shapes")
        check_finite(path, {"positions": pos})
        cache = cls(encode, device)
        cache.positions, cache.colors = pos.float().to(device), col.to(torch.uint8).to(device)
        return cache

    def export_ply(self, path: str | os.PathLike) -> None:
        """Write the coloured points as a binary PLY."""
        comment = f"Mirage RGB point cache: {self.num_points} points"
        write_ply(path, self.positions, self.colors.cpu().numpy(), comment)


def _pool_render(mask: torch.Tensor, depth: torch.Tensor, latent_hw) -> tuple:
    """Pixel render -> latent grid: visible when >= half covered, depth = mean covered depth.

    # mask [T,1,H,W] bool, depth [T,1,H,W] -> depth [T,1,h,w], mask [T,1,h,w]
    """
    s = grid_factor(mask.shape[-2], mask.shape[-1], *latent_hw)
    cover = torch.nn.functional.avg_pool2d(mask.float(), s)
    cell_mask = cover >= 0.5
    cell_depth = torch.nn.functional.avg_pool2d(depth, s) / cover.clamp(min=1e-8)
    return torch.where(cell_mask, cell_depth, 0.0), cell_mask
