"""Reference-frame retrieval: the past clean latents whose memory points overlap a chunk's views.

The rule is the official inference's (microsoft/LatentSpatialMemory): when a latent is written,
the voxels (cubes of `voxel_size` world units) of the memory points inside its camera's
frustum are recorded; for a new chunk, the voxels of the memory points inside any target
camera's frustum are compared with each recorded set by IoU |A n B| / |A u B|; the latents
with IoU >= `threshold` are taken, highest first (ties: the older latent), at most
`max_refs`. "Inside the frustum" is z > 0 and the projection inside the image; occlusion is
not taken into account (as there).
"""

from __future__ import annotations

import torch

from mirage.geometry import Cameras
from mirage.geometry.projection import project
from mirage.memory.fusion import voxel_keys

REF_THRESHOLD = 0.04  # the official inference's ref_iou_threshold (and its data's eps_iou)
REF_VOXEL = 0.1  # world units; the official ref_iou_voxel_size (metric depth: 10 cm)
MAX_REFS = 4  # the official inference's max_reference_frames


def frustum_voxels(points: torch.Tensor, cameras: Cameras, voxel_size: float) -> torch.Tensor:
    """Sorted distinct voxel keys [M] int64 of the points [N,3] inside any of T cameras' views."""
    if len(points) == 0:
        return torch.zeros(0, dtype=torch.long, device=points.device)
    cams = cameras.to(points.device)
    uv, z = project(points.float(), cams.K, cams.w2c)  # [T,N,2], [T,N]
    inside = (z > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < cams.width)
    inside &= (uv[..., 1] >= 0) & (uv[..., 1] < cams.height)
    return torch.unique(voxel_keys(points[inside.any(0)], voxel_size))


def voxel_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two sorted distinct key sets [Ma], [Mb]; 0 when both are empty."""
    inter = int(torch.isin(a, b).sum())  # host sync: one number per candidate
    union = len(a) + len(b) - inter
    return inter / union if union else 0.0


class ReferenceBank:
    """Clean latents, cameras and frustum voxels of every latent written so far."""

    def __init__(
        self, threshold: float = REF_THRESHOLD, voxel_size: float = REF_VOXEL,
        max_refs: int = MAX_REFS,
    ):  # fmt: skip
        if not 0 <= threshold <= 1:
            raise ValueError(f"`threshold` must be an IoU in [0, 1], got {threshold}")
        if not voxel_size > 0:
            raise ValueError(f"`voxel_size` must be > 0, got {voxel_size}")
        if max_refs < 1:
            raise ValueError(f"`max_refs` must be >= 1, got {max_refs}")
        self.threshold, self.voxel_size, self.max_refs = threshold, voxel_size, max_refs
        self.latents: list[torch.Tensor] = []  # [C,h,w] each
        self.cameras: list[Cameras] = []
        self.voxels: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.latents)

    def add(self, latents: torch.Tensor, cameras: Cameras, points: torch.Tensor) -> None:
        """Record T latents [T,C,h,w] with their cameras, against the memory points [N,3] now."""
        if len(latents) != len(cameras):
            raise ValueError(f"{len(latents)} latents but {len(cameras)} cameras")
        for i in range(len(latents)):
            self.latents.append(latents[i])
            self.cameras.append(cameras[i : i + 1])
            self.voxels.append(frustum_voxels(points, cameras[i : i + 1], self.voxel_size))

    def scores(self, cameras: Cameras, points: torch.Tensor) -> list[float]:
        """IoU of each recorded latent's voxels with those the target cameras see now."""
        target = frustum_voxels(points, cameras, self.voxel_size)
        return [voxel_iou(target, v.to(target.device)) for v in self.voxels]

    def select(self, cameras: Cameras, points: torch.Tensor) -> list[int]:
        """Indices of the references for target `cameras`: IoU >= threshold, best first."""
        scores = self.scores(cameras, points)
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        return [i for i in order if scores[i] >= self.threshold][: self.max_refs]

    def stack(self, indices: list[int]) -> torch.Tensor:  # -> [R,C,h,w]
        return torch.stack([self.latents[i] for i in indices])
