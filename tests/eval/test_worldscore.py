"""WorldScore adapter: Blender -> OpenCV cameras, reading an instance, writing frames."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from mirage.eval.worldscore import (
    blender_to_opencv_c2w,
    read_worldscore_instance,
    worldscore_intrinsics,
    write_worldscore_frames,
)
from mirage.geometry import Cameras
from mirage.geometry.projection import project


def test_identity_blender_camera_maps_to_expected_opencv():
    cv = blender_to_opencv_c2w(torch.eye(4)[None])[0]
    # A Blender camera with identity rotation looks down world -z with its up along world +y.
    assert torch.equal(cv[:3, 2], torch.tensor([0.0, 0.0, -1.0]))  # OpenCV z = viewing direction
    assert torch.equal(cv[:3, 1], torch.tensor([0.0, -1.0, 0.0]))  # OpenCV y = image down
    assert torch.equal(cv[:3, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(cv, torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0])))


def test_conversion_keeps_centre_and_is_an_involution(gen):
    q, _ = torch.linalg.qr(torch.randn(5, 3, 3, generator=gen))
    q = q * torch.linalg.det(q).sign()[:, None, None]  # proper rotations
    c2w = torch.eye(4).repeat(5, 1, 1)
    c2w[:, :3, :3], c2w[:, :3, 3] = q, torch.randn(5, 3, generator=gen)
    cv = blender_to_opencv_c2w(c2w)
    assert torch.equal(cv[:, :3, 3], c2w[:, :3, 3])
    assert torch.allclose(torch.linalg.det(cv[:, :3, :3]), torch.ones(5), atol=1e-5)
    assert torch.equal(blender_to_opencv_c2w(cv), c2w)


def test_point_in_front_of_blender_camera_projects_where_blender_says(gen):
    """Project with our OpenCV cameras and compare with Blender's own pinhole formula."""
    q, _ = torch.linalg.qr(torch.randn(4, 3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.linalg.det(q).sign()[:, None, None]
    c2w = torch.eye(4, dtype=torch.float64).repeat(4, 1, 1)
    c2w[:, :3, :3], c2w[:, :3, 3] = q, torch.randn(4, 3, generator=gen, dtype=torch.float64)
    # points in each Blender camera's frame: in front means z_b < 0
    xb = torch.tensor([[0.0, 0.0, -5.0], [-1.0, 0.5, -5.0], [2.0, -1.0, -3.0]], dtype=torch.float64)
    K = worldscore_intrinsics(500.0, 512, 512)
    cams = Cameras(K, blender_to_opencv_c2w(c2w).float(), 512, 512)
    for t in range(4):
        world = (c2w[t, :3, :3] @ xb.T).T + c2w[t, :3, 3]
        uv, z = project(world.float(), cams.K[t : t + 1], cams.w2c[t : t + 1])
        depth = -xb[:, 2]
        u_expected = 256 + 500 * xb[:, 0] / depth  # Blender x right
        v_expected = 256 - 500 * xb[:, 1] / depth  # Blender y up, image rows go down
        assert (z[0] > 0).all()
        assert torch.allclose(z[0].double(), depth, atol=1e-4)
        assert torch.allclose(uv[0, :, 0].double(), u_expected, atol=1e-3)
        assert torch.allclose(uv[0, :, 1].double(), v_expected, atol=1e-3)
    # the hand-computed case: point (-1, 0.5, -5) in the camera: left of and above the centre
    assert u_expected[1].item() == pytest.approx(156.0) and v_expected[1].item() == pytest.approx(
        206.0
    )


def test_intrinsics_scale_with_the_shorter_side():
    assert torch.equal(
        worldscore_intrinsics(500.0, 512, 512),
        torch.tensor([[500.0, 0, 256], [0, 500.0, 256], [0, 0, 1]]),
    )
    K = worldscore_intrinsics(500.0, 256, 448)
    assert K[0, 0].item() == pytest.approx(250.0) and K[1, 1].item() == pytest.approx(250.0)
    assert K[0, 2].item() == 224.0 and K[1, 2].item() == 128.0


def _write_instance(root, frames_per_scene=5):
    """A 1-scene push_in instance written the way WorldScore's CameraGen writes it."""
    root.mkdir(parents=True)
    total = frames_per_scene  # 1 scene: (frames - 1) + 1
    start = np.diag([-1.0, 1.0, -1.0, 1.0])  # PyTorch3D identity, converted to Blender
    interp = []
    for i in range(total):
        c = start.copy()
        c[2, 3] = i / (total - 1)  # push_in: the camera moves 1 unit along its view (+z world)
        interp.append(c.tolist())
    camera_data = {"focal_length": 500, "scale": 1, "cameras": [interp[0], interp[-1]]}
    camera_data["cameras_interp"] = interp
    image_data = {
        "image": "images/static/indoor/kitchen/0001.png",
        "visual_movement": "static",
        "visual_style": "photorealistic",
        "scene_type": "indoor",
        "camera_path": ["push_in"],
        "prompt_list": ["A kitchen.", "A kitchen with a window."],
        "style": "Photorealistic.",
        "num_scenes": 1,
        "total_frames": total,
        "anchor_frame_idx": [0, total - 1],
    }
    (root / "camera_data.json").write_text(json.dumps(camera_data, indent=4))
    (root / "image_data.json").write_text(json.dumps(image_data, indent=4))
    iio.imwrite(root / "input_image.png", np.full((32, 32, 3), 128, np.uint8))
    return root


def test_read_instance(tmp_path):
    root = _write_instance(tmp_path / "static/photorealistic/indoor/kitchen/0001")
    inst = read_worldscore_instance(root)
    image_path, prompts, cameras = inst
    assert image_path == root / "input_image.png"
    assert prompts == ["A kitchen.", "A kitchen with a window."]
    assert len(cameras) == 5 and (cameras.height, cameras.width) == (512, 512)
    assert inst.total_frames == 5 and inst.anchor_frame_idx == [0, 4]
    # start pose: looks along world +z, image down = world -y, image right = world -x
    R = cameras.c2w[0, :3, :3]
    assert torch.equal(R, torch.diag(torch.tensor([-1.0, -1.0, 1.0])))
    # push in: the last camera sits 1 unit further along its own viewing direction
    assert torch.allclose(cameras.centers[-1] - cameras.centers[0], R[:, 2])
    # a point straight ahead lands at the image centre, in front of every camera
    uv, z = project(torch.tensor([[0.0, 0.0, 3.0]]), cameras.K, cameras.w2c)
    assert (z > 0).all() and torch.allclose(uv, torch.full_like(uv, 256.0))


def test_read_instance_errors(tmp_path):
    root = _write_instance(tmp_path / "a")
    data = json.loads((root / "image_data.json").read_text())
    data["total_frames"] = 9
    (root / "image_data.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="total_frames = 9"):
        read_worldscore_instance(root)
    (root / "camera_data.json").unlink()
    with pytest.raises(FileNotFoundError, match="camera_data.json"):
        read_worldscore_instance(root)


def test_write_frames_layout(tmp_path, gen):
    inst_dir = _write_instance(tmp_path / "inst")
    frames = torch.rand(5, 3, 16, 24, generator=gen)
    out = tmp_path / "run"
    (out / "frames").mkdir(parents=True)
    (out / "frames" / "999.png").write_bytes(b"stale")
    paths = write_worldscore_frames(out, frames, instance_dir=inst_dir, video=False)
    assert [p.name for p in paths] == ["000.png", "001.png", "002.png", "003.png", "004.png"]
    assert sorted(p.name for p in (out / "frames").iterdir()) == [p.name for p in paths]
    back = torch.from_numpy(iio.imread(paths[3])).permute(2, 0, 1).float() / 255
    assert (back - frames[3]).abs().max() <= 0.5 / 255 + 1e-6
    for name in ("image_data.json", "camera_data.json", "input_image.png"):
        assert (out / name).is_file()
    with pytest.raises(ValueError, match="total_frames = 5"):
        write_worldscore_frames(out, frames[:4], instance_dir=inst_dir, video=False)


def test_write_frames_video(tmp_path, gen):
    write_worldscore_frames(tmp_path, torch.rand(3, 3, 16, 16, generator=gen), fps=5)
    assert (tmp_path / "videos" / "output.mp4").stat().st_size > 0
