"""Test cameras: asymmetric intrinsics (fx != fy, cx != cy, H != W) so a swapped axis fails."""

import math

import torch

from mirage.geometry import Cameras


def rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> torch.Tensor:  # -> [3,3]
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    Ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rx = torch.tensor([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    Rz = torch.tensor([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return Ry @ Rx @ Rz


def pose(R: torch.Tensor, t) -> torch.Tensor:  # -> [4,4]
    c2w = torch.eye(4)
    c2w[:3, :3] = R
    c2w[:3, 3] = torch.as_tensor(t, dtype=torch.float32)
    return c2w


def intrinsics(height: int, width: int, fx_scale=1.0, fy_scale=1.1, dx=0.7, dy=-1.3):
    """Asymmetric K for an H x W image: fx != fy and a principal point off centre."""
    return torch.tensor(
        [[fx_scale * width, 0, width / 2 + dx], [0, fy_scale * width, height / 2 + dy], [0, 0, 1]]
    )


def random_cameras(gen: torch.Generator, T: int, height: int, width: int, spread=0.3) -> Cameras:
    c2w = []
    for _ in range(T):
        angles = (torch.rand(3, generator=gen) - 0.5) * 2 * spread
        t = (torch.rand(3, generator=gen) - 0.5) * spread
        c2w.append(pose(rotation(*angles.tolist()), t))
    K = intrinsics(height, width).expand(T, 3, 3)
    return Cameras(K, torch.stack(c2w), height, width)
