"""The autoencoder trainer's VAE layouts and its supersampled data pool."""

import pytest
import torch

from mirage.training.autoencoder import AutoencoderConfig, _clip_frames, make_tiny_vae


@pytest.mark.parametrize(("factor", "grid"), [(8, 4), (4, 8)])
def test_spatial_factor_sets_the_latent_grid_and_keeps_causal_4x_time(factor, grid):
    cfg = AutoencoderConfig(out="x", height=32, width=32, spatial_factor=factor, base_dim=8)
    vae = make_tiny_vae(cfg).eval()
    assert vae.config.scale_factor_spatial == factor
    with torch.no_grad():
        z = vae.encode(torch.zeros(1, 3, 9, 32, 32)).latent_dist.mode()
        assert z.shape == (1, 16, 3, grid, grid)  # 9 frames -> 1 + 2 latent frames
        assert vae.decode(z).sample.shape == (1, 3, 9, 32, 32)


@pytest.mark.parametrize(("kw", "match"), [({"spatial_factor": 16}, "spatial_factor"),
                                           ({"supersample": 0}, "supersample")])  # fmt: skip
def test_config_rejects_bad_layout(kw, match):
    with pytest.raises(ValueError, match=match):
        AutoencoderConfig(out="x", **kw)


def test_pool_frames_are_the_dataset_clip_rendered_supersampled():
    from mirage.data import SyntheticClipDataset
    from mirage.geometry import Cameras
    from mirage.synthetic import make_scene

    ds = SyntheticClipDataset(4, 5, 16, 16, seed=3, kind="mixed", num_dynamic=1)
    item = ds[2]
    assert torch.equal(_clip_frames(ds, 2, 1), item["frames"])
    scene = make_scene(item["scene_seed"], item["kind"], 1)
    ref = scene.render(Cameras(item["K"], item["c2w"], 16, 16), supersample=2).rgb
    assert torch.equal(_clip_frames(ds, 2, 2), ref)
    assert not torch.equal(ref, item["frames"])
