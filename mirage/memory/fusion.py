"""Voxel hashing for memory fusion: one point per voxel, so revisiting a place adds nothing.

Points are hashed to integer voxel coordinates packed in one int64 key (21 bits per axis,
so coordinates within +-2^20 voxels of the origin: +-10 km at 1 cm voxels). A sorted copy of
the keys answers look-ups with `searchsorted`; no Python dict, no per-point loop.
"""

from __future__ import annotations

import torch

_BITS = 21
_OFFSET = 1 << (_BITS - 1)


def voxel_keys(points: torch.Tensor, voxel_size: float) -> torch.Tensor:  # [N,3] -> [N] int64
    """Pack the voxel coordinates floor(p / voxel_size) of each point into one int64."""
    coords = torch.floor(points.to(torch.float64) / voxel_size).long()
    if len(coords) and (coords.abs().max() >= _OFFSET):
        raise ValueError(
            f"points must lie within {_OFFSET} voxels ({_OFFSET * voxel_size:g} units) of the "
            f"origin for voxel_size={voxel_size}; got {int(coords.abs().max())} voxels"
        )
    c = coords + _OFFSET
    return (c[:, 0] << (2 * _BITS)) | (c[:, 1] << _BITS) | c[:, 2]


def last_of_each_key(keys: torch.Tensor) -> torch.Tensor:  # [M] -> [U] int64 positions
    """Positions of the last occurrence of each distinct key, in increasing position order."""
    if len(keys) == 0:
        return torch.zeros(0, dtype=torch.long, device=keys.device)
    unique, inverse = torch.unique(keys, return_inverse=True)
    last = torch.full((len(unique),), -1, dtype=torch.long, device=keys.device)
    last.scatter_reduce_(0, inverse, torch.arange(len(keys), device=keys.device), reduce="amax")
    return last.sort().values


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
