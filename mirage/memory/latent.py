"""LatentSpatialMemory: a 3D cache of VAE latents, written by back-projection, read by z-buffer.

Each valid latent cell of an observed frame becomes one world-space point carrying its C-dim
latent. Reading projects every point into T target cameras at latent resolution and keeps
the frontmost per cell (exact z-buffer of `mirage.geometry.zbuffer`). Nothing is rendered in
pixel space and nothing is re-encoded.

With `subcells` r > 1 a point also keeps the r x r sub-cell centres of its cell, lifted at
their own depth, and a read z-buffers those on an r-times finer grid, then averages the
latents of each cell's visible sub-cells: the cell a target view sees takes the points that
cover it in proportion to their area, instead of the one whose centre lands in it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from mirage.atomic import atomic_path
from mirage.geometry import (
    EMPTY,
    Cameras,
    pixel_centers,
    render_index,
    rigid_inverse,
    transform_points,
    unproject,
)
from mirage.memory.base import Observation, Readout, empty_readout
from mirage.memory.fusion import FOOTPRINT, VoxelIndex, nearest_of_each_key, voxel_keys
from mirage.memory.pooling import check_observation, grid_factor, pool_depth
from mirage.memory.tensors import check_finite, load_tensors

FORMAT = "mirage.latent_spatial_memory"
VERSION = 3  # 2 adds the float32 running means of mean fusion, 3 the sub-cell points
FUSION_MODES = ("latest", "mean", "first")
# The generation and training defaults (GenerationConfig, TrainConfig, make_memory, training
# samples): running-mean fusion and 2x2 sub-cell reads (docs/memory.md has the measurements).
# The class itself reads one point per cell unless told otherwise, as the paper does.
DEFAULT_FUSION = "mean"
DEFAULT_SUBCELLS = 2
# An observation is the same surface as a stored point when their depths in the observing
# view differ by at most this fraction of the voxel edge (fixed voxels) ...
SAME_SURFACE_VOXEL = 0.5
# ... or of the depth itself (footprint fusion: the stored point the view sees in that cell).
SAME_SURFACE_DEPTH = 0.2
# An empty cell where at least this share of its neighbours in the image show a stored surface
# at the new observation's depth is a gap between resampled points, not unseen space.
GAP_NEIGHBOURS = 0.5


def check_subcells(subcells) -> None:
    if isinstance(subcells, bool) or not isinstance(subcells, int) or subcells < 1:
        raise ValueError(f"`subcells` must be a positive integer, got {subcells!r}")


def _positive(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and x > 0


class LatentSpatialMemory:
    """Persistent world-space cache of latent tokens.

    Args:
        channels: C, the latent channels stored per point (48 for the Wan2.2 VAE).
        voxel_size: "footprint" fuses in the observing view's own latent cells (the voxel of
            an observation is its cell's footprint at its depth: the generation default);
            a number (world units) fuses per voxel of that fixed edge; None appends every
            observation (kept for measurement).
        dtype: storage dtype of the latents (bf16 halves the cache; reads return this dtype).
        device: where the points live and where reads run.
        fusion: how a voxel already holding a point takes a new observation of the same
            surface: "mean" (running mean of positions and latents, accumulated in float32:
            the default, it reads back cleaner, docs/memory.md), "latest" (the new
            observation replaces the old) or "first" (the surface keeps the latent it was
            first seen with: later views only add what no earlier one saw, or a nearer
            surface; a revisit reads back what was seen, not what was generated since).

    Fusion is decided by what the observing view sees, so a farther surface never replaces a
    nearer one:

    - "footprint": the memory is read (z-buffer) in the new view first. A valid cell where
      the view sees the stored point at its own depth (within 20 %) observes that point:
      its latent is fused ("latest", "mean"; "first" keeps it; the point keeps its position,
      so the coverage earlier views rely on stays). A cell that shows nothing (unless half its
      neighbours show a surface at its depth: a gap between resampled points) or a stored
      point behind the new surface adds a point. A cell whose new surface lies behind the
      stored point (the view sees past an edge) adds nothing. The cache grows only where some
      view would read a hole: it is bounded by the scene's surfaces at the resolution they
      were seen, not by time (`tests/memory` checks a 1,000-frame walk in one room).
    - fixed voxels: per view, the nearest observation of each voxel; it replaces (or joins
      the mean of) the stored point unless it lies behind it by more than half a voxel.
    """

    stores_geometry = True

    def __init__(
        self,
        channels: int,
        voxel_size: float | str | None = None,
        dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device = "cpu",
        fusion: str = DEFAULT_FUSION,
        subcells: int = 1,
    ):
        if int(channels) != channels or channels <= 0:
            raise ValueError(f"`channels` must be a positive integer, got {channels}")
        if voxel_size != FOOTPRINT and voxel_size is not None and not _positive(voxel_size):
            raise ValueError(
                f"`voxel_size` must be a positive number, {FOOTPRINT!r} or None, got {voxel_size!r}"
            )
        if fusion not in FUSION_MODES:
            raise ValueError(f"`fusion` must be one of {FUSION_MODES}, got {fusion!r}")
        check_subcells(subcells)
        self.subcells = subcells
        self.channels = int(channels)
        self.voxel_size = voxel_size if voxel_size in (None, FOOTPRINT) else float(voxel_size)
        self.dtype = dtype
        self.fusion = fusion
        self.device = torch.device(device)
        self.positions = torch.zeros(0, 3, device=self.device)  # [N,3] float32 world points
        self.features = torch.zeros(0, self.channels, dtype=dtype, device=self.device)  # [N,C]
        self.counts = torch.zeros(0, dtype=torch.int32, device=self.device)  # [N] observations
        # mean fusion: the float32 running mean the stored features round (bf16 alone stalls);
        # appending (voxel_size None) never fuses, so it keeps none
        fused_mean = fusion == "mean" and self.voxel_size is not None
        self.means = torch.zeros(0, self.channels, device=self.device) if fused_mean else None
        # sub-cells: [N, r*r, 3] float32 world points of each point's r x r sub-cell centres
        subs = torch.zeros(0, subcells**2, 3, device=self.device)
        self.subpoints = subs if subcells > 1 else None
        self.latent_hw: tuple[int, int] | None = None  # grid of the first insert: read default
        self._voxels = VoxelIndex(torch.zeros(0, dtype=torch.long, device=self.device))

    # --- size ---------------------------------------------------------------------------

    @property
    def num_points(self) -> int:
        return len(self.positions)

    @property
    def nbytes(self) -> int:
        """Bytes of the cache as stored: positions (float32) + latents (+ float32 means, +
        sub-cell points)."""
        extra = sum(t.nbytes for t in (self.means, self.subpoints) if t is not None)
        return self.positions.nbytes + self.features.nbytes + extra

    def __repr__(self) -> str:
        return (
            f"LatentSpatialMemory(points={self.num_points}, channels={self.channels}, "
            f"voxel_size={self.voxel_size}, subcells={self.subcells}, dtype={self.dtype}, "
            f"device={self.device})"
        )

    # --- write --------------------------------------------------------------------------

    def observe(self, obs: Observation) -> int:
        """SpatialMemory: keep the clean latents of an observation."""
        return self.insert(obs.latents, obs.depth, obs.cameras, obs.exclude)

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
        Returns the number of points added (with fusion: voxels not seen before). With fusion
        the frames are fused one after another, in order.
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
        if s % self.subcells:
            raise ValueError(
                f"`subcells` {self.subcells} must divide the latent cell's {s} pixels per side"
            )
        if not torch.isfinite(latents).all():
            raise ValueError("`latents` must be finite")

        dev = self.device
        depth, cameras = depth.to(dev), cameras.to(dev)
        exclude = None if exclude is None else exclude.to(dev)
        cell_depth, valid = pool_depth(depth, s, exclude)
        cams = cameras.scaled(1 / s)
        # 1. back-project every cell centre
        uv = pixel_centers(h, w, dev).reshape(1, h * w, 2).expand(T, -1, -1)
        z = cell_depth.reshape(T, h * w)
        points = unproject(uv, z, cams.K, cams.c2w)  # [T,hw,3]
        feats = latents.to(dev).permute(0, 2, 3, 1).reshape(T, h * w, C)
        valid = valid.reshape(T, h * w)
        subs = None
        if self.subcells > 1:
            subs = _subcell_points(depth, cell_depth, exclude, cameras, s, self.subcells)
        if self.latent_hw is None:
            self.latent_hw = (h, w)
        # 2. append the valid ones, or fuse them into voxels view by view
        if self.voxel_size is None:
            return self._append(points[valid], feats[valid], _rows(subs, valid))
        fuse = self._fuse_in_view if self.voxel_size == FOOTPRINT else self._fuse_in_voxels
        added = 0
        for t in range(T):  # in order: each view decides against what the earlier ones stored
            cells = valid[t].nonzero().flatten()
            sub = None if subs is None else subs[t][cells]
            added += fuse(points[t][cells], feats[t][cells], z[t][cells], cams[t], cells, sub)
        return added

    def _append(self, points: torch.Tensor, feats: torch.Tensor, subs=None) -> int:
        self.positions = torch.cat([self.positions, points])
        if self.subpoints is not None:
            self.subpoints = torch.cat([self.subpoints, subs])
        self.features = torch.cat([self.features, feats.to(self.dtype)])
        if self.means is not None:
            self.means = torch.cat([self.means, feats.float()])
        ones = torch.ones(len(points), dtype=torch.int32, device=self.device)
        self.counts = torch.cat([self.counts, ones])
        return len(points)

    def _fuse_in_view(self, points, feats, z, cam: Cameras, cells, subs=None) -> int:
        """Fuse one view's valid cells with the points it sees there.

        # points [M,3], feats [M,C], z [M], cells [M] flat cell indices, subs [M,r*r,3] | None;
        `cam` at latent size. A point's sub-cells follow its latent (replaced or averaged with
        it); its position, what fusion compares, stays.
        """
        h, w = self.latent_hw
        if self.num_points == 0:
            return self._append(points, feats, subs)
        index, depth = render_index(self.positions, cam.K, cam.w2c, h, w)
        hit, z_old = index.flatten()[cells], depth.flatten()[cells]
        seen = hit != EMPTY
        tol = SAME_SURFACE_DEPTH * z_old
        same = seen & ((z - z_old).abs() <= tol)
        gap = ~seen & _resampling_gaps(index[0] != EMPTY, depth[0], cells, z)
        new = (~seen & ~gap) | (z < z_old - tol)  # unseen space, or the stored point lies behind
        # distinct slots: a z-buffer shows each point in at most one cell of a view
        if self.fusion == "latest":
            self._overwrite(hit[same], None, feats[same], subs=_rows(subs, same))
        elif self.fusion == "mean":
            self._fold_mean(hit[same], None, feats[same], _rows(subs, same))
        else:  # "first": the stored latent stays; the point counts the observation
            self.counts[hit[same]] += 1
        return self._append(points[new], feats[new], _rows(subs, new))

    def _fuse_in_voxels(self, points, feats, z, cam: Cameras, cells, subs=None) -> int:
        """Fuse one view's valid cells into fixed voxels.

        # points [M,3], feats [M,C], z [M], subs [M,r*r,3] | None (they follow the latents)
        """
        keys = voxel_keys(points, self.voxel_size)
        # 1. one observation per voxel and view: the nearest (a view sees its front surface)
        pick = nearest_of_each_key(keys, z)
        points, feats, z, keys = points[pick], feats[pick], z[pick], keys[pick]
        subs = _rows(subs, pick)
        slots = self._voxels.lookup(keys)
        new = slots < 0
        # 2. voxels already held: the observing view compares its depths of both points
        old = ~new
        slot, p_new, f_new, z_new = slots[old], points[old], feats[old], z[old]
        s_new = _rows(subs, old)
        z_old = transform_points(self.positions[slot], cam.w2c)[0, :, 2]
        tol = SAME_SURFACE_VOXEL * self.voxel_size
        nearer = z_new < z_old - tol  # the stored point lies behind what this view sees
        same = (z_new - z_old).abs() <= tol
        if self.fusion == "latest":
            take = nearer | same
            self._overwrite(slot[take], p_new[take], f_new[take], subs=_rows(s_new, take))
        else:
            self._overwrite(slot[nearer], p_new[nearer], f_new[nearer], restart=True,
                            subs=_rows(s_new, nearer))  # fmt: skip
            if self.fusion == "mean":
                self._fold_mean(slot[same], p_new[same], f_new[same], _rows(s_new, same))
            else:  # "first": the stored latent stays; the point counts the observation
                self.counts[slot[same]] += 1
        # 3. voxels not seen before
        self._voxels.append(keys[new])
        return self._append(points[new], feats[new], _rows(subs, new))

    def _overwrite(self, slot, points, feats, restart: bool = False, subs=None) -> None:
        """The newest observation wins in (distinct) `slot`; `points` None keeps positions.

        `restart` starts the running mean over (a nearer surface replaced the stored one).
        """
        if points is not None:
            self.positions[slot] = points
        if subs is not None:
            self.subpoints[slot] = subs
        self.features[slot] = feats.to(self.dtype)
        if self.means is not None:
            self.means[slot] = feats.float()
        self.counts[slot] = 1 if restart else self.counts[slot] + 1

    def _fold_mean(self, slot, points, feats, subs=None) -> None:
        """Running mean in float32 over the observations of (distinct) `slot`."""
        n = (self.counts[slot] + 1).float()[:, None]
        if points is not None:
            self.positions[slot] += (points - self.positions[slot]) / n
        if subs is not None:
            self.subpoints[slot] += (subs - self.subpoints[slot]) / n[:, None]
        self.means[slot] += (feats.float() - self.means[slot]) / n
        self.features[slot] = self.means[slot].to(self.dtype)
        self.counts[slot] += 1

    # --- read ---------------------------------------------------------------------------

    def _render(self, cameras: Cameras, latent_hw):  # -> index [T,H',W'], depth [T,H',W'], hw
        """The z-buffer at the latent grid, or with sub-cells at the r-times finer grid (the
        index then counts sub-points: point = index // r**2)."""
        hw = latent_hw or self.latent_hw
        if hw is None:
            raise ValueError("`latent_hw` is needed to read a memory that has never been written")
        r = self.subcells
        h, w = hw[0] * r, hw[1] * r
        s = grid_factor(
            cameras.height, cameras.width, h, w, "sub-cell grid" if r > 1 else "latent grid"
        )
        if self.num_points == 0:
            T = len(cameras)
            empty = torch.full((T, h, w), EMPTY, dtype=torch.long, device=self.device)
            return empty, torch.zeros(T, h, w, device=self.device), hw
        K, w2c = _latent_grid_cameras(cameras, s, self.device)
        points = self.positions if r == 1 else self.subpoints.view(-1, 3)
        index, depth = render_index(points, K, w2c, h, w)
        return index, depth, hw

    def read(self, cameras: Cameras, latent_hw: tuple[int, int] | None = None) -> Readout:
        """Read the cache for T target cameras at once (exact z-buffer at latent resolution;
        with sub-cells, the mean latent of each cell's visible sub-cells, module docstring).

        `cameras` are image cameras as in `insert`; the grid is `latent_hw`, or the grid of the
        first insert. Returns latents [T,C,h,w] (storage dtype), mask and depth [T,1,h,w].
        """
        index, depth, hw = self._render(cameras, latent_hw)
        if self.num_points == 0:
            return empty_readout(len(cameras), self.channels, hw, self.device, self.dtype)
        hit = index != EMPTY
        if self.subcells > 1:
            return _pool_subcells(self.features, index, hit, depth, self.subcells)
        return Readout(_gather_cells(self.features, index, hit), hit[:, None], depth[:, None])

    def read_depth(self, cameras: Cameras, latent_hw: tuple[int, int] | None = None):
        """Depth and visibility of the readout, without gathering latents.

        # -> depth [T,1,h,w] (0 where empty), mask [T,1,h,w] bool
        """
        index, depth, _ = self._render(cameras, latent_hw)
        hit = index != EMPTY
        if self.subcells > 1:
            return _subcell_depth(hit, depth, self.subcells)[:2]
        return depth[:, None], hit[:, None]

    # --- move, save, load, export -------------------------------------------------------

    def to(self, device) -> LatentSpatialMemory:
        """Move the cache to `device` in place and return it."""
        self.device = torch.device(device)
        self.positions = self.positions.to(device)
        self.features = self.features.to(device)
        self.counts = self.counts.to(device)
        if self.means is not None:
            self.means = self.means.to(device)
        if self.subpoints is not None:
            self.subpoints = self.subpoints.to(device)
        self._voxels = self._voxels.to(device)
        return self

    def config(self) -> dict:
        return {
            "channels": self.channels,
            "voxel_size": self.voxel_size,
            "dtype": str(self.dtype).removeprefix("torch."),
            "fusion": self.fusion,
            "subcells": self.subcells,
            "latent_hw": list(self.latent_hw) if self.latent_hw else None,
        }

    def _tensors(self) -> dict[str, torch.Tensor]:
        out = {"positions": self.positions, "features": self.features, "counts": self.counts}
        if self.means is not None:
            out["means"] = self.means
        if self.subpoints is not None:
            out["subpoints"] = self.subpoints
        return {k: v.contiguous().cpu() for k, v in out.items()}

    def save(self, path: str | os.PathLike) -> None:
        """Write the cache as safetensors with a JSON header (atomic: temp file, then rename)."""
        meta = {"format": FORMAT, "version": str(VERSION), "config": json.dumps(self.config())}
        with atomic_path(path, ".safetensors") as tmp:
            save_file(self._tensors(), tmp, metadata=meta)

    @classmethod
    def load(
        cls, path: str | os.PathLike, device: str | torch.device = "cpu"
    ) -> LatentSpatialMemory:
        """Read a cache written by `save` (format version 1, 2 or 3).

        Refuses other formats and versions, missing, mis-shaped or non-finite tensors.
        """
        meta, tensors = load_tensors(path, FORMAT, ("1", "2", str(VERSION)))
        path = Path(path)
        try:
            cfg = json.loads(meta["config"])
            mem = cls(
                cfg["channels"], voxel_size=cfg["voxel_size"], dtype=getattr(torch, cfg["dtype"]),
                device=device, fusion=cfg["fusion"], subcells=cfg.get("subcells", 1),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{path} has an unreadable memory config: {err}") from None
        need = {"positions", "features", "counts"}
        need |= {"means"} if mem.means is not None and meta["version"] != "1" else set()
        need |= {"subpoints"} if mem.subpoints is not None else set()
        missing = need - set(tensors)
        if missing:
            raise ValueError(f"{path} lacks the tensors {sorted(missing)}")
        N = len(tensors["positions"])
        shapes = {"positions": (N, 3), "features": (N, mem.channels), "counts": (N,)}
        shapes["means"] = (N, mem.channels)
        shapes["subpoints"] = (N, mem.subcells**2, 3)
        bad = [k for k in tensors if k in shapes and tuple(tensors[k].shape) != shapes[k]]
        if bad:
            raise ValueError(f"{path} holds tensors of inconsistent shapes: {sorted(bad)}")
        floats = ("positions", "features", "means", "subpoints")
        check_finite(path, {k: tensors[k] for k in floats if k in tensors})
        mem.positions = tensors["positions"].float().to(device)
        mem.features = tensors["features"].to(mem.dtype).to(device)
        mem.counts = tensors["counts"].to(torch.int32).to(device)
        if mem.means is not None:
            mem.means = tensors.get("means", tensors["features"]).float().to(device)
        if mem.subpoints is not None:
            mem.subpoints = tensors["subpoints"].float().to(device)
        mem.latent_hw = tuple(cfg["latent_hw"]) if cfg["latent_hw"] else None
        if mem.voxel_size not in (None, FOOTPRINT):  # a voxel's key follows from its point
            mem._voxels = VoxelIndex(voxel_keys(mem.positions, mem.voxel_size))
        return mem

    def export_ply(self, path: str | os.PathLike) -> None:
        """Write the points as a binary PLY, latents shown as colours by a 3-component PCA."""
        write_ply(path, self.positions, features_to_rgb(self.features.cpu().float()),
                  f"Mirage latent memory: {self.num_points} points, {self.channels} channels, "
                  "colours = PCA of latents")  # fmt: skip


def _latent_grid_cameras(cameras: Cameras, s: int, device):  # -> K [T,3,3], w2c [T,4,4]
    """`cameras.to(device).scaled(1 / s)`'s K and w2c, the same bits, without building (and
    checking again) two `Cameras` on every read: the checks cost more than the z-buffer of a
    small memory. `s` is a whole factor of the image size (`grid_factor`)."""
    K, c2w = cameras.K.to(device), cameras.c2w.to(device)
    h, w = cameras.height // s, cameras.width // s
    S = torch.tensor(
        [[w / cameras.width, 0, 0], [0, h / cameras.height, 0], [0, 0, 1]],
        dtype=K.dtype, device=device,
    )  # fmt: skip
    return S @ K, rigid_inverse(c2w)


def _gather_cells(features: torch.Tensor, index: torch.Tensor, hit: torch.Tensor):
    """The latent each cell shows, zero where it shows none.

    # features [N,C], index [T,h,w] (EMPTY where none), hit = index != EMPTY -> [T,C,h,w]
    Rows are gathered into [T*h*w, C], the empty ones zeroed (on CPU only those rows: a
    masked pass over all of them costs more than the gather), then transposed once (the
    transpose of 2-byte elements is most of the time; measured, no torch layout trick beat it).
    """
    T, h, w = index.shape
    flat = index.flatten()
    rows = features.index_select(0, flat.clamp(min=0))  # [T*h*w, C]
    empty = ~hit.flatten()
    if rows.device.type == "cpu":  # nonzero: a host sync on a GPU, nothing on CPU
        rows.index_fill_(0, empty.nonzero().flatten(), 0)
    else:
        rows.masked_fill_(empty[:, None], 0)
    return rows.view(T, h * w, -1).transpose(1, 2).contiguous().view(T, -1, h, w)


def _rows(x: torch.Tensor | None, rows) -> torch.Tensor | None:
    """`x[rows]`, None for None (sub-cells are optional everywhere)."""
    return None if x is None else x[rows]


def _subcell_points(depth, cell_depth, exclude, cameras: Cameras, s: int, r: int):
    """World points of the r x r sub-cell centres of every latent cell of T frames.

    # depth [T,H,W], cell_depth [T,h,w], exclude [T,H,W] | None -> [T,h*w,r*r,3]
    A sub-cell's depth is the median pool of its own (s/r)^2 pixels (`pool_depth`), the cell's
    depth where it has too few valid pixels. Sub-cells are in row-major order in their cell.
    """
    T, h, w = cell_depth.shape
    q = s // r
    sub_depth, sub_valid = pool_depth(depth, q, exclude)  # [T,h*r,w*r]
    coarse = cell_depth.repeat_interleave(r, 1).repeat_interleave(r, 2)
    z = torch.where(sub_valid, sub_depth, coarse).reshape(T, -1)
    cams = cameras.scaled(1 / q)
    uv = pixel_centers(h * r, w * r, depth.device).reshape(1, -1, 2).expand(T, -1, -1)
    points = unproject(uv, z, cams.K, cams.c2w)  # [T, h*r*w*r, 3]
    points = points.view(T, h, r, w, r, 3).permute(0, 1, 3, 2, 4, 5)
    return points.reshape(T, h * w, r * r, 3)


def _subcell_depth(hit: torch.Tensor, depth: torch.Tensor, r: int):
    """Mean depth, mask and visible sub-cell count of each cell from its r x r sub-cells.

    # hit, depth [T,h*r,w*r] -> depth [T,1,h,w] (0 where masked), mask [T,1,h,w], count [T,h,w]
    A cell is visible when at least half its sub-cells show a point.
    """
    T, H, W = hit.shape
    count = hit.view(T, H // r, r, W // r, r).sum((2, 4))
    total = torch.where(hit, depth, 0.0).view(T, H // r, r, W // r, r).sum((2, 4))
    mask = 2 * count >= r * r
    mean = torch.where(mask, total / count.clamp(min=1), 0.0)
    return mean[:, None], mask[:, None], count


def _pool_subcells(features, index, hit, depth, r: int) -> Readout:
    """The readout of a sub-cell z-buffer: each visible cell's mean latent over its visible
    sub-cells (float32 sums, storage dtype out), zero where the cell is masked.

    # features [N,C], index [T,h*r,w*r] over the N*r*r sub-points -> Readout at [h,w]
    """
    T, H, W = index.shape
    h, w = H // r, W // r
    owner = torch.where(hit, index // (r * r), 0)  # the point each sub-point belongs to
    rows = features.index_select(0, owner.flatten()).float() * hit.reshape(-1, 1)
    sums = rows.view(T, h, r, w, r, -1).sum((2, 4))  # [T,h,w,C]
    cell_depth, mask, count = _subcell_depth(hit, depth, r)
    latents = torch.where(mask[:, 0, ..., None], sums / count.clamp(min=1)[..., None], 0.0)
    return Readout(latents.permute(0, 3, 1, 2).to(features.dtype), mask, cell_depth)


def _resampling_gaps(hit: torch.Tensor, depth: torch.Tensor, cells, z) -> torch.Tensor:
    """Which of `cells` have >= GAP_NEIGHBOURS of their in-image neighbours showing a surface
    within tolerance of z.

    # hit [h,w] bool, depth [h,w] of one view's readout; cells [M] flat indices, z [M] -> [M]
    """
    d = torch.where(hit, depth, torch.nan)[None, None]
    d = torch.nn.functional.pad(d, (1, 1, 1, 1), value=-1.0)  # -1: outside the image
    around = torch.nn.functional.unfold(d, 3)[0]  # [9,hw]; row 4 is the cell itself
    around = torch.cat([around[:4], around[5:]])[:, cells]  # [8,M]
    close = (around - z).abs() <= SAME_SURFACE_DEPTH * z  # NaN (empty) compares False
    inside = (around != -1.0).sum(0)
    return close.sum(0) >= GAP_NEIGHBOURS * inside


def write_ply(path: str | os.PathLike, positions: torch.Tensor, rgb: np.ndarray, comment: str):
    """Binary little-endian PLY of N points with uint8 colours (atomic).  # [N,3], [N,3]"""
    n = len(positions)
    header = (
        f"ply\nformat binary_little_endian 1.0\ncomment {comment}\nelement vertex {n}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    rows = np.empty(n, dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)])
    rows["xyz"], rows["rgb"] = positions.cpu().numpy().astype("<f4"), rgb
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
