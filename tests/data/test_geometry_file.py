"""The official geometry.npz input: read, validated, and generating what --scene generates."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mirage.cli import app
from mirage.data.geometry_file import load_geometry
from mirage.data.trajectories import make_trajectory
from mirage.memory import LatentSpatialMemory
from mirage.synthetic import make_scene


def _geometry(tmp_path, **changes):
    """A geometry.npz of a synthetic orbit: exact depth, masks, frames (uint8 HWC)."""
    scene = make_scene(2, num_dynamic=1)
    cams = make_trajectory("orbit", scene.start_camera(64, 64), 17)
    r = scene.render(cams, torch.arange(17))
    data = {
        "depths": torch.where(torch.isinf(r.depth), 0.0, r.depth).numpy(),
        "intrinsics": cams.K.numpy(),
        "poses_c2w": cams.c2w.numpy(),
        "frames": (r.rgb.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy(),
        "masks": (~(r.dynamic_mask | r.sky_mask)).numpy(),
    }
    data.update(changes)
    data = {k: v for k, v in data.items() if v is not None}
    path = tmp_path / "geometry.npz"
    np.savez(path, **data)
    return path, data


def test_load_reads_every_key(tmp_path):
    path, data = _geometry(tmp_path)
    geo = load_geometry(path)
    assert len(geo.cameras) == 17 and (geo.cameras.height, geo.cameras.width) == (64, 64)
    assert torch.equal(geo.depths, torch.from_numpy(data["depths"]))
    assert torch.equal(geo.keep, torch.from_numpy(data["masks"]))
    torch.testing.assert_close(geo.first_frame * 255, torch.from_numpy(
        data["frames"][0]).permute(2, 0, 1).float())  # fmt: skip


@pytest.mark.parametrize(
    "change, says",
    [
        ({"poses_c2w": None}, "lacks ['poses_c2w']"),
        ({"intrinsics": np.zeros((3, 3, 3))}, "`intrinsics` must be [17, 3, 3]"),
        ({"depths": np.full((17, 64, 64), np.nan)}, "`depths` holds NaN"),
        ({"depths": -np.ones((17, 64, 64))}, "must be >= 0"),
        ({"masks": np.ones((17, 32, 32), bool)}, "`masks` must be [17,64,64]"),
        ({"poses_c2w": np.tile(np.diag([2.0, 1, 1, 1]), (17, 1, 1))}, "rotation"),
        ({"frames": None}, None),  # no frame 0: refused only when generating
    ],
)
def test_bad_files_are_refused_naming_the_key(tmp_path, change, says):
    path, _ = _geometry(tmp_path, **change)
    if says is None:
        assert load_geometry(path).first_frame is None
        return
    with pytest.raises(ValueError, match=says.replace("[", r"\[").replace("]", r"\]")):
        load_geometry(path)


def test_generate_from_a_geometry_file_builds_the_memory_the_scene_does(tiny_model_dir, tmp_path):
    path, _ = _geometry(tmp_path)
    common = ["generate", "--model", str(tiny_model_dir), "--chunk-frames", "9", "--steps", "1",
              "--fusion", "latest"]  # fmt: skip
    a = CliRunner().invoke(app, [*common, "--geometry", str(path), "--out", str(tmp_path / "a")])
    assert a.exit_code == 0, a.output
    b = CliRunner().invoke(app, [*common, "--scene", "2", "--dynamic", "1", "--trajectory",
                                 "orbit", "--frames", "17", "--size", "64x64", "--masks", "gt",
                                 "--out", str(tmp_path / "b")])  # fmt: skip
    assert b.exit_code == 0, b.output
    ma = LatentSpatialMemory.load(tmp_path / "a" / "memory.safetensors")
    mb = LatentSpatialMemory.load(tmp_path / "b" / "memory.safetensors")
    # same cameras, depth and masks: the same points (frame 0 is the uint8 picture in a)
    assert ma.num_points == mb.num_points > 0
    torch.testing.assert_close(ma.positions, mb.positions, rtol=0, atol=1e-4)
