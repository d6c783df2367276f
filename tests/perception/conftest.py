"""Shared fixtures: a small outdoor synthetic scene with moving objects, and views that see both."""

import pytest
import torch

from mirage.geometry import Cameras
from mirage.synthetic import intrinsics, look_at, make_scene


@pytest.fixture(scope="module")
def scene():
    return make_scene(3, "outdoor", num_dynamic=2)


@pytest.fixture(scope="module")
def views(scene):
    """Three 24x32 cameras looking at a moving object (and the sky) at frames 0, 4, 8."""
    H, W = 24, 32
    frame_indices = torch.tensor([0, 4, 8])
    pos = scene.dynamic_positions(frame_indices)  # [D,T,3]
    eye = scene.start_camera(H, W).centers[0]
    c2w = torch.stack([look_at(eye, pos[0, t].float()) for t in range(len(frame_indices))])
    K = intrinsics(H, W, 70.0)[None].expand(len(frame_indices), 3, 3)
    cameras = Cameras(K, c2w, H, W)
    frames = torch.rand(len(frame_indices), 3, H, W, generator=torch.Generator().manual_seed(0))
    return frames, cameras, frame_indices
