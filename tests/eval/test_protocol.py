"""Protocol index plans (hand-written expectations) and the runners against closed forms."""

import csv
import json
import math

import imageio.v3 as iio
import pytest
import torch

from mirage.eval.protocol import (
    PSNR_CAP_DB,
    EvalClip,
    closed_loop_plan,
    evaluate_closed_loop,
    evaluate_nvs,
)
from mirage.geometry import Cameras

H, W = 32, 40


# --- runners ------------------------------------------------------------------------------


def _cameras(xs):
    c2w = torch.eye(4).repeat(len(xs), 1, 1)
    c2w[:, 0, 3] = torch.tensor(xs)
    K = torch.tensor([[30.0, 0, W / 2], [0, 28.0, H / 2], [0, 0, 1]])
    return Cameras(K, c2w, H, W)


def render(cameras):
    """A stand-in world: each view is a pattern set by the camera position, values in [0.1, 0.8]."""
    v, u = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    x = cameras.centers[:, 0].view(-1, 1, 1, 1)
    ch = torch.arange(3).float().view(1, 3, 1, 1)
    return 0.45 + 0.35 * torch.sin(0.3 * u + 0.2 * v + 5.0 * x + ch)


def _truth_fn(context, cameras):
    return render(cameras)


def _offset_fn(context, cameras):  # every frame off by 0.1: MSE 0.01, PSNR 20 dB
    return render(cameras) + 0.1


