"""`mirage generate` from a tiny model folder: files on disk, frame count, clear refusals."""

import json

import pytest
from typer.testing import CliRunner

from mirage.cli import app
from mirage.data.re10k import count_frames
from mirage.memory import LatentSpatialMemory

ARGS = ["--scene", "1", "--frames", "17", "--chunk-frames", "9", "--steps", "2", "--size", "64x64"]


def test_generate_writes_video_frames_memory_and_metadata(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["generate", "--model", str(tiny_model_dir), "--out", str(out), "--voxel-size", "0.05"]
        + ARGS,
    )
    assert result.exit_code == 0, result.output
    assert count_frames(out / "video.mp4") == 17
    assert len(list((out / "frames").glob("*.png"))) == 17
    meta = json.loads((out / "metadata.json").read_text())
    assert [c["latent_frames"] for c in meta["chunks"]] == [[0, 4, 8], [8, 12, 16]]
    assert len(meta["timings"]) == 2 and meta["config"]["voxel_size"] == 0.05
    memory = LatentSpatialMemory.load(out / "memory.safetensors")
    assert memory.num_points == meta["timings"][-1]["cache_points"]
    assert (out / "memory.ply").stat().st_size > memory.num_points * 15


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--frames", "15"], "nearest lengths that fit"),
        (["--memory", "voxels"], "memory"),
        (["--depth", "/no/such/depth-model"], "depth-model"),
    ],
)
def test_generate_refuses_bad_options(tiny_model_dir, tmp_path, extra, message):
    args = ["generate", "--model", str(tiny_model_dir), "--out", str(tmp_path / "x"), *ARGS, *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and message in result.output
    assert not (tmp_path / "x" / "video.mp4").exists()


def test_generate_refuses_missing_model_folder(tmp_path):
    args = ["generate", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "x"), *ARGS]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "model folder not found" in result.output
