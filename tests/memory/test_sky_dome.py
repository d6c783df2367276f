"""The sky dome: pixels of infinite depth kept as far points that behave as directions."""

import math

import pytest
import torch
from camera_factory import intrinsics, pose, rotation

from mirage.geometry import Cameras
from mirage.memory import LatentSpatialMemory
from mirage.pipeline.conditioning import observation, sky_dome

C, h, w, s = 5, 4, 6, 8  # channels, latent grid, pixels per cell side


def _camera(R, t) -> Cameras:
    return Cameras(intrinsics(h * s, w * s)[None], pose(R, t)[None], h * s, w * s)


def test_sky_dome_moves_infinite_depth_only_and_clears_its_exclusion():
    depth = torch.tensor([[[0.0, 2.0, math.inf, math.inf]]])
    exclude = torch.tensor([[[True, True, True, False]]])
    d, ex = sky_dome(depth, exclude, 500.0)
    assert d.tolist() == [[[0.0, 2.0, 500.0, 500.0]]]  # 0 stays "no depth"
    assert ex.tolist() == [[[True, True, False, False]]]  # a dynamic object stays excluded
    assert sky_dome(depth, None, 500.0)[1] is None
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="sky_distance"):
            sky_dome(depth, exclude, bad)


def _sky_frame(gen, camera, distance):
    latents = torch.randn(1, C, h, w, generator=gen)
    depth = torch.full((1, h * s, w * s), math.inf)
    mem = LatentSpatialMemory(C, dtype=torch.float32)
    mem.observe(observation(mem, None, latents, depth, camera, None, True, distance))
    return mem, latents


def test_without_a_dome_the_sky_stores_nothing(gen):
    mem, _ = _sky_frame(gen, _camera(rotation(0.0), [0, 0, 0]), None)
    assert mem.num_points == 0


def test_dome_reads_as_points_at_infinity_from_a_moved_camera(gen):
    """A camera turned by 0.2 rad and moved by 0.6 units sees each stored sky cell where a
    point at infinity in that cell's direction projects, K R^T d: checked cell by cell against
    a plain loop (cells two sky points share, or that a point meets near an edge, are skipped)."""
    A = _camera(rotation(0.0), [0, 0, 0])
    B = _camera(rotation(0.2, 0.05), [0.5, -0.1, 0.3])
    mem, latents = _sky_frame(gen, A, 1.0e4)
    got = mem.read(B)
    KA, KB = A.scaled(1 / s).K[0], B.scaled(1 / s).K[0]
    RA, RB = A.c2w[0, :3, :3], B.c2w[0, :3, :3]
    lands: dict[tuple[int, int], list] = {}
    for i in range(h):
        for j in range(w):
            d = RA @ torch.linalg.solve(KA, torch.tensor([j + 0.5, i + 0.5, 1.0]))
            p = KB @ (RB.T @ d)
            u, v = float(p[0] / p[2]), float(p[1] / p[2])
            if p[2] > 0 and 0 <= u < w and 0 <= v < h:
                near_edge = min(u % 1, 1 - u % 1, v % 1, 1 - v % 1) < 0.01
                lands.setdefault((int(v), int(u)), []).append(((i, j), near_edge))
    checked = 0
    for i in range(h):
        for j in range(w):
            hits = lands.get((i, j), [])
            if not hits:
                assert not got.mask[0, 0, i, j], (i, j)
            elif len(hits) == 1 and not hits[0][1]:
                (si, sj), _ = hits[0]
                assert got.mask[0, 0, i, j]
                torch.testing.assert_close(got.latents[0, :, i, j], latents[0, :, si, sj])
                checked += 1
    assert checked >= 8


def test_every_surface_hides_the_dome(gen):
    A = _camera(rotation(0.0), [0, 0, 0])
    mem, _ = _sky_frame(gen, A, 1.0e4)
    wall = torch.randn(1, C, h, w, generator=gen)
    mem.observe(observation(mem, None, wall, torch.full((1, h * s, w * s), 3.0), A, None, True))
    got = mem.read(A)
    assert got.mask.all()
    torch.testing.assert_close(got.latents, wall)


def test_auto_takes_the_model_folders_distance():
    """GenerationConfig's "auto" sky distance is the model folder's ("generation" in
    mirage.json, given to the pipeline as `defaults`): the sky cells of an outdoor first frame
    are stored with it, dropped without it, and an explicit value wins."""
    from mirage.data.trajectories import make_trajectory
    from mirage.models.loading import tiny_components
    from mirage.models.transformer import MirageTransformer
    from mirage.models.vae import VideoVAE
    from mirage.perception import GroundTruthDepth
    from mirage.pipeline import GenerationConfig, MiragePipeline
    from mirage.synthetic import make_scene

    comp = tiny_components(0)
    scene = make_scene(5, "outdoor")
    cam = make_trajectory("pan_right", scene.start_camera(32, 32), 1)
    image = scene.render(cam).rgb[0]
    sky_cells = torch.isinf(scene.render(cam).depth).any()
    assert sky_cells

    def points(defaults, sky):
        model = MirageTransformer.from_base(comp.transformer)
        depth = GroundTruthDepth(scene)
        pipe = MiragePipeline(model, VideoVAE(comp.vae), comp.scheduler, depth, defaults=defaults)
        cfg = GenerationConfig(chunk_frames=9, sky_distance=sky, subcells=1)
        state = pipe.start_chunks(image, cam, config=cfg)
        return state.memory.num_points, state.config.sky_distance

    dropped, _ = points({}, "auto")
    kept, used = points({"sky_distance": 1000.0}, "auto")
    assert used == 1000.0 and kept > dropped
    assert points({"sky_distance": 1000.0}, None) == (dropped, None)
    assert points({}, 500.0)[1] == 500.0
