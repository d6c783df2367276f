"""`mirage memory info` and `export-ply` on a saved memory."""

import torch
from camera_factory import random_cameras
from typer.testing import CliRunner

from mirage.cli import app
from mirage.memory import LatentSpatialMemory


def test_info_and_export_ply(gen, tmp_path):
    mem = LatentSpatialMemory(4)
    cams = random_cameras(gen, 1, 16, 24)
    n = mem.insert(torch.randn(1, 4, 4, 6, generator=gen), torch.full((1, 16, 24), 2.0), cams)
    mem.save(tmp_path / "m.safetensors")
    info = CliRunner().invoke(app, ["memory", "info", str(tmp_path / "m.safetensors")])
    assert info.exit_code == 0 and f"{n} points, 4 channels" in info.output
    ply = CliRunner().invoke(
        app, ["memory", "export-ply", str(tmp_path / "m.safetensors"), str(tmp_path / "m.ply")]
    )
    assert ply.exit_code == 0
    assert f"element vertex {n}".encode() in (tmp_path / "m.ply").read_bytes()
    missing = CliRunner().invoke(app, ["memory", "info", str(tmp_path / "nope.safetensors")])
    assert missing.exit_code != 0
