"""RGBPointCache: pixel-resolution render with the same z-buffer, then one encode call."""

import pytest
import torch
from camera_factory import intrinsics, random_cameras

from mirage.geometry import Cameras
from mirage.memory import LatentSpatialMemory, RGBPointCache

H, W, s = 24, 40, 4


def test_render_from_insert_camera_returns_the_frame(gen):
    cams = random_cameras(gen, 2, H, W)
    frames = torch.rand(2, 3, H, W, generator=gen)
    depth = 1 + torch.rand(2, H, W, generator=gen)
    depth[0, 2:5, 3:9] = float("inf")  # sky: no points
    cache = RGBPointCache()
    assert cache.insert(frames, depth, cams) == 2 * H * W - 18
    assert cache.nbytes == cache.num_points * 15
    single = RGBPointCache()  # one view alone: no other view's points can occlude it
    single.insert(frames[1:], depth[1:], cams[1])
    images, mask, out_depth = single.render(cams[1])
    assert mask.all()
    torch.testing.assert_close(images[0], frames[1], atol=0.5 / 255 + 1e-6, rtol=0)
    torch.testing.assert_close(out_depth[0, 0], depth[1], rtol=1e-5, atol=0)


def test_read_encodes_all_views_in_one_call_and_pools_the_mask():
    K = intrinsics(H, W)
    cam = Cameras(K, torch.eye(4), H, W)
    depth = torch.full((1, H, W), 2.0)
    depth[0, :, : W // 2 + 1] = 0  # left half (+1 column) unobserved
    calls = []

    def encode(frames):
        calls.append(frames.shape)
        return torch.nn.functional.avg_pool2d(frames, s)

    cache = RGBPointCache(encode=encode)
    cache.insert(torch.rand(1, 3, H, W), depth, cam)
    out = cache.read(Cameras.cat([cam, cam, cam]))
    assert calls == [(3, 3, H, W)]
    # cells of the left half are empty; the cell straddling the edge is 3/4 covered -> visible
    expect = torch.zeros(W // s, dtype=torch.bool)
    expect[W // 2 // s :] = True
    assert torch.equal(out.mask[0, 0, 0], expect)
    depth, mask = cache.read_depth(cam, (H // s, W // s))  # no encode call
    assert len(calls) == 1 and torch.equal(mask[0, 0, 0], expect)
    torch.testing.assert_close(depth[0, 0][mask[0, 0]], torch.full((int(mask.sum()),), 2.0))
    with pytest.raises(ValueError, match="encode"):
        RGBPointCache().read(cam)


def test_rgb_and_latent_memory_agree_on_visibility(gen):
    # Same geometry, same z-buffer rule: a latent-grid read and a pixel render followed by
    # pooling see the same cells on a smooth surface from a nearby view.
    cams = random_cameras(gen, 1, H, W, spread=0.05)
    target = random_cameras(gen, 1, H, W, spread=0.05)
    depth = torch.full((1, H, W), 3.0)
    latent = LatentSpatialMemory(3, dtype=torch.float32)
    latent.insert(torch.rand(1, 3, H // s, W // s), depth, cams)
    rgb = RGBPointCache(encode=lambda f: torch.nn.functional.avg_pool2d(f, s))
    rgb.insert(torch.rand(1, 3, H, W), depth, cams)
    a, b = latent.read(target).mask, rgb.read(target).mask
    assert (a == b).float().mean() > 0.9
