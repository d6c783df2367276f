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
    assert info.exit_code == 0 and f"{n} points, channels 4" in info.output
    ply = CliRunner().invoke(
        app, ["memory", "export-ply", str(tmp_path / "m.safetensors"), str(tmp_path / "m.ply")]
    )
    assert ply.exit_code == 0
    assert f"element vertex {n}".encode() in (tmp_path / "m.ply").read_bytes()
    (tmp_path / "noise.safetensors").write_bytes(b"\x07" * 100)
    for bad, says in (("nope", "no memory file"), ("noise", "not a readable safetensors")):
        res = CliRunner().invoke(app, ["memory", "info", str(tmp_path / f"{bad}.safetensors")])
        assert res.exit_code != 0 and says in res.output and "Traceback" not in res.output


def test_info_reads_an_rgb_cache(gen, tmp_path):
    from mirage.memory import RGBPointCache

    cache = RGBPointCache()
    cams = random_cameras(gen, 1, 16, 24)
    n = cache.insert(torch.rand(1, 3, 16, 24, generator=gen), torch.full((1, 16, 24), 2.0), cams)
    cache.save(tmp_path / "rgb.safetensors")
    info = CliRunner().invoke(app, ["memory", "info", str(tmp_path / "rgb.safetensors")])
    assert info.exit_code == 0 and f"RGBPointCache, {n} points" in info.output
    back = RGBPointCache.load(tmp_path / "rgb.safetensors")
    assert torch.equal(back.positions, cache.positions) and torch.equal(back.colors, cache.colors)
