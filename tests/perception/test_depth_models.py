"""DepthAnything V2 and DepthPro providers on tiny random models saved to folders (no download)."""

import shutil

import pytest
import torch
import torch.nn.functional as F

from mirage.geometry import Cameras
from mirage.perception import (
    DepthAnythingV2Depth,
    DepthProDepth,
    DepthProvider,
    load_depth_provider,
)
from mirage.synthetic import intrinsics, make_scene


@pytest.fixture(scope="module")
def rendered():
    """Two rendered 30x40 indoor frames (smooth images, as a decoder would give)."""
    scene = make_scene(1, "indoor")
    cam = scene.start_camera(30, 40)
    cams = Cameras(cam.K.expand(2, 3, 3), cam.c2w.expand(2, 4, 4), 30, 40)
    return scene.render(cams).rgb, cams, torch.tensor([0, 4])


def test_depth_anything_preprocessing_matches_the_image_processor(tiny_depth_anything, rendered):
    from transformers import AutoImageProcessor

    frames, _, _ = rendered
    u8 = (frames * 255).round().to(torch.uint8)
    ref = AutoImageProcessor.from_pretrained(tiny_depth_anything, local_files_only=True)(
        images=list(u8), return_tensors="pt"
    ).pixel_values
    mine = DepthAnythingV2Depth(tiny_depth_anything).pixel_values(u8.float() / 255)
    assert mine.shape == ref.shape == (2, 3, 28, 42)  # aspect kept, multiple of 14
    # PIL resizes in uint8: differences stay within about one grey level / std
    torch.testing.assert_close(mine, ref, atol=0.03, rtol=0)


