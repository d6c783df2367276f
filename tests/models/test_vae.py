"""VideoVAE: shapes for 4k+1 clips, normalisation against raw diffusers, refusals."""

import pytest
import torch
from diffusers import AutoencoderKLWan

from mirage.models.loading import tiny_vae_config, wan22_vae_config
from mirage.models.vae import VideoVAE


@pytest.fixture(scope="module")
def vae():
    # Non-trivial latent statistics, so a missing or inverted normalisation shows.
    g = torch.Generator().manual_seed(1)
    mean = (torch.randn(16, generator=g) * 0.5).tolist()
    std = (torch.rand(16, generator=g) + 0.5).tolist()
    torch.manual_seed(0)
    return VideoVAE(AutoencoderKLWan(**tiny_vae_config(latents_mean=mean, latents_std=std)).eval())


def test_properties(vae):
    assert (vae.z_dim, vae.spatial_factor, vae.temporal_factor) == (16, 8, 4)


@pytest.mark.parametrize("T, t", [(1, 1), (5, 2), (9, 3)])
def test_encode_decode_shapes(vae, gen, T, t):
    frames = torch.rand(T, 3, 32, 48, generator=gen)
    z = vae.encode_video(frames)
    assert z.shape == (t, 16, 4, 6) and z.dtype == torch.float32
    out = vae.decode(z)
    assert out.shape == (T, 3, 32, 48)
    assert out.min() >= 0 and out.max() <= 1


def test_normalisation_matches_raw_diffusers(vae, gen):
    frames = torch.rand(5, 3, 32, 32, generator=gen)
    raw = vae.vae.encode(frames.permute(1, 0, 2, 3)[None] * 2 - 1).latent_dist.mode()[0]
    mean = torch.tensor(vae.vae.config.latents_mean).view(-1, 1, 1, 1)
    std = torch.tensor(vae.vae.config.latents_std).view(-1, 1, 1, 1)
    expected = ((raw - mean) / std).permute(1, 0, 2, 3)
    torch.testing.assert_close(vae.encode_video(frames), expected, atol=1e-5, rtol=1e-5)
    z = torch.randn(2, 16, 4, 4, generator=gen)
    raw_dec = vae.vae.decode((z.permute(1, 0, 2, 3) * std + mean)[None]).sample[0]
    expected_frames = ((raw_dec + 1) / 2).clamp(0, 1).permute(1, 0, 2, 3)
    torch.testing.assert_close(vae.decode(z), expected_frames, atol=1e-5, rtol=1e-5)


def test_encode_images_is_each_frame_alone(vae, gen):
    frames = torch.rand(3, 3, 16, 32, generator=gen)
    z = vae.encode_images(frames, batch_size=2)
    assert z.shape == (3, 16, 2, 4)
    for i in range(3):
        torch.testing.assert_close(z[i], vae.encode_video(frames[i : i + 1])[0], atol=1e-5, rtol=0)
    # frames 1.. of a clip are not image latents: encoding in context differs
    clip = torch.rand(5, 3, 16, 32, generator=gen)
    assert not torch.allclose(vae.encode_video(clip)[1], vae.encode_images(clip)[4], atol=1e-3)
    assert vae.decode_images(z).shape == (3, 3, 16, 32)


def test_refusals(vae, gen):
    with pytest.raises(ValueError, match="`num_frames` must be 4k \\+ 1"):
        vae.encode_video(torch.rand(8, 3, 32, 32, generator=gen))
    with pytest.raises(ValueError, match="`height` must be a positive multiple of 16, got 40"):
        vae.encode_video(torch.rand(5, 3, 40, 32, generator=gen))
    with pytest.raises(ValueError, match="`width` must be a positive multiple of 16, got 24"):
        vae.encode_images(torch.rand(2, 3, 32, 24, generator=gen))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vae.encode_video(torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1)
    with pytest.raises(ValueError, match="latents"):
        vae.decode(torch.zeros(2, 8, 4, 4))
    assert vae.num_latent_frames(33) == 9


