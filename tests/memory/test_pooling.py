"""Median depth pooling to the latent grid against its loop twin and hand cases."""

import pytest
import torch

from mirage.memory.pooling import _pool_depth, pool_depth


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("s", [1, 2, 3, 4])
def test_pool_depth_matches_loop_twin(seed, s):
    gen = torch.Generator().manual_seed(seed)
    T, h, w = 2, 3, 4
    depth = torch.randint(1, 6, (T, h * s, w * s), generator=gen).float()  # ties on purpose
    holes = torch.rand(depth.shape, generator=gen)
    depth[holes < 0.25] = 0.0
    depth[holes > 0.85] = float("inf")
    exclude = torch.rand(depth.shape, generator=gen) < 0.03
    for ex in (None, exclude):
        got, valid = pool_depth(depth, s, ex)
        ref, ref_valid = _pool_depth(depth, s, ex)
        assert torch.equal(valid, ref_valid)
        assert torch.equal(got, ref)


def test_even_count_takes_lower_middle_and_half_rule():
    depth = torch.tensor([[[1.0, 4.0], [3.0, 2.0]]])  # 4 valid: sorted 1 2 3 4 -> 2
    assert pool_depth(depth, 2)[0].item() == 2.0
    half = torch.tensor([[[5.0, 0.0], [float("inf"), 7.0]]])  # exactly half valid -> valid, 5
    got, valid = pool_depth(half, 2)
    assert valid.item() and got.item() == 5.0
    less = torch.tensor([[[5.0, 0.0], [float("inf"), 0.0]]])  # one of four -> invalid
    assert not pool_depth(less, 2)[1].item()
    one_excluded = torch.tensor([[[True, False], [False, False]]])
    assert not pool_depth(depth, 2, one_excluded)[1].item()
