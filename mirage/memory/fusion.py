"""Voxel hashing for fixed-size memory fusion: one point per voxel, so revisiting adds nothing.

Points are hashed to integer voxel coordinates packed in one int64 key (21 bits per axis, so
coordinates within +-2^20 voxels of the origin: +-10 km at 1 cm voxels). A sorted copy of the
keys answers look-ups with `searchsorted`; no Python dict, no per-point loop.

The generation default, "footprint" fusion, needs no hash: it associates observations with
stored points in the observing view's own latent cells (`LatentSpatialMemory`).
"""

from __future__ import annotations

import torch

FOOTPRINT = "footprint"

_BITS = 21
_OFFSET = 1 << (_BITS - 1)


def _pack(coords: torch.Tensor) -> torch.Tensor:
    if len(coords) and (coords.abs().max() >= _OFFSET):
        raise ValueError(
            f"points must lie within {_OFFSET} voxels of the origin; got "
            f"{int(coords.abs().max())} voxels"
        )
    c = coords + _OFFSET
    return (c[:, 0] << (2 * _BITS)) | (c[:, 1] << _BITS) | c[:, 2]


def voxel_keys(points: torch.Tensor, voxel_size: float) -> torch.Tensor:  # [N,3] -> [N] int64
    """Pack the voxel coordinates floor(p / voxel_size) of each point into one int64."""
    return _pack(torch.floor(points.to(torch.float64) / voxel_size).long())


def nearest_of_each_key(keys: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Positions of the smallest-z entry of each distinct key (ties: the smallest position).

    # keys [M] int64, z [M] -> [U] int64 positions in increasing order. Two stable sorts, so
    the choice is exact and the same on every device.
    """
    if len(keys) == 0:
        return torch.zeros(0, dtype=torch.long, device=keys.device)
    by_z = torch.sort(z, stable=True).indices
    perm = by_z[torch.sort(keys[by_z], stable=True).indices]
    run_keys = keys[perm]
    first = torch.ones_like(run_keys, dtype=torch.bool)
    first[1:] = run_keys[1:] != run_keys[:-1]
    return perm[first].sort().values


class VoxelIndex:
    """Map from voxel key to the slot (point index) that holds that voxel."""

    def __init__(self, keys: torch.Tensor):  # [N] int64, one distinct key per slot
        self.keys = keys
        self._sorted, self._order = keys.sort()

    def lookup(self, keys: torch.Tensor) -> torch.Tensor:  # [M] -> slot [M] int64, -1 if new
        if len(self._sorted) == 0:
            return torch.full_like(keys, -1)
        pos = torch.searchsorted(self._sorted, keys).clamp(max=len(self._sorted) - 1)
        found = self._sorted[pos] == keys
        return torch.where(found, self._order[pos], -1)

    def append(self, keys: torch.Tensor) -> None:
        self.keys = torch.cat([self.keys, keys])
        self._sorted, self._order = self.keys.sort()

    def to(self, device) -> VoxelIndex:
        return VoxelIndex(self.keys.to(device))