def test_wan22_vae_checks_at_16x():
    from accelerate import init_empty_weights

    with init_empty_weights():
        big = VideoVAE(AutoencoderKLWan(**wan22_vae_config()))
    assert (big.z_dim, big.spatial_factor, big.temporal_factor) == (48, 16, 4)
    big.check_video_shape(33, 480, 832)
    with pytest.raises(ValueError, match="`height` must be a positive multiple of 32, got 40"):
        big.check_video_shape(1, 40, 40)
    with pytest.raises(ValueError, match="got 8"):
        big.check_video_shape(8, 64, 64)


def test_tiny_wan22_style_vae_is_16x(gen):
    cfg = wan22_vae_config()
    cfg.update(base_dim=16, decoder_base_dim=16, num_res_blocks=1, z_dim=8)
    cfg.update(latents_mean=[0.0] * 8, latents_std=[1.0] * 8)
    torch.manual_seed(0)
    v = VideoVAE(AutoencoderKLWan(**cfg).eval())
    z = v.encode_video(torch.rand(5, 3, 32, 64, generator=gen))
    assert z.shape == (2, 8, 2, 4)
    assert v.decode(z).shape == (5, 3, 32, 64)


def test_keyframe_vae_encodes_a_clip_as_the_image_latents_of_frames_0_4_8(gen):
    """A VAE whose config says "keyframes": latent m of a clip is frame 4m encoded alone, by the
    raw diffusers encoder on that one frame; a causal VAE of the same weights differs."""
    from mirage.models.vae import VIDEO_LATENTS_KEY

    torch.manual_seed(0)
    raw = AutoencoderKLWan(**tiny_vae_config()).eval()
    causal = VideoVAE(raw)
    raw.register_to_config(**{VIDEO_LATENTS_KEY: "keyframes"})
    keyed = VideoVAE(raw)
    clip = torch.rand(9, 3, 32, 32, generator=gen)
    got = keyed.encode_video(clip)
    assert got.shape == (3, 16, 4, 4)
    for m in range(3):
        alone = raw.encode(clip[4 * m][None, :, None] * 2 - 1).latent_dist.mode()[0, :, 0]
        torch.testing.assert_close(got[m], alone, atol=1e-5, rtol=1e-5)  # statistics 0 / 1
    assert torch.allclose(causal.encode_video(clip)[0], got[0], atol=1e-5)  # frame 0: alone
    assert not torch.allclose(causal.encode_video(clip)[1:], got[1:], atol=1e-3)
    raw.register_to_config(**{VIDEO_LATENTS_KEY: "sideways"})
    with pytest.raises(ValueError, match="causal"):
        VideoVAE(raw)


def test_keyframe_vae_decodes_frames_4m_as_images_of_their_latents(gen):
    """A keyframe VAE's latent m is frame 4m's image latent, so `decode` gives frame 4m as the
    raw diffusers decoder makes that latent alone into one frame, and every frame between as
    the causal video decoder makes it; a causal VAE's decode is the video decoder's throughout."""
    from mirage.models.vae import VIDEO_LATENTS_KEY

    torch.manual_seed(0)
    raw = AutoencoderKLWan(**tiny_vae_config()).eval()
    z = torch.randn(3, 16, 4, 4, generator=gen)
    with torch.no_grad():
        video = ((raw.decode(z.permute(1, 0, 2, 3)[None]).sample[0] + 1) / 2).clamp(0, 1)
        alone = [((raw.decode(z[m][None, :, None]).sample[0, :, 0] + 1) / 2).clamp(0, 1)
                 for m in range(3)]  # fmt: skip
    video = video.permute(1, 0, 2, 3)  # [9,3,H,W]
    torch.testing.assert_close(VideoVAE(raw).decode(z), video, atol=1e-5, rtol=1e-5)
    raw.register_to_config(**{VIDEO_LATENTS_KEY: "keyframes"})
    got = VideoVAE(raw).decode(z)
    for m in range(3):
        torch.testing.assert_close(got[4 * m], alone[m], atol=1e-5, rtol=1e-5)
    between = [i for i in range(9) if i % 4]
    torch.testing.assert_close(got[between], video[between], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got[4], video[4], atol=1e-3)  # the video decoder's frame 4 differs
