"""Ground-truth providers against a direct render of the synthetic world; NoMasks; bad input."""

import pytest
import torch

from mirage.perception import (
    DepthProvider,
    GroundTruthDepth,
    GroundTruthMasks,
    MaskProvider,
    NoMasks,
)


def test_ground_truth_depth_is_the_render_depth(scene, views):
    frames, cameras, idx = views
    ref = scene.render(cameras, times=idx.double())
    provider = GroundTruthDepth(scene)
    assert isinstance(provider, DepthProvider) and provider.metric is True
    depth = provider(frames, cameras, idx)
    assert depth.shape == (3, 24, 32) and depth.dtype == torch.float32
    assert torch.isinf(ref.depth).any()  # the view sees sky: +inf must survive
    assert torch.equal(depth, ref.depth)


def test_ground_truth_depth_follows_time(scene, views):
    # The moving object is elsewhere at another time: the depth must change where it moves.
    frames, cameras, idx = views
    depth = GroundTruthDepth(scene)(frames, cameras, idx)
    later = GroundTruthDepth(scene)(frames, cameras, idx + 1)
    ref_later = scene.render(cameras, times=(idx + 1).double()).depth
    assert torch.equal(later, ref_later)
    assert not torch.equal(depth, later)


@pytest.mark.parametrize("dynamic,sky", [(True, True), (True, False), (False, True)])
def test_ground_truth_masks_cover_exactly_dynamic_and_sky(scene, views, dynamic, sky):
    frames, cameras, idx = views
    ref = scene.render(cameras, times=idx.double())
    assert ref.dynamic_mask.any() and ref.sky_mask.any()  # the fixture sees both
    # independent reference: a pixel is dynamic if its primitive is a mover, sky if no hit
    is_sky = ref.prim < 0
    is_dyn = torch.isfinite(ref.depth) & ref.dynamic_mask
    expected = (is_dyn & dynamic) | (is_sky & sky)
    provider = GroundTruthMasks(scene, dynamic=dynamic, sky=sky)
    assert isinstance(provider, MaskProvider)
    exclude = provider(frames, cameras, idx)
    assert exclude.dtype == torch.bool and exclude.shape == (3, 24, 32)
    assert torch.equal(exclude, expected)


def test_ground_truth_masks_off_and_no_masks(scene, views):
    frames, cameras, idx = views
    assert not GroundTruthMasks(scene, dynamic=False, sky=False)(frames, cameras, idx).any()
    none = NoMasks()(frames, cameras, idx)
    assert none.shape == (3, 24, 32) and none.dtype == torch.bool and not none.any()


def test_bad_input_is_refused(scene, views):
    frames, cameras, idx = views
    with pytest.raises(ValueError, match="scene"):
        GroundTruthDepth(None)
    with pytest.raises(ValueError, match="cameras"):
        GroundTruthDepth(scene)(frames[:2], cameras, idx[:2])
    with pytest.raises(ValueError, match="frame_indices"):
        GroundTruthMasks(scene)(frames, cameras, idx.float())
    with pytest.raises(ValueError, match="frames"):
        NoMasks()(frames[:, :2], cameras, idx)
    with pytest.raises(ValueError, match="24x20"):
        NoMasks()(frames[..., :20], cameras, idx)


def test_an_edited_scene_is_rendered_again(views):
    from mirage.synthetic import make_scene

    frames, cameras, idx = views
    scene = make_scene(3, "outdoor", num_dynamic=2)
    before = GroundTruthDepth(scene)(frames, cameras, idx)
    scene.dynamic = []  # the moving object the views look at is gone
    after = GroundTruthDepth(scene)(frames, cameras, idx)
    assert torch.equal(after, scene.render(cameras, times=idx.double()).depth)
    assert not torch.equal(before, after)
