"""`mirage eval closed-loop|nvs` on a tiny random model and held-out synthetic scenes."""

import csv
import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mirage.cli import app
from mirage.data.trajectories import make_trajectory
from mirage.eval.plans import closed_loop_plan
from mirage.perception import GroundTruthDepth
from mirage.pipeline import MiragePipeline
from mirage.synthetic import make_scene

SIZE, FRAMES = 64, 17
FAST = ["--size", f"{SIZE}x{SIZE}", "--frames", str(FRAMES), "--chunk-frames", "9"]
FAST += ["--steps", "2", "--device", "cpu"]


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _psnr(a, b):  # numpy, per frame, then the mean (closed form 10 log10(1 / MSE))
    mse = ((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2).mean(axis=(1, 2, 3))
    return float(np.mean(np.minimum(10 * np.log10(1.0 / mse), 100.0)))


def test_closed_loop_synthetic_tables_follow_the_protocol(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-home"))  # LPIPS: no backbone
    calls, seeds = [], []  # per generate call: (image, cameras, frames); gt-depth scene seeds
    generate, depth_call = MiragePipeline.generate, GroundTruthDepth.__call__

    def spy_generate(self, image, cameras, **kw):
        seeds.append([])
        out = generate(self, image, cameras, **kw)
        calls.append((image, cameras, out.frames))
        return out

    def spy_depth(self, *a):
        seeds[-1].append(self.scene.seed)
        return depth_call(self, *a)

    monkeypatch.setattr(MiragePipeline, "generate", spy_generate)
    monkeypatch.setattr(GroundTruthDepth, "__call__", spy_depth)
    out = tmp_path / "cl"
    args = ["eval", "closed-loop", "--model", str(tiny_model_dir), "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--synthetic", "2", *FAST])
    assert res.exit_code == 0, res.output

    rows = _rows(out / "closed_loop_per_clip.csv")
    assert [r["clip"] for r in rows] == [f"indoor{2**31}", f"indoor{2**31 + 1}"]
    pairs = closed_loop_plan(FRAMES).pairs
    assert pairs[0] == (9, 7) and pairs[-1] == (16, 0)
    for r in rows:
        assert int(r["num_pairs"]) == len(pairs) == 8
        for key in ("psnr_c", "psnr"):
            assert math.isfinite(float(r[key])) and 0 < float(r[key]) <= 100
        for key in ("ssim_c", "ssim"):
            assert -1 <= float(r[key]) <= 1
        assert r["lpips"] == r["lpips_c"] == "n/a"  # unavailable is never a number
    mean = _rows(out / "closed_loop_mean.csv")[0]
    expect = np.mean([float(r["psnr"]) for r in rows])
    assert float(mean["psnr"]) == pytest.approx(expect, rel=1e-5)
    summary = json.loads((out / "closed_loop.json").read_text())
    assert summary["protocol"]["clips_are_loops"] is True
    assert "alexnet-owt-7be5be79.pth" in summary["lpips_note"]
    job = json.loads((out / "closed_loop_job.json").read_text())
    assert job["config"]["chunk_frames"] == 9 and job["clips"] == 2
    sheet = iio.imread(out / "sheets" / f"closed_loop_indoor{2**31 + 1}.png")
    assert sheet.shape == (2 + 3 * (SIZE + 2), 2 + 6 * (SIZE + 2), 3)  # 3 rows, 6 of 8 pairs

    # Clip 1 by hand: scene 2**31 + 1, out along move_right 0.6 and back, rendered truth.
    scene = make_scene(2**31 + 1, kind="indoor")
    cams = make_trajectory("loop", scene.start_camera(SIZE, SIZE), FRAMES, path="move_right",
                           distance=0.6)  # fmt: skip
    truth = scene.render(cams).rgb
    (image, used, video), depth_seeds = calls[1], seeds[1]
    assert torch.equal(used.c2w, cams.c2w) and torch.equal(image, truth[0])
    assert set(depth_seeds) == {2**31 + 1}  # gt depth of this clip's own scene
    ret, back = [j for j, _ in pairs], [k for _, k in pairs]
    video = video.clamp(0, 1)
    assert float(rows[1]["psnr"]) == pytest.approx(_psnr(video[ret], truth[ret]), rel=1e-4)
    assert float(rows[1]["psnr_c"]) == pytest.approx(_psnr(video[ret], video[back]), rel=1e-4)


def test_eval_refuses_lengths_that_do_not_fit_and_gt_depth_on_real_clips(tiny_model_dir, tmp_path):
    base = ["eval", "nvs", "--model", str(tiny_model_dir), "--out", str(tmp_path / "x")]

    def refused(*extra):
        res = CliRunner().invoke(app, [*base, *extra])
        assert res.exit_code != 0
        return " ".join(res.output.replace("│", " ").split())

    assert "nearest lengths that fit: 17 or 25" in refused(
        "--synthetic", "1", "--frames", "20", "--chunk-frames", "9"
    )
    (tmp_path / "re").mkdir()
    assert "depth model folder" in refused("--re10k", str(tmp_path / "re"))
    assert "exactly one clip source" in refused()


def test_nvs_one_synthetic_clip_scores_the_targets(tiny_model_dir, tmp_path):
    out = tmp_path / "nvs"
    args = ["eval", "nvs", "--model", str(tiny_model_dir), "--out", str(out), "--synthetic", "1"]
    fast = [a if a != str(FRAMES) else "9" for a in FAST]
    res = CliRunner().invoke(app, [*args, *fast, "--target-stride", "2"])
    assert res.exit_code == 0, res.output
    (row,) = _rows(out / "nvs_per_clip.csv")
    assert int(row["num_targets"]) == 4  # nvs_plan(9, 1, 2): targets 1, 3, 5, 7
    assert math.isfinite(float(row["psnr"])) and torch.isfinite(torch.tensor(float(row["ssim"])))
