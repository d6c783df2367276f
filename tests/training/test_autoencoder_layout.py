"""The autoencoder trainer's VAE layouts and its supersampled data pool."""

import pytest
import torch

from mirage.training.autoencoder import AutoencoderConfig, make_tiny_vae


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


def test_supersampled_clips_change_the_picture_only():
    """The dataset's `supersample` renders the same scene and cameras with s x s rays per
    pixel: RGB is the ray-caster's supersampled render, depth and masks stay exact."""
    from mirage.data import SyntheticClipDataset
    from mirage.geometry import Cameras
    from mirage.synthetic import make_scene

    plain = SyntheticClipDataset(4, 5, 16, 16, seed=3, kind="mixed", num_dynamic=1)[2]
    fine = SyntheticClipDataset(4, 5, 16, 16, seed=3, kind="mixed", num_dynamic=1,
                                supersample=2)[2]  # fmt: skip
    scene = make_scene(plain["scene_seed"], plain["kind"], 1)
    ref = scene.render(Cameras(plain["K"], plain["c2w"], 16, 16), supersample=2).rgb
    assert torch.equal(fine["frames"], ref) and not torch.equal(ref, plain["frames"])
    for key in ("depth", "dynamic_mask", "sky_mask", "c2w"):
        assert torch.equal(fine[key], plain[key])
    with pytest.raises(ValueError, match="supersample"):
        SyntheticClipDataset(4, 5, 16, 16, supersample=0)


def test_frozen_encoder_keeps_the_latents_while_the_decoder_learns(tmp_path):
    """`freeze_encoder` from an `init` folder: encoder weights bit-equal after training,
    decoder weights moved (so shards encoded before stay valid)."""
    from mirage.training.autoencoder import train_autoencoder

    base = AutoencoderConfig(out=str(tmp_path / "a"), height=16, width=16, base_dim=4,
                             spatial_factor=4, pool_size=2, render_frames=5, clips_per_step=1,
                             singles_per_step=1, max_steps=2, eval_every=100, stats_clips=1,
                             eval_clips=1, checkpoint_every=10, progress=False)  # fmt: skip
    first = train_autoencoder(base)
    from dataclasses import replace

    from diffusers import AutoencoderKLWan

    tuned = train_autoencoder(replace(base, out=str(tmp_path / "b"), init=str(first),
                                      freeze_encoder=True, lr=1e-2))  # fmt: skip
    a, b = (AutoencoderKLWan.from_pretrained(p).state_dict() for p in (first, tuned))
    enc = [k for k in a if k.startswith(("encoder.", "quant_conv."))]
    dec = [k for k in a if k.startswith(("decoder.", "post_quant_conv."))]
    assert enc and dec
    assert all(torch.equal(a[k], b[k]) for k in enc)
    assert any(not torch.equal(a[k], b[k]) for k in dec)


def test_keyframe_training_encodes_frames_0_4_8_alone_and_exports_the_mode(tmp_path):
    """`video_latents="keyframes"`: the posterior the decoder trains on is that of frames
    0, 4, 8 each encoded alone (checked frame by frame), and the exported config says so, so
    every VideoVAE of the folder encodes clips that way."""
    from dataclasses import replace

    from diffusers import AutoencoderKLWan

    from mirage.models.vae import VIDEO_LATENTS_KEY, VideoVAE
    from mirage.training.autoencoder import _encode_clips, make_tiny_vae, train_autoencoder

    cfg = AutoencoderConfig(out=str(tmp_path / "k"), height=16, width=16, base_dim=4,
                            spatial_factor=4, pool_size=2, render_frames=9, clip_frames=9,
                            clips_per_step=1, singles_per_step=1, max_steps=1, eval_every=100,
                            stats_clips=1, eval_clips=1, checkpoint_every=10, progress=False,
                            video_latents="keyframes")  # fmt: skip
    vae = make_tiny_vae(cfg).eval()
    x = torch.rand(2, 3, 9, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    post = _encode_clips(vae, x, "keyframes")
    assert post.mean.shape == (2, 16, 3, 4, 4)
    for b in range(2):
        for m in range(3):
            alone = vae.encode(x[b : b + 1, :, 4 * m : 4 * m + 1]).latent_dist
            torch.testing.assert_close(post.mean[b, :, m], alone.mean[0, :, 0])
            torch.testing.assert_close(post.logvar[b, :, m], alone.logvar[0, :, 0])
    folder = train_autoencoder(cfg)
    assert AutoencoderKLWan.from_pretrained(folder).config[VIDEO_LATENTS_KEY] == "keyframes"
    assert VideoVAE(AutoencoderKLWan.from_pretrained(folder)).video_latents == "keyframes"
    causal = train_autoencoder(replace(cfg, out=str(tmp_path / "c"), video_latents="causal"))
    assert VIDEO_LATENTS_KEY not in AutoencoderKLWan.from_pretrained(causal).config
    with pytest.raises(ValueError, match="video_latents"):
        replace(cfg, video_latents="sideways")
    with pytest.raises(ValueError, match="tie_weight=0"):  # nothing to tie: refused
        replace(cfg, tie_weight=0.02)