def test_evaluate_nvs_truth_and_offset(tmp_path, lpips_weights):
    clips = [
        EvalClip(
            f"c{i}",
            render(_cameras([0.0, 0.1 * i, 0.2, 0.3, 0.4])),
            _cameras([0.0, 0.1 * i, 0.2, 0.3, 0.4]),
        )
        for i in range(2)
    ]
    bpath, hpath, *_ = lpips_weights
    res = evaluate_nvs(_truth_fn, clips, tmp_path / "a", lpips_backbone=bpath, lpips_heads=hpath)
    assert res["mean"]["psnr"] == PSNR_CAP_DB
    assert res["mean"]["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert res["mean"]["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert [r["num_targets"] for r in res["per_clip"]] == [4, 4]

    res = evaluate_nvs(_offset_fn, clips, tmp_path / "b", lpips_backbone=bpath, lpips_heads=hpath)
    assert res["mean"]["psnr"] == pytest.approx(20.0, abs=1e-3)
    assert res["mean"]["ssim"] < 1.0 and res["mean"]["lpips"] > 0
    rows = list(csv.DictReader(open(tmp_path / "b" / "nvs_per_clip.csv")))
    assert [r["clip"] for r in rows] == ["c0", "c1"]
    assert float(rows[0]["psnr"]) == pytest.approx(20.0, abs=1e-3)
    data = json.loads((tmp_path / "b" / "nvs.json").read_text())
    assert data["mean"]["psnr"] == pytest.approx(20.0, abs=1e-3)
    sheet = iio.imread(tmp_path / "b" / "sheets" / "nvs_c0.png")
    assert sheet.shape == (2 + 2 * (H + 2), 2 + 4 * (W + 2), 3)


def test_evaluate_nvs_passes_context_and_scores_only_targets(tmp_path):
    cams = _cameras([0.0, 0.1, 0.2, 0.3, 0.4])
    clip = EvalClip("c", render(cams), cams)
    seen = []

    def fn(context, cameras):
        seen.append(context.clone())
        video = render(cameras)
        video[:2] = 0.0  # wrong on the context frames 0 and 1: they must not be scored
        return video

    res = evaluate_nvs(fn, [clip], num_context=2, target_stride=2)
    assert torch.equal(seen[0], clip.frames[:2])
    assert res["per_clip"][0]["num_targets"] == 2  # frames 2 and 4
    assert res["mean"]["psnr"] == PSNR_CAP_DB


def test_an_interrupted_evaluation_resumes_after_its_finished_clips(tmp_path):
    cams = _cameras([0.0, 0.1, 0.2])
    clips = [EvalClip(f"c{i}", render(cams), cams) for i in range(3)]
    calls = []

    def fn(context, cameras):
        calls.append(1)
        return _offset_fn(context, cameras)

    first = evaluate_nvs(fn, clips, out_dir=tmp_path)
    assert len(calls) == 3
    (tmp_path / "nvs.json").unlink()  # as if the run stopped before its tables
    done = sorted((tmp_path / "clips").glob("*.json"))
    done[-1].unlink()  # ... and before its last clip
    again = evaluate_nvs(fn, clips, out_dir=tmp_path)
    assert len(calls) == 4  # only the unfinished clip ran again
    assert again["per_clip"] == first["per_clip"] and again["mean"] == first["mean"]
    evaluate_nvs(fn, clips, out_dir=tmp_path, target_stride=2)  # another protocol: all anew
    assert len(calls) == 7


def test_evaluate_without_lpips_weights_reports_na(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    cams = _cameras([0.0, 0.1, 0.2])
    res = evaluate_nvs(_offset_fn, [EvalClip("c", render(cams), cams)], tmp_path / "o")
    assert res["mean"]["lpips"] is None and "alexnet-owt-7be5be79.pth" in res["lpips_note"]
    row = next(csv.DictReader(open(tmp_path / "o" / "nvs_per_clip.csv")))
    assert row["lpips"] == "n/a"
    assert json.loads((tmp_path / "o" / "nvs.json").read_text())["mean"]["lpips"] is None


def test_evaluate_closed_loop_from_outbound_clip(tmp_path, lpips_weights):
    bpath, hpath, *_ = lpips_weights
    cams = _cameras([0.0, 0.1, 0.25])  # outbound; the loop has 5 frames: 0 1 2 1 0
    clip = EvalClip("c", render(cams), cams)
    kw = {"lpips_backbone": bpath, "lpips_heads": hpath}
    res = evaluate_closed_loop(_truth_fn, [clip], tmp_path, **kw)
    row = res["per_clip"][0]
    assert row["num_pairs"] == 2
    assert row["psnr_c"] == PSNR_CAP_DB and row["psnr"] == PSNR_CAP_DB
    assert row["ssim_c"] == pytest.approx(1.0, abs=1e-6) and row["lpips_c"] == pytest.approx(
        0, abs=1e-6
    )

    # consistent but wrong: return == outbound (PSNR_C capped), each 0.1 off truth (20 dB)
    row = evaluate_closed_loop(_offset_fn, [clip], **kw)["per_clip"][0]
    assert row["psnr_c"] == PSNR_CAP_DB and row["psnr"] == pytest.approx(20.0, abs=1e-3)

    # drifts only on the way back: return frames 3, 4 are 0.1 brighter than truth
    def drift(context, cameras):
        video = render(cameras)
        video[3:] += 0.1
        return video

    row = evaluate_closed_loop(drift, [clip], **kw)["per_clip"][0]
    assert row["psnr_c"] == pytest.approx(20.0, abs=1e-3)
    assert row["psnr"] == pytest.approx(20.0, abs=1e-3)
    assert row["lpips_c"] > 0
    assert (tmp_path / "closed_loop_per_clip.csv").is_file()
    sheet = iio.imread(tmp_path / "sheets" / "closed_loop_c.png")
    assert sheet.shape[0] == 2 + 3 * (H + 2)


def test_evaluate_closed_loop_on_loop_clips(tmp_path):
    xs = [0.0, 0.1, 0.2, 0.3, 0.2, 0.1, 0.0]
    clip = EvalClip("loop", render(_cameras(xs)), _cameras(xs))
    generated = []

    def half_noise(context, cameras):
        video = render(cameras)
        noise = torch.full_like(video[0], 0.05)
        video[4:] -= noise  # 0.05 off: MSE 0.0025 -> 26.02 dB
        generated.append(len(cameras))
        return video

    row = evaluate_closed_loop(half_noise, [clip], clips_are_loops=True)["per_clip"][0]
    assert generated == [7] and row["num_pairs"] == 3
    assert row["psnr_c"] == pytest.approx(10 * math.log10(1 / 0.0025), abs=1e-3)
    bad = EvalClip("bad", render(_cameras([0.0, 0.1, 0.2])), _cameras([0.0, 0.1, 0.2]))
    with pytest.raises(ValueError, match="palindromic"):
        evaluate_closed_loop(_truth_fn, [bad], clips_are_loops=True)


def test_generate_fn_output_is_checked():
    cams = _cameras([0.0, 0.1, 0.2])
    clip = EvalClip("c", render(cams), cams)
    with pytest.raises(ValueError, match="must return a video"):
        evaluate_nvs(lambda c, k: render(k)[:2], [clip])
    with pytest.raises(ValueError, match="non-finite"):
        evaluate_nvs(lambda c, k: render(k) * float("nan"), [clip])
    # slight decoder overshoot is clamped like an image: 1.02 where the truth is 0.8 is 0.2 off
    over = evaluate_nvs(lambda c, k: render(k).clamp(min=0.8) + 0.22, [clip])
    under = evaluate_nvs(lambda c, k: render(k).clamp(min=0.8) + 0.2, [clip])
    assert over["mean"]["psnr"] == pytest.approx(under["mean"]["psnr"], abs=1e-4)


@pytest.mark.parametrize("n", [4, 5, 9])
def test_closed_loop_plan_matches_make_trajectory_loop(n):
    from mirage.data.trajectories import make_trajectory

    K = torch.tensor([[30.0, 0, W / 2], [0, 28.0, H / 2], [0, 0, 1]])
    start = Cameras(K, torch.eye(4)[None], H, W)
    cams = make_trajectory("loop", start, n, path="orbit", degrees=40.0)
    plan = closed_loop_plan(n)
    for j, k in plan.pairs:
        assert torch.equal(cams.c2w[j], cams.c2w[k])
    # the outbound frames are the distinct poses of the path (all of them for odd n)
    centres = cams.centers[plan.outbound]
    assert torch.cdist(centres, centres).add(torch.eye(len(centres))).min() > 1e-3
    row = evaluate_closed_loop(
        _offset_fn, [EvalClip("t", render(cams), cams)], clips_are_loops=True
    )["per_clip"][0]
    assert row["num_pairs"] == n // 2 and row["psnr"] == pytest.approx(20.0, abs=1e-3)


def test_sharded_runs_merge_to_the_single_process_result(tmp_path):
    from mirage.eval.protocol import merge_shards

    clips = []
    for i in range(3):
        cams = _cameras([0.0, 0.1 * (i + 1), 0.3])
        clips.append(EvalClip(f"c{i}", render(cams), cams))

    def fn(context, cameras):  # a different error per clip, so the rows differ
        return render(cameras) + 0.05 * (1 + cameras.centers[1, 0].item())

    whole = evaluate_nvs(fn, clips, tmp_path / "one")
    for rank in range(2):
        part = evaluate_nvs(fn, clips, tmp_path / "two", shard=(rank, 2))
        assert [r["index"] for r in part["per_clip"]] == list(range(rank, 3, 2))
    assert not (tmp_path / "two" / "nvs_per_clip.csv").exists()
    merged = merge_shards(tmp_path / "two", "nvs", 2)
    assert [r["clip"] for r in merged["per_clip"]] == ["c0", "c1", "c2"]
    assert merged["mean"]["psnr"] == pytest.approx(whole["mean"]["psnr"], abs=1e-9)
    one = (tmp_path / "one" / "nvs_per_clip.csv").read_text()
    assert (tmp_path / "two" / "nvs_per_clip.csv").read_text() == one
    with pytest.raises(FileNotFoundError, match="rank2"):
        merge_shards(tmp_path / "two", "nvs", 3)
    with pytest.raises(ValueError, match="shard"):
        evaluate_nvs(fn, clips, shard=(2, 2))


def test_pipeline_generate_fn_uses_the_first_frame():
    from types import SimpleNamespace

    from mirage.eval.protocol import pipeline_generate_fn

    calls = []

    class FakePipeline:
        def generate(self, image, cameras, prompt=None, config=None, progress=True):
            calls.append((image.shape, len(cameras), prompt, progress))
            return SimpleNamespace(frames=render(cameras))

    cams = _cameras([0.0, 0.1, 0.2, 0.3, 0.4])
    fn = pipeline_generate_fn(FakePipeline(), prompt="a room")
    res = evaluate_nvs(fn, [EvalClip("c", render(cams), cams)])
    assert calls == [((3, H, W), 5, "a room", False)]
    assert res["mean"]["psnr"] == PSNR_CAP_DB
