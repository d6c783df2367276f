"""Supersampled RGB against an independent reference: the box average of a finer render.

By the continuous pixel convention, pixel (si + a, sj + b) of an image s times larger, with
K' = diag(s, s, 1) K, is centred at (s j + b + 0.5, s i + a + 0.5), i.e. at the point
(j + (b + 0.5) / s, i + (a + 0.5) / s) of the original image: the centre of sub-pixel (a, b).
So supersample=s must equal the s x s average pool of that render, while depth and masks
stay those of the one centre ray (supersample=1).
"""

import pytest
import torch
import torch.nn.functional as F

from mirage.data import make_trajectory
from mirage.geometry import Cameras
from mirage.synthetic import make_scene


def _clip(seed: int, kind: str, H=24, W=32, T=3):
    scene = make_scene(seed, kind, num_dynamic=2)
    start = scene.start_camera(H, W, fov_deg=75.0)
    cams = make_trajectory("random_walk", start, T, seed=seed, bounds=scene.bounds, step=0.6)
    return scene, cams


def _finer(cams: Cameras, s: int) -> Cameras:
    K = torch.diag(torch.tensor([float(s), float(s), 1.0])) @ cams.K
    return Cameras(K, cams.c2w, cams.height * s, cams.width * s)


def _assert_nearly_equal(a: torch.Tensor, b: torch.Tensor):
    # Rays are computed by two different float expressions: a sub-pixel ray grazing an edge
    # may land on the other side in one of them. Allow a handful of such pixels only.
    diff = (a - b).abs().amax(1)  # [T,H,W]
    assert (diff > 1e-5).float().mean() < 2e-3
    assert diff.mean() < 1e-4


@pytest.mark.parametrize(("kind", "s"), [("indoor", 2), ("outdoor", 2), ("indoor", 3)])
def test_supersampled_rgb_is_the_box_average_of_a_finer_render(kind, s):
    scene, cams = _clip(4, kind)
    times = torch.tensor([0.0, 7.0, 15.0])
    out = scene.render(cams, times, supersample=s)
    ref = F.avg_pool2d(scene.render(_finer(cams, s), times).rgb, s)
    _assert_nearly_equal(out.rgb, ref)
    plain = scene.render(cams, times)
    for name in ("depth", "dynamic_mask", "sky_mask", "prim"):
        assert torch.equal(getattr(out, name), getattr(plain, name)), name
    assert (out.rgb - plain.rgb).abs().mean() > 1e-3  # it does change the picture (edges)


def test_supersample_one_is_the_plain_render_bit_for_bit():
    scene, cams = _clip(2, "outdoor")
    a, b = scene.render(cams), scene.render(cams, supersample=1)
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.depth, b.depth)


def test_culling_holds_for_sub_pixel_rays(monkeypatch):
    # Sub-pixel rays sit within half a pixel of the centre, inside the culling margin.
    from mirage.synthetic import raycast

    scene, cams = _clip(1, "indoor")
    fast = scene.render(cams, supersample=2)
    monkeypatch.setattr(raycast, "_rects", lambda aabbs, K, w2c, H, W: [[0, H, 0, W]] * len(aabbs))
    slow = scene.render(cams, supersample=2)
    assert torch.equal(fast.rgb, slow.rgb)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_supersample_is_rejected(bad):
    scene, cams = _clip(0, "indoor", T=1)
    with pytest.raises(ValueError, match="supersample"):
        scene.render(cams, supersample=bad)
