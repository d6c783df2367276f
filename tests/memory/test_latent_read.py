"""The read's helpers against what they stand for: the scaled cameras, and a plain gather loop."""

import pytest
import torch
from camera_factory import random_cameras

from mirage.memory.latent import _gather_cells, _latent_grid_cameras


@pytest.mark.parametrize("s", [1, 8, 16])
def test_latent_grid_cameras_are_the_scaled_cameras_bit_for_bit(gen, s):
    cams = random_cameras(gen, 4, 6 * s, 10 * s)
    K, w2c = _latent_grid_cameras(cams, s, torch.device("cpu"))
    ref = cams.to("cpu").scaled(1 / s)
    assert torch.equal(K, ref.K) and torch.equal(w2c, ref.w2c)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gather_cells_matches_a_plain_loop(gen, dtype):
    features = torch.randn(50, 5, generator=gen).to(dtype)
    features[3] = -0.0  # signs of zero are kept: the bits of the stored latent
    index = torch.randint(-1, 50, (3, 4, 6), generator=gen)
    index[0] = -1  # a view that shows nothing
    index[1, 0, 0] = 3
    out = _gather_cells(features, index, index != -1)
    assert out.shape == (3, 5, 4, 6) and out.dtype == dtype and out.is_contiguous()
    bits = torch.int16 if dtype == torch.bfloat16 else torch.int32  # compared as bits
    for t in range(3):
        for i in range(4):
            for j in range(6):
                n = int(index[t, i, j])
                want = torch.zeros(5, dtype=dtype) if n < 0 else features[n]
                assert torch.equal(out[t, :, i, j].view(bits), want.view(bits))
