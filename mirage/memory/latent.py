"""LatentSpatialMemory: a 3D cache of VAE latents, written by back-projection, read by z-buffer.

Each valid latent cell of an observed frame becomes one world-space point carrying its C-dim
latent. Reading projects every point into T target cameras at latent resolution and keeps
the frontmost per cell (exact z-buffer of `mirage.geometry.zbuffer`). Nothing is rendered in
pixel space and nothing is re-encoded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mirage.atomic import atomic_path
from mirage.geometry import EMPTY, Cameras, pixel_centers, render_index, unproject
from mirage.memory.fusion import VoxelIndex, last_of_each_key, voxel_keys
from mirage.memory.pooling import check_observation, grid_factor, pool_depth

FORMAT = "mirage.latent_spatial_memory"
VERSION = 1
FUSION_MODES = ("latest", "mean")


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


class LatentSpatialMemory:
    """Persistent world-space cache of latent tokens.

    Args:
        channels: C, the latent channels stored per point (48 for the Wan2.2 VAE).
        voxel_size: with a size (world units), points are fused per voxel so revisiting a place
            does not grow the cache; None appends every observation.
        dtype: storage dtype of the latents (bf16 halves the cache; reads return this dtype).
        device: where the points live and where reads run.
        fusion: how a voxel already holding a point takes a new observation: "latest" (the
            new point replaces the old: the newest frames were generated with the memory in view,
            so they are the most consistent view) or "mean" (running mean of positions and
            latents over all observations).
    """

    def __init__(
        self,
        channels: int,
        voxel_size: float | None = None,
        dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device = "cpu",
        fusion: str = "latest",
    ):
        if int(channels) != channels or channels <= 0:
            raise ValueError(f"`channels` must be a positive integer, got {channels}")
        if voxel_size is not None and not voxel_size > 0:
            raise ValueError(f"`voxel_size` must be positive or None, got {voxel_size}")
        if fusion not in FUSION_MODES:
            raise ValueError(f"`fusion` must be one of {FUSION_MODES}, got {fusion!r}")
        self.channels = int(channels)
        self.voxel_size = None if voxel_size is None else float(voxel_size)
        self.dtype = dtype
        self.fusion = fusion
        self.device = torch.device(device)
        self.positions = torch.zeros(0, 3, device=self.device)  # [N,3] float32 world points
        self.features = torch.zeros(0, self.channels, dtype=dtype, device=self.device)  # [N,C]
        self.counts = torch.zeros(0, dtype=torch.int32, device=self.device)  # [N] observations
        self.latent_hw: tuple[int, int] | None = None  # grid of the first insert: read default
        self._voxels = VoxelIndex(torch.zeros(0, dtype=torch.long, device=self.device))

    # --- size ---------------------------------------------------------------------------

    @property
    def num_points(self) -> int:
        return len(self.positions)

    @property
    def nbytes(self) -> int:
        """Bytes of the cache as stored: positions (float32) + latents (storage dtype)."""
        return self.positions.nbytes + self.features.nbytes

    def __repr__(self) -> str:
        return (
            f"LatentSpatialMemory(points={self.num_points}, channels={self.channels}, "
            f"voxel_size={self.voxel_size}, dtype={self.dtype}, device={self.device})"
        )

    # --- write --------------------------------------------------------------------------

    def insert(
        self,
        latents: torch.Tensor,
        depth: torch.Tensor,
        cameras: Cameras,
        exclude: torch.Tensor | None = None,
    ) -> int:
        """Lift the valid latent cells of T frames into the cache.

        # latents [T,C,h,w], depth [T,H,W] z-depth (0 / +inf = none), exclude [T,H,W] bool
        `cameras` are the cameras of the H x W images; H = s h and W = s w for one integer s.
        Returns the number of points added (with fusion: voxels not seen before).
        """
        if latents.ndim != 4:
            raise ValueError(f"`latents` must have shape [T,C,h,w], got {tuple(latents.shape)}")
        T, C, h, w = latents.shape
        if C != self.channels:
            raise ValueError(f"`latents` must have {self.channels} channels, got {C}")
        check_observation(depth, cameras, exclude)
        if len(depth) != T:
            raise ValueError(f"`depth` must hold {T} frames like `latents`, got {len(depth)}")
        s = grid_factor(depth.shape[1], depth.shape[2], h, w)
        if not torch.isfinite(latents).all():
            raise ValueError("`latents` must be finite")

        dev = self.device
        cell_depth, valid = pool_depth(
            depth.to(dev), s, None if exclude is None else exclude.to(dev)
        )
        cams = cameras.to(dev).scaled(1 / s)
        # 1. back-project every valid cell centre
        uv = pixel_centers(h, w, dev).reshape(1, h * w, 2).expand(T, -1, -1)
        points = unproject(uv, cell_depth.reshape(T, h * w), cams.K, cams.c2w)  # [T,hw,3]
        keep = valid.reshape(-1)
        points = points.reshape(-1, 3)[keep]  # boolean index: one host sync per insert
        feats = latents.to(dev).permute(0, 2, 3, 1).reshape(-1, C)[keep].to(self.dtype)
        if self.latent_hw is None:
            self.latent_hw = (h, w)
        # 2. append, or fuse into voxels
        if self.voxel_size is None:
            return self._append(points, feats)
        return self._fuse(points, feats)

    def _append(self, points: torch.Tensor, feats: torch.Tensor, count: int = 1) -> int:
        self.positions = torch.cat([self.positions, points])
        self.features = torch.cat([self.features, feats])
        counts = torch.full((len(points),), count, dtype=torch.int32, device=self.device)
        self.counts = torch.cat([self.counts, counts])
        return len(points)

    def _fuse(self, points: torch.Tensor, feats: torch.Tensor) -> int:
        keys = voxel_keys(points, self.voxel_size)
        # 1. give every voxel not seen before an empty slot
        new_keys = keys[self._voxels.lookup(keys) < 0]
        new_keys = new_keys[last_of_each_key(new_keys)]
        self._append(
            torch.zeros(len(new_keys), 3, device=self.device),
            torch.zeros(len(new_keys), self.channels, dtype=self.dtype, device=self.device),
            count=0,
        )
        self._voxels.append(new_keys)
        slots = self._voxels.lookup(keys)
        # 2. write the observations into their slots
        seen = torch.zeros(self.num_points, dtype=torch.int32, device=self.device)
        seen.index_add_(0, slots, torch.ones_like(slots, dtype=torch.int32))
        if self.fusion == "latest":
            # The last observation of a voxel in this batch wins (frame order, then row-major);
            # after `last_of_each_key` the slots are distinct, so the writes cannot race.
            last = last_of_each_key(keys)
            self.positions[slots[last]] = points[last]
            self.features[slots[last]] = feats[last]
        else:
            self._running_mean(slots, seen, points, feats)
        self.counts += seen
        return len(new_keys)

    def _running_mean(self, slots, seen, points, feats) -> None:
        """Fold the observations into each slot's mean, weighted by its past observation count."""
        old = self.counts.double()[:, None]
        total = (old + seen.double()[:, None]).clamp(min=1)
        pos_sum = (self.positions.double() * old).index_add_(0, slots, points.double())
        feat_sum = (self.features.double() * old).index_add_(0, slots, feats.double())
        self.positions = (pos_sum / total).float()
        self.features = (feat_sum / total).to(self.dtype)

    # --- read ---------------------------------------------------------------------------

    def read(self, cameras: Cameras, latent_hw: tuple[int, int] | None = None) -> Readout:
        """Read the cache for T target cameras at once (exact z-buffer at latent resolution).

        `cameras` are image cameras as in `insert`; the grid is `latent_hw`, or the grid of the
        first insert. Returns latents [T,C,h,w] (storage dtype), mask and depth [T,1,h,w].
        """
        hw = latent_hw or self.latent_hw
        if hw is None:
            raise ValueError("`latent_hw` is needed to read a memory that has never been written")
        h, w = hw
        s = grid_factor(cameras.height, cameras.width, h, w)
        T = len(cameras)
        cams = cameras.to(self.device).scaled(1 / s)
        if self.num_points == 0:
            zeros = torch.zeros(T, 1, h, w, device=self.device)
            empty = torch.zeros(T, self.channels, h, w, dtype=self.dtype, device=self.device)
            return Readout(empty, zeros.bool(), zeros)
        index, depth = render_index(self.positions, cams.K, cams.w2c, h, w)  # [T,h,w] each
        hit = index != EMPTY
        feats = self.features.index_select(0, index.clamp(min=0).flatten()).view(T, h, w, -1)
        latents = torch.where(hit[..., None], feats, 0).permute(0, 3, 1, 2).contiguous()
        return Readout(latents, hit[:, None], depth[:, None])

    def read_depth(self, cameras: Cameras, latent_hw: tuple[int, int] | None = None):
        """Depth and visibility of the readout (the surface `RGBPointCache.read_depth` shares).

        # -> depth [T,1,h,w] (0 where empty), mask [T,1,h,w] bool
        """
        readout = self.read(cameras, latent_hw)
        return readout.depth, readout.mask

    # --- move, save, load, export -------------------------------------------------------

    def to(self, device) -> LatentSpatialMemory:
        """Move the cache to `device` in place and return it."""
        self.device = torch.device(device)
        self.positions = self.positions.to(device)
        self.features = self.features.to(device)
        self.counts = self.counts.to(device)
        self._voxels = VoxelIndex(self._voxels.keys.to(device))
        return self

    def config(self) -> dict:
        return {
            "channels": self.channels,
            "voxel_size": self.voxel_size,
            "dtype": str(self.dtype).removeprefix("torch."),
            "fusion": self.fusion,
            "latent_hw": list(self.latent_hw) if self.latent_hw else None,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the cache as safetensors with a JSON header (atomic: temp file, then rename)."""
        tensors = {
            "positions": self.positions.contiguous().cpu(),
            "features": self.features.contiguous().cpu(),
            "counts": self.counts.contiguous().cpu(),
        }
        meta = {"format": FORMAT, "version": str(VERSION), "config": json.dumps(self.config())}
        with atomic_path(path, ".safetensors") as tmp:
            save_file(tensors, tmp, metadata=meta)

    @classmethod
    def load(
        cls, path: str | os.PathLike, device: str | torch.device = "cpu"
    ) -> LatentSpatialMemory:
        """Read a cache written by `save`; refuses other formats, versions and missing tensors."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no memory file at {path}")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ValueError(
                    f"{path} is not a Mirage latent memory (format {meta.get('format')!r})"
                )
            if meta.get("version") != str(VERSION):
                raise ValueError(
                    f"{path} has memory format version {meta.get('version')!r}; this Mirage reads "
                    f"version {VERSION}"
                )
            missing = {"positions", "features", "counts"} - set(f.keys())
            if missing:
                raise ValueError(f"{path} lacks the tensors {sorted(missing)}")
            tensors = {k: f.get_tensor(k) for k in ("positions", "features", "counts")}
        cfg = json.loads(meta["config"])
        mem = cls(
            cfg["channels"],
            voxel_size=cfg["voxel_size"],
            dtype=getattr(torch, cfg["dtype"]),
            device=device,
            fusion=cfg["fusion"],
        )
        N = len(tensors["positions"])
        if tensors["features"].shape != (N, mem.channels) or tensors["counts"].shape != (N,):
            raise ValueError(f"{path} holds tensors of inconsistent shapes")
        mem.positions = tensors["positions"].to(device)
        mem.features = tensors["features"].to(device)
        mem.counts = tensors["counts"].to(device)
        mem.latent_hw = tuple(cfg["latent_hw"]) if cfg["latent_hw"] else None
        if mem.voxel_size is not None:
            mem._voxels = VoxelIndex(voxel_keys(mem.positions, mem.voxel_size))
        return mem

    def export_ply(self, path: str | os.PathLike) -> None:
        """Write the points as a binary PLY, latents shown as colours by a 3-component PCA."""
        xyz = self.positions.cpu().numpy().astype("<f4")
        rgb = features_to_rgb(self.features.cpu().float())
        header = (
            "ply\nformat binary_little_endian 1.0\n"
            f"comment Mirage latent memory: {self.num_points} points, {self.channels} channels, "
            "colours = PCA of latents\n"
            f"element vertex {self.num_points}\n"
            "property float x\nproperty float y\nproperty float z\n"
            "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
        )
        rows = np.empty(self.num_points, dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)])
        rows["xyz"], rows["rgb"] = xyz, rgb

        with atomic_path(path, ".ply") as tmp, open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(rows.tobytes())


def features_to_rgb(features: torch.Tensor) -> np.ndarray:  # [N,C] -> [N,3] uint8
    """Map latents to colours: first three principal components, each stretched 2..98 percentile."""
    if len(features) < 2:
        return np.full((len(features), 3), 128, dtype=np.uint8)
    centred = features - features.mean(0)
    _, _, V = torch.linalg.svd(centred[:200_000], full_matrices=False)  # a sample fixes the axes
    comps = centred @ V[:3].T
    if comps.shape[1] < 3:
        comps = torch.nn.functional.pad(comps, (0, 3 - comps.shape[1]))
    lo, hi = torch.quantile(comps[:100_000], torch.tensor([0.02, 0.98]), dim=0)
    unit = ((comps - lo) / (hi - lo).clamp(min=1e-8)).clamp(0, 1)
    return (unit * 255).round().to(torch.uint8).numpy()
