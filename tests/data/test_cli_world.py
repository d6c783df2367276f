"""`mirage world render`: the files a person looks at, and clear errors."""

import json

import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from mirage.cli import app
from mirage.data import load_frames, load_trajectory, read_re10k_cameras, save_trajectory


def test_world_render_writes_video_depth_masks_and_cameras(tmp_path):
    out = tmp_path / "clip"
    args = ["world", "render", "--seed", "3", "--kind", "outdoor", "--dynamic", "1"]
    args += ["--trajectory", "loop", "--frames", "5", "--size", "24x32", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    for name in ("video.mp4", "depth.png", "depth.mp4", "world.json"):
        assert (out / name).stat().st_size > 0
    depth = load_file(out / "depth.safetensors")["depth"]
    masks = load_file(out / "masks.safetensors")
    assert depth.shape == (5, 24, 32) and masks["sky"].shape == (5, 24, 32)
    assert torch.equal(torch.isinf(depth), masks["sky"].bool())
    static = (masks["dynamic"][0] == 0) & (masks["dynamic"][4] == 0)
    assert torch.equal(depth[0][static], depth[4][static])  # a loop comes back
    stamps, cams = read_re10k_cameras(out / "cameras.txt", 24, 32)
    traj = load_trajectory(out / "trajectory.json")
    assert torch.equal(cams.c2w, traj.c2w) and len(stamps) == 5
    assert load_frames(out / "video.mp4", 24, 32).shape == (5, 3, 24, 32)
    assert json.loads((out / "world.json").read_text())["seed"] == 3
    # a trajectory file renders the same cameras again
    save_trajectory(tmp_path / "t.json", traj[1:3])
    res = CliRunner().invoke(
        app,
        [
            "world",
            "render",
            "--seed",
            "3",
            "--kind",
            "outdoor",
            "--trajectory",
            str(tmp_path / "t.json"),
            "--out",
            str(tmp_path / "again"),
        ],
    )
    assert res.exit_code == 0, res.output
    again = load_file(tmp_path / "again" / "depth.safetensors")["depth"]
    static = masks["dynamic"][1] == 0  # the second render has no mover
    assert torch.equal(again[0][static], depth[1][static])


def test_world_render_bad_arguments_give_clear_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["world", "render", "--size", "24by32", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "HEIGHTxWIDTH" in res.output
    res = runner.invoke(app, ["world", "render", "--trajectory", "spiral", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "trajectory" in res.output
    res = runner.invoke(app, ["world", "render", "--kind", "cave", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "kind" in res.output
