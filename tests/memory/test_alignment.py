"""Depth-scale alignment recovers known scales from true depth despite masks and outliers."""

import warnings

import pytest
import torch

from mirage.memory import align_depth_scale
from mirage.memory.alignment import _masked_median, _masked_median_loop
from mirage.memory.pooling import _pool_depth
from mirage.perception import GroundTruthDepth

S = 4  # pixels per reference cell


@pytest.fixture(scope="module")
def true_depth(scene):
    """Ground-truth depth of 3 outdoor 48x64 views (with sky = +inf) and its 12x16 pooling."""
    from mirage.geometry import Cameras
    from mirage.synthetic import intrinsics, look_at

    H, W = 48, 64
    eye = scene.start_camera(H, W).centers[0]
    targets = [
        eye + torch.tensor(d) for d in ([5.0, -1.0, 3.0], [-4.0, -1.5, 2.0], [1.0, -1.2, -6.0])
    ]
    c2w = torch.stack([look_at(eye, t) for t in targets])
    cameras = Cameras(intrinsics(H, W, 70.0)[None].expand(3, 3, 3), c2w, H, W)
    idx = torch.arange(3)
    depth = GroundTruthDepth(scene)(torch.zeros(3, 3, H, W), cameras, idx)
    ref, valid = _pool_depth(depth, S)  # plain-loop pooling: the independent reference
    assert torch.isinf(depth).any() and valid.float().mean() > 0.5
    return depth, ref[:, None], valid[:, None]


def test_recovers_a_known_scale(true_depth):
    depth, ref, mask = true_depth
    aligned, scale = align_depth_scale(depth * 0.37, ref, mask)
    assert scale.shape == (3,)
    torch.testing.assert_close(scale, torch.full((3,), 1 / 0.37), rtol=1e-4, atol=0)
    fin = torch.isfinite(depth)
    torch.testing.assert_close(aligned[fin], depth[fin], rtol=1e-4, atol=0)
    assert torch.isinf(aligned[~fin]).all()  # sky stays sky


def test_recovers_a_scale_per_frame(true_depth):
    depth, ref, mask = true_depth
    factors = torch.tensor([0.37, 2.5, 11.0])
    _, scale = align_depth_scale(depth * factors[:, None, None], ref, mask)
    torch.testing.assert_close(scale, 1 / factors, rtol=1e-4, atol=0)


def test_masked_cells_and_outliers_do_not_move_the_scale(true_depth, gen):
    depth, ref, mask = true_depth
    hidden = torch.rand(mask.shape, generator=gen) < 0.3
    mask = mask & ~hidden
    ref = torch.where(hidden, ref * 50.0, ref)  # garbage under the mask must be ignored
    outlier = (torch.rand(mask.shape, generator=gen) < 0.1) & mask
    assert outlier.sum() > 10
    ref = torch.where(outlier, ref * (0.05 + 20 * torch.rand(ref.shape, generator=gen)), ref)
    _, scale = align_depth_scale(depth * 0.37, ref, mask)
    torch.testing.assert_close(scale, torch.full((3,), 1 / 0.37), rtol=1e-4, atol=0)
    # a plain mean of ratios would be pulled far off by the same outliers
    ok = mask[:, 0] & (ref[:, 0] > 0)
    pooled, _ = _pool_depth(depth * 0.37, S)
    mean_ratio = (ref[:, 0][ok] / pooled[ok]).mean()
    assert abs(mean_ratio * 0.37 - 1) > 0.05


def test_thin_frame_keeps_its_own_scale_with_a_warning(true_depth):
    # The old rule gave a thin frame the median over all frames: x6 wrong here.
    depth, ref, mask = true_depth
    mask = mask.clone()
    mask[1] = False  # frame 1 has no reference at all
    mask[2, 0, :, 3:] = False  # frame 2 keeps 3 columns of cells
    kept = int(mask[2].sum())
    assert 16 <= kept
    factors = torch.tensor([0.5, 3.0, 0.5])
    with pytest.warns(UserWarning, match=r"frames \[1\]"):
        _, scale = align_depth_scale(depth * factors[:, None, None], ref, mask)
    torch.testing.assert_close(scale, torch.tensor([2.0, 1.0, 2.0]), rtol=1e-4, atol=0)
    with pytest.warns(UserWarning, match=r"frames \[1, 2\]"):
        _, scale = align_depth_scale(depth * factors[:, None, None], ref, mask, min_cells=kept + 1)
    torch.testing.assert_close(scale, torch.tensor([2.0, 1.0, 1.0]), rtol=1e-4, atol=0)


def test_excluded_cells_do_not_move_the_scale(true_depth):
    # A moving object that the memory rendered at another depth: excluded, it must not count.
    depth, ref, mask = true_depth
    wrong = torch.zeros_like(mask)
    wrong[:, :, :, : ref.shape[-1] * 2 // 3] = True  # two thirds of the cells are wrong
    ref = torch.where(wrong, ref * 3.0, ref)
    exclude = wrong[:, 0].repeat_interleave(S, 1).repeat_interleave(S, 2)
    _, scale = align_depth_scale(depth * 0.37, ref, mask)
    assert (scale * 0.37 - 1).abs().min() > 0.5  # without the mask the majority wins
    _, scale = align_depth_scale(depth * 0.37, ref, mask, exclude=exclude)
    torch.testing.assert_close(scale, torch.full((3,), 1 / 0.37), rtol=1e-4, atol=0)


def test_no_valid_cell_anywhere_warns_and_keeps_scale_one(true_depth):
    depth, ref, mask = true_depth
    with pytest.warns(UserWarning, match="fewer than"):
        aligned, scale = align_depth_scale(depth * 0.37, ref, torch.zeros_like(mask))
    assert torch.equal(scale, torch.ones(3))
    assert torch.equal(aligned, depth * 0.37)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        align_depth_scale(depth * 0.37, ref, mask)  # no warning when cells exist


def test_masked_median_matches_loop_twin(gen):
    values = torch.randint(0, 5, (40, 7), generator=gen).float()  # many ties
    valid = torch.rand(40, 7, generator=gen) < 0.6
    valid[0] = False  # an empty row
    valid[1] = True
    got, want = _masked_median(values, valid), _masked_median_loop(values, valid)
    assert torch.isnan(got[0]) and torch.isnan(want[0])
    torch.testing.assert_close(got[1:], want[1:])


def test_bad_input_is_refused(true_depth):
    depth, ref, mask = true_depth
    with pytest.raises(ValueError, match="reference grid"):
        align_depth_scale(depth[..., :60], ref, mask)
    with pytest.raises(ValueError, match="reference_mask"):
        align_depth_scale(depth, ref, mask.float())
    with pytest.raises(ValueError, match="reference"):
        align_depth_scale(depth, ref[:2], mask[:2])
    with pytest.raises(ValueError, match="estimated"):
        align_depth_scale(depth * torch.nan, ref, mask)
    with pytest.raises(ValueError, match="min_cells"):
        align_depth_scale(depth, ref, mask, min_cells=0)