def test_depth_anything_relative_is_inverse_disparity(tiny_depth_anything, rendered):
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    frames, cams, idx = rendered
    provider = DepthAnythingV2Depth(tiny_depth_anything, batch_size=1)
    assert isinstance(provider, DepthProvider) and provider.metric is False
    depth = provider(frames, cams, idx)
    assert depth.shape == (2, 30, 40) and depth.dtype == torch.float32
    assert torch.isfinite(depth).all() and (depth > 0).all()
    assert depth.std() > 0.01 * depth.mean()  # not a constant
    # reference: the transformers path (image processor -> model), disparity -> 1/disparity
    processor = AutoImageProcessor.from_pretrained(tiny_depth_anything, local_files_only=True)
    model = AutoModelForDepthEstimation.from_pretrained(tiny_depth_anything, local_files_only=True)
    u8 = (frames * 255).round().to(torch.uint8)
    with torch.no_grad():
        disp = model(**processor(images=list(u8), return_tensors="pt")).predicted_depth
    disp = F.interpolate(disp[:, None], (30, 40), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(depth, 1.0 / disp, rtol=0.02, atol=0)


def test_depth_anything_metric_checkpoint_is_metric(tiny_depth_anything_metric, rendered):
    frames, cams, idx = rendered
    provider = load_depth_provider(str(tiny_depth_anything_metric))
    assert isinstance(provider, DepthAnythingV2Depth) and provider.metric is True
    depth = provider(frames, cams, idx)
    # the metric head is sigmoid x max_depth (20): metres in (0, 20)
    assert depth.shape == (2, 30, 40) and (depth > 0).all() and (depth < 20).all()


def test_depth_anything_batches_agree(tiny_depth_anything, rendered):
    frames, cams, idx = rendered
    one = DepthAnythingV2Depth(tiny_depth_anything, batch_size=1)(frames, cams, idx)
    two = DepthAnythingV2Depth(tiny_depth_anything, batch_size=2)(frames, cams, idx)
    torch.testing.assert_close(one, two, rtol=1e-5, atol=0)


def test_depth_pro_matches_the_transformers_post_processing(tiny_depth_pro, rendered):
    frames, cams, idx = rendered
    provider = load_depth_provider(tiny_depth_pro)
    assert isinstance(provider, DepthProDepth) and provider.metric is True
    depth = provider(frames, cams, idx)
    assert depth.shape == (2, 30, 40) and torch.isfinite(depth).all() and (depth > 0).all()
    # reference, image by image as DepthProImageProcessor.post_process_depth_estimation does
    # it with the focal length f = fx: canonical inverse depth * W / f, resize, 1 / clamp
    with torch.no_grad():
        inv = provider.model(pixel_values=provider.pixel_values(frames)).predicted_depth
    for t in range(2):
        fx = cams.K[t, 0, 0]
        d = F.interpolate((inv[t] * 40 / fx)[None, None], (30, 40), mode="bilinear")[0, 0]
        torch.testing.assert_close(depth[t], 1.0 / d.clamp(1e-4, 1e4), rtol=1e-5, atol=0)


def test_depth_pro_depth_scales_with_focal_length(tiny_depth_pro, rendered):
    frames, cams, idx = rendered
    provider = DepthProDepth(tiny_depth_pro, batch_size=2)
    wide = provider(frames, cams, idx)
    K2 = cams.K.clone()
    K2[:, 0, 0] *= 2.0  # same image, twice the focal length: everything twice as far
    tele = provider(frames, Cameras(K2, cams.c2w, 30, 40), idx)
    torch.testing.assert_close(tele, 2.0 * wide, rtol=1e-5, atol=0)


def test_depth_pro_fov_head_gives_the_focal_length(tiny_depth_pro, rendered):
    frames, cams, idx = rendered
    provider = DepthProDepth(tiny_depth_pro, batch_size=2, use_camera_focal=False)
    with torch.no_grad():
        fov = provider.model(pixel_values=provider.pixel_values(frames)).field_of_view
    # the same depth as with cameras whose horizontal field of view is the estimated one
    K = torch.stack([intrinsics(30, 40, float(f)) for f in fov])
    expected = DepthProDepth(tiny_depth_pro, batch_size=2)(
        frames, Cameras(K, cams.c2w, 30, 40), idx
    )
    torch.testing.assert_close(provider(frames, cams, idx), expected, rtol=1e-4, atol=0)


@pytest.mark.parametrize("missing", ["model.safetensors", "preprocessor_config.json"])
def test_loader_lists_missing_files(tiny_depth_anything, tmp_path, missing):
    folder = tmp_path / "da"
    shutil.copytree(tiny_depth_anything, folder)
    (folder / missing).unlink()
    for load in (lambda: load_depth_provider(str(folder)), lambda: DepthAnythingV2Depth(folder)):
        with pytest.raises(FileNotFoundError) as err:
            load()
        assert str(folder) in str(err.value) and missing in str(err.value)


def test_loader_names_missing_shards(tiny_depth_pro, tmp_path):
    folder = tmp_path / "dp"
    shutil.copytree(tiny_depth_pro, folder)
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(
        '{"weight_map": {"a": "model-00001-of-00002.safetensors"}}'
    )
    with pytest.raises(FileNotFoundError, match="model-00001-of-00002.safetensors"):
        DepthProDepth(folder)


def test_loader_refuses_missing_folders_and_unknown_models(tiny_sam3, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*config.json"):
        load_depth_provider(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="hf download depth-anything/Foo"):
        load_depth_provider("depth-anything/Foo")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load_depth_provider(empty)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert name in str(err.value)
    with pytest.raises(ValueError, match="model_type 'sam3'"):
        load_depth_provider(tiny_sam3)


def test_gt_spec_needs_a_scene(scene):
    with pytest.raises(ValueError, match="scene"):
        load_depth_provider("gt")
    assert load_depth_provider("gt", scene=scene).metric is True
    with pytest.raises(ValueError, match="spec"):
        load_depth_provider(3)


@pytest.mark.parametrize(
    ("fixture", "cls"),
    [("tiny_depth_anything", DepthAnythingV2Depth), ("tiny_depth_pro", DepthProDepth)],
)
def test_checkpoint_with_missing_weights_is_refused(fixture, cls, request, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "model"
    shutil.copytree(request.getfixturevalue(fixture), folder)
    weights = load_file(folder / "model.safetensors")
    dropped = max(k for k in weights if k.startswith("head.") and k.endswith(".weight"))
    del weights[dropped]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=f"1 weights are missing \\({dropped}\\)"):
        cls(folder)
    with pytest.warns(UserWarning, match=dropped):
        cls(folder, strict=False)


def test_unified_processor_config_is_read(tiny_depth_anything, rendered, tmp_path):
    # transformers 5 processors save one processor_config.json with an image_processor entry
    import json

    folder = tmp_path / "da"
    shutil.copytree(tiny_depth_anything, folder)
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").unlink()
    pre["size"] = {"height": 56, "width": 56}
    (folder / "processor_config.json").write_text(json.dumps({"image_processor": pre}))
    frames, _, _ = rendered
    assert DepthAnythingV2Depth(folder).pixel_values(frames).shape == (2, 3, 42, 56)
