"""Footprint fusion bounds the cache by the scene: a long walk in one room stops growing."""

import pytest
import torch

from mirage.data.trajectories import make_trajectory
from mirage.memory import LatentSpatialMemory
from mirage.synthetic import make_scene

N, H, W, S = 1000, 64, 64, 8


@pytest.fixture(scope="module")
def walk():
    """1,000 frames of a seeded random walk inside one synthetic room, ground-truth depth."""
    scene = make_scene(900005, kind="indoor", num_dynamic=0)
    start = scene.start_camera(H, W)
    c = start.centers[0]
    cams = make_trajectory(
        "random_walk", start, N, bounds=(c - 0.1, c + 0.1), max_turn_deg=180.0, keyframe_every=3
    )
    return cams, scene.render(cams).depth


def _sizes(walk, voxel_size):
    cams, depth = walk
    mem = LatentSpatialMemory(16, voxel_size=voxel_size)
    gen = torch.Generator().manual_seed(0)
    sizes = []
    for a in range(0, N, 8):  # chunks of 8 latent-aligned frames, as the loop inserts them
        b = min(a + 8, N)
        mem.insert(torch.randn(b - a, 16, H // S, W // S, generator=gen), depth[a:b], cams[a:b])
        sizes.append(mem.num_points)
    return sizes


def _late_growth(sizes):
    return sizes[-1] / sizes[len(sizes) // 2] - 1


@pytest.mark.slow
def test_footprint_cache_saturates_in_one_room(walk):
    # The reference: the explored surface itself (0.5 m voxels, ground-truth depth) has
    # stopped growing over the last half of the walk.
    assert _late_growth(_sizes(walk, 0.5)) < 0.01
    footprint = _sizes(walk, "footprint")
    assert _late_growth(footprint) <= 0.05
    # a fixed 5 cm voxel (finer than a 64x64 frame's ~25 cm cells) keeps growing, append more so
    assert _late_growth(_sizes(walk, 0.05)) > 0.3
    assert footprint[-1] < 0.02 * N * (H // S) * (W // S)  # < 2 % of the cells inserted
