"""3D convolutions as sums of 2D ones: equal to F.conv3d, used by the VAE, reversible."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from mirage.models.cpu_conv import conv3d_as_conv2d, split_conv3d

CASES = [
    # kernel, stride, padding, dilation, groups
    ((3, 3, 3), (1, 1, 1), (0, 0, 0), (1, 1, 1), 1),
    ((3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), 2),
    ((3, 1, 1), (2, 1, 1), (0, 0, 0), (1, 1, 1), 1),  # the encoder's strided time conv
    ((3, 1, 1), (1, 1, 1), (1, 0, 0), (1, 1, 1), 1),  # the decoder's time upsampling conv
    ((1, 2, 2), (1, 2, 2), (0, 0, 0), (1, 1, 1), 1),  # the transformer's patch embedding
    ((2, 3, 2), (2, 2, 1), (2, 0, 1), (2, 1, 2), 1),
    ((1, 1, 1), (1, 1, 1), (0, 0, 0), (1, 1, 1), 4),
]


@pytest.mark.parametrize("kernel,stride,padding,dilation,groups", CASES)
def test_matches_conv3d(kernel, stride, padding, dilation, groups):
    g = torch.Generator().manual_seed(0)
    for frames, bias in itertools.product((kernel[0] * dilation[0], 7), (True, False)):
        x = torch.randn(2, 8, frames, 9, 10, generator=g)
        w = torch.randn(12, 8 // groups, *kernel, generator=g)
        b = torch.randn(12, generator=g) if bias else None
        want = F.conv3d(x, w, b, stride, padding, dilation, groups)
        got = conv3d_as_conv2d(x, w, b, stride, padding, dilation, groups)
        assert got.shape == want.shape and got.is_contiguous()
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)  # sums in another order


def test_taps_that_read_only_zeros():
    """A causally padded first frame (two zero frames in front) and an all-zero input."""
    g = torch.Generator().manual_seed(3)
    w, b = torch.randn(5, 4, 3, 3, 3, generator=g), torch.randn(5, generator=g)
    image = torch.cat([torch.zeros(2, 4, 2, 6, 6), torch.randn(2, 4, 1, 6, 6, generator=g)], 2)
    for x in (image, torch.zeros(2, 4, 3, 6, 6)):
        want = F.conv3d(x, w, b, 1, (0, 1, 1))
        got = conv3d_as_conv2d(x, w, b, (1, 1, 1), (0, 1, 1))
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_gradients_match_conv3d():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 5, 6, 6, generator=g)
    w = torch.randn(6, 4, 3, 3, 3, generator=g)
    grads = []
    for conv in (F.conv3d, conv3d_as_conv2d):
        xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
        conv(xi, wi, None, (1, 1, 1), (1, 1, 1), (1, 1, 1), 1).square().sum().backward()
        grads.append((xi.grad, wi.grad))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)


def test_too_few_frames_is_an_error():
    with pytest.raises(ValueError, match="shorter than the time kernel"):
        conv3d_as_conv2d(torch.zeros(1, 2, 2, 4, 4), torch.zeros(3, 2, 3, 1, 1))


def test_vae_uses_it_on_cpu_and_matches_conv3d(monkeypatch):
    from diffusers import AutoencoderKLWan

    from mirage.models.loading import tiny_vae_config
    from mirage.models.vae import VideoVAE

    torch.manual_seed(0)
    raw = AutoencoderKLWan(**tiny_vae_config()).eval()
    keys = set(raw.state_dict())
    vae = VideoVAE(raw)  # switches the convolutions
    assert split_conv3d(raw) == 0  # already done: nothing changes
    assert set(raw.state_dict()) == keys
    frames = torch.rand(9, 3, 32, 32, generator=torch.Generator().manual_seed(2))

    def refuse(*args, **kwargs):
        raise AssertionError("F.conv3d ran although the VAE's convolutions are split")

    with torch.no_grad(), monkeypatch.context() as m:
        m.setattr(torch.nn.functional, "conv3d", refuse)
        latents = vae.encode_video(frames)
        video = vae.decode(latents)
    changed = split_conv3d(raw, enabled=False)
    n_conv3d = sum(isinstance(x, torch.nn.Conv3d) for x in raw.modules())
    assert changed == n_conv3d > 10
    with torch.no_grad():
        torch.testing.assert_close(vae.encode_video(frames), latents, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(vae.decode(latents), video, atol=1e-4, rtol=1e-4)
