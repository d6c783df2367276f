"""`mirage worldscore` end to end on a small instance in WorldScore's format, tiny models."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mirage.cli import app
from mirage.eval.worldscore_run import fit_image, fitting_length
from mirage.geometry import Cameras
from mirage.pipeline import MiragePipeline

TOTAL = 19  # 2 scenes of 10 frames: 2 * (10 - 1) + 1; chunks of 9 fit 17 or 25


def _tiny_depth_folder(folder):
    """A random Depth Anything (relative depth) saved like a real checkpoint folder.

    Unlike tests/perception's tiny model, its output is a constant disparity (depth ~1): the
    instance's 2 cm camera slide then keeps the views overlapping, so scale alignment runs.
    """
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        image_size=28, patch_size=14, out_features=["stage1", "stage2"],
        reshape_hidden_states=False,
    )  # fmt: skip
    config = DepthAnythingConfig(
        backbone_config=backbone, patch_size=14, reassemble_hidden_size=16,
        neck_hidden_sizes=[8, 16], reassemble_factors=[2, 1], fusion_hidden_size=8,
        head_hidden_size=4, depth_estimation_type="relative",
    )  # fmt: skip
    torch.manual_seed(0)
    model = DepthAnythingForDepthEstimation(config)
    with torch.no_grad():
        model.head.conv3.bias.fill_(1.0)  # positive disparity everywhere
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "DPTImageProcessor", "do_resize": True,
                "size": {"height": 28, "width": 28}, "keep_aspect_ratio": True,
                "ensure_multiple_of": 14, "resample": 3, "do_rescale": True,
                "rescale_factor": 1 / 255, "do_normalize": True,
                "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
                "do_pad": False,
            }
        )
    )  # fmt: skip
    return folder


def _blender_c2w(n):  # WorldScore's start pose diag(-1, 1, -1, 1), then sliding along x
    c2w = torch.diag(torch.tensor([-1.0, 1.0, -1.0, 1.0])).repeat(n, 1, 1)
    c2w[:, 0, 3] = 0.02 * torch.arange(n)
    return c2w


def _instance(root, size=80):
    root.mkdir(parents=True)
    v, u = np.mgrid[0:size, 0:size] / size
    image = np.stack([u, v, 0.5 * (u + v)], -1)  # a smooth gradient: resizing keeps it
    iio.imwrite(root / "input_image.png", (image * 255).round().astype(np.uint8))
    image_data = {
        "prompt_list": ["a sunny room", "a hallway"], "style": "photorealistic",
        "visual_movement": "static", "camera_path": ["right", "right"], "num_scenes": 2,
        "total_frames": TOTAL, "anchor_frame_idx": [0, 9],
    }  # fmt: skip
    (root / "image_data.json").write_text(json.dumps(image_data))
    c2w = _blender_c2w(TOTAL)
    camera_data = {
        "focal_length": 500, "scale": 1.0, "cameras": c2w[[0, 9, 18]].tolist(),
        "cameras_interp": c2w.tolist(),
    }  # fmt: skip
    (root / "camera_data.json").write_text(json.dumps(camera_data))
    return root, image


def test_worldscore_writes_total_frames_in_their_layout(tiny_model_dir, tmp_path, monkeypatch):
    inst, image = _instance(tmp_path / "static/photorealistic/indoor/room/001")
    depth = _tiny_depth_folder(tmp_path / "depth")
    seen = []
    generate = MiragePipeline.generate

    def spy(self, img, cameras, **kw):
        seen.append(cameras)
        return generate(self, img, cameras, **kw)

    monkeypatch.setattr(MiragePipeline, "generate", spy)
    out = tmp_path / "run"
    args = ["worldscore", str(inst), "--model", str(tiny_model_dir), "--depth", str(depth)]
    args += ["--out", str(out), "--size", "64x64", "--chunk-frames", "9", "--steps", "2"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output

    frames = sorted((out / "frames").glob("*.png"))
    assert [p.name for p in frames] == [f"{i:03d}.png" for i in range(TOTAL)]
    assert all(iio.imread(p).shape == (64, 64, 3) for p in frames)
    assert (out / "videos" / "output.mp4").stat().st_size > 0
    for name in ("image_data.json", "camera_data.json", "input_image.png"):
        assert (out / name).read_bytes() == (inst / name).read_bytes()
    # frame 0 is the start image, resized 80 -> 64 (a smooth gradient survives any resize)
    first = iio.imread(frames[0]).astype(np.float64) / 255
    ref = image[::5, ::5].repeat(4, 0).repeat(4, 1)[:64, :64]  # coarse independent resample
    assert np.abs(first - ref).mean() < 0.03

    (cams,) = seen
    assert len(cams) == 25  # nearest fitting length above 19 with chunks of 9
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))
    expect = _blender_c2w(TOTAL) @ flip  # OpenCV: camera y and z flipped
    assert torch.allclose(cams.c2w[:TOTAL], expect, atol=1e-6)
    assert torch.equal(cams.c2w[TOTAL:], cams.c2w[TOTAL - 1].expand(6, 4, 4))
    f = 500 * 64 / 512  # focal of a 512 frame, at 64
    assert torch.allclose(cams.K[0], torch.tensor([[f, 0, 32], [0, f, 32], [0, 0, 1.0]]))


def test_fitting_length_and_crop_intrinsics():
    assert [fitting_length(t, 9) for t in (1, 9, 10, 17, 19, 25)] == [9, 9, 17, 17, 25, 25]
    assert fitting_length(33, 33) == 33 and fitting_length(34, 33) == 65
    # an 80x120 image to 64x64: the centre 80x80 is kept (columns 20..99), then scaled by 0.8
    img = torch.arange(120.0).expand(3, 80, 120) / 120
    K = torch.tensor([[[70.0, 0, 60], [0, 71.0, 40], [0, 0, 1]]])
    out, cams = fit_image(img, Cameras(K, torch.eye(4)[None], 80, 120), 64, 64)
    assert out.shape == (3, 64, 64) and (cams.height, cams.width) == (64, 64)
    expect = torch.tensor([[70 * 0.8, 0, 40 * 0.8], [0, 71 * 0.8, 40 * 0.8], [0, 0, 1]])
    assert torch.allclose(cams.K[0], expect)
    assert out[0, 0, 0] == pytest.approx((20 + 0.5 / 0.8 - 0.5) / 120, abs=0.01)
