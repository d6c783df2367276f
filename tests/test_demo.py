"""Tests of the demo job: metrics against closed forms, pictures, and `mirage demo --quick`."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mirage.demo import METRIC_KEYS, DemoConfig, finite_numbers
from mirage.eval.loops import MODES, loop_metrics
from mirage.eval.report import return_sheet, side_by_side


def _frames(T, H=16, W=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, 3, H, W, generator=g) * 0.7 + 0.1  # room for offsets up to 0.2


def test_loop_metrics_closed_forms():
    # A constant offset d gives MSE d^2, PSNR = -20 log10(d): 0.1 -> 20 dB exactly.
    gt = _frames(9)
    pred = gt + 0.1
    pred[0] = gt[0]  # the given first frame
    # Return frames j = 5..8 pair with outbound 3..0; make each differ from its partner by 0.05.
    for j in range(5, 9):
        pred[j] = pred[8 - j] + 0.05
    pred[8] = gt[0] + 0.05  # frame 8 pairs with frame 0
    m = loop_metrics(pred, gt)
    assert m["frames"] == list(range(1, 9))
    assert m["closed_loop_pairs"] == [[5, 3], [6, 2], [7, 1], [8, 0]]
    for v in m["psnr"][:4]:  # outbound frames 1..4: offset 0.1
        assert v == pytest.approx(20.0, abs=1e-3)
    for v in m["closed_loop_psnr"]:
        assert v == pytest.approx(-20 * math.log10(0.05), abs=1e-3)
    # Return frames 5..7 are gt[8-j] + 0.15 against gt[j]: compare with a direct computation.
    for j in range(5, 8):
        mse = ((pred[j] - gt[j]) ** 2).mean().item()
        assert m["psnr"][j - 1] == pytest.approx(10 * math.log10(1 / mse), abs=1e-3)
    ret = [m["psnr"][j - 1] for j in range(5, 9)]
    assert m["psnr_return_mean"] == pytest.approx(sum(ret) / 4, abs=1e-4)
    # twins: the generated outbound partners 3, 2, 1 (offset 0.1, 20 dB) of return frames 5..7
    assert m["psnr_twins_mean"] == pytest.approx(20.0, abs=1e-3)
    assert m["psnr_return_twinned_mean"] == pytest.approx(sum(ret[:3]) / 3, abs=1e-4)
    # the twins are gt + 0.1: a shifted frame keeps its contrast exactly
    assert m["contrast_ratio_twins_mean"] == pytest.approx(1.0, abs=1e-5)
    assert m["ssim"][0] < 1.0 and m["ssim_mean"] <= 1.0


def test_contrast_ratio_and_trivial_baselines_closed_forms():
    from mirage.eval.loops import PSNR_CAP, contrast_ratio, trivial_baselines

    gt = _frames(9)
    torch.testing.assert_close(contrast_ratio(0.25 + 0.5 * gt, gt), torch.full((9,), 0.5))

    class Identity:  # a VAE that reconstructs exactly: the ceiling is the cap
        def encode_images(self, x):
            return x

        def decode_images(self, z):
            return z

    b = trivial_baselines(gt, Identity())
    assert b["vae_ceiling"]["psnr_mean"] == PSNR_CAP
    # 9 frames: return frames 5, 6, 7 have generated twins (3, 2, 1), frame 8's is the given one
    flat = b["flat_colour"]
    assert flat["psnr_return_twinned_mean"] == pytest.approx(sum(flat["psnr"][4:7]) / 3)
    flat = gt[:1].mean(dim=(2, 3), keepdim=True)
    mse = ((gt[1:] - flat) ** 2).mean(dim=(1, 2, 3))
    want = (10 * torch.log10(1 / mse)).mean()
    assert b["flat_colour"]["psnr_mean"] == pytest.approx(float(want), abs=1e-3)
    # contrast of the way back (frames 5..8): a flat image has none, an exact copy all of it,
    # a copy of frame 0 the ratio of frame 0's spread to each return frame's
    assert b["flat_colour"]["contrast_return_mean"] == 0.0
    assert b["vae_ceiling"]["contrast_return_mean"] == pytest.approx(1.0, abs=1e-6)
    spread = gt.std(dim=(2, 3)).mean(1)
    assert b["copy_first_frame"]["contrast_return_mean"] == pytest.approx(
        float((spread[0] / spread[5:]).mean()), abs=1e-5
    )
    assert len(b["flat_colour"]["psnr"]) == 8 and b["vae_ceiling"]["psnr"] == [PSNR_CAP] * 8


def test_video_round_trip_cuts_chunks_as_generation_does():
    """Each chunk goes through the VAE alone; a frame two chunks share comes from the later."""
    from mirage.eval.loops import trivial_baselines, video_round_trip

    class Counting:  # encode_video tags each call: frames of call c become c (a constant)
        calls = 0

        def encode_video(self, x):
            Counting.calls += 1
            return torch.full_like(x, 0.25 * Counting.calls)

        def decode(self, z):
            return z

        def encode_images(self, x):
            return x

        def decode_images(self, z):
            return z

    gt = _frames(17)
    out = video_round_trip(Counting(), gt, 9)
    want = torch.tensor([0.25] * 8 + [0.5] * 9)  # frames 0..7 from chunk 0, 8..16 from chunk 1
    torch.testing.assert_close(out[:, 0, 0, 0], want)
    Counting.calls = 0
    b = trivial_baselines(gt, Counting(), chunk_frames=9)
    assert set(b["vae_video_ceiling"]) == {
        "psnr",
        "psnr_mean",
        "psnr_return_mean",
        "psnr_return_twinned_mean",
        "psnr_last",
        "contrast_return_mean",
    }
    assert b["vae_ceiling"]["psnr_last"] == 60.0  # the identity image path is exact


def test_loop_metrics_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ"):
        loop_metrics(_frames(9), _frames(5))


def test_demo_config_validation():
    with pytest.raises(ValueError, match="held-out"):
        DemoConfig(scene_seed=3)
    with pytest.raises(ValueError, match="nearest lengths"):
        DemoConfig(frames=20)
    with pytest.raises(ValueError, match="at least 2 chunks"):
        DemoConfig(frames=9)
    assert DemoConfig(quick=True).num_frames == 17 and DemoConfig().num_frames == 33


def test_side_by_side_and_sheet_shapes():
    a, b = _frames(3, 8, 12, 1), _frames(3, 8, 12, 2)
    video = side_by_side({"gt": a, "x": b}, upscale=3)
    assert video.shape == (3, 3, 24, 72)
    # Away from the label band (top left), the panels are nearest-neighbour upscalings.
    assert torch.allclose(video[:, :, 20, 36 + 3 * 11], b[:, :, 6, 11], atol=1 / 255)
    sheet = return_sheet({"GT": a, "latent": b}, [0, 2], scale=2)
    assert sheet.dtype.name == "uint8" and sheet.shape[0] == 14 + 2 + 2 * (16 + 2)  # + labels


def test_demo_quick_cli(tmp_path):
    from typer.testing import CliRunner

    from mirage.cli import app

    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    for name in ("side_by_side.mp4", "return_frames.png", "metrics.json", "readout.png",
                 "psnr_per_frame.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0
    for mode in ("gt", *MODES):
        assert (out / "videos" / f"{mode}.mp4").stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["modes"]) == set(MODES)
    for mode in MODES:
        m = metrics["modes"][mode]
        assert set(METRIC_KEYS) <= set(m)
        assert len(m["psnr"]) == len(m["ssim"]) == 16  # frames 1..16 of 17
        assert len(m["closed_loop_psnr"]) == 8 and len(m["cache_mib_per_chunk"]) == 2
    assert metrics["modes"]["none"]["cache_mib_per_chunk"] == [0.0, 0.0]
    assert metrics["modes"]["latent"]["cache_mib_per_chunk"][1] > 0
    assert finite_numbers(metrics)
    assert "latent" in res.output and "closed-loop" in res.output
    # the trivial baselines and the VAE ceiling stand beside the models, in the table too
    base = metrics["baselines"]
    assert set(base) == {"flat_colour", "copy_first_frame", "vae_ceiling", "vae_video_ceiling"}
    assert base["vae_ceiling"]["psnr_mean"] > base["flat_colour"]["psnr_mean"]
    assert base["vae_video_ceiling"]["psnr_mean"] > base["flat_colour"]["psnr_mean"]
    assert "flat colour" in res.output and "vae ceiling" in res.output
    for mode in ("latent", "rgb"):
        assert metrics["modes"][mode]["readout_psnr_mean"] > 0 and "readout alone" in res.output
    # a second run replaces the previous demo whole; a folder that is not a demo is refused
    (out / "stale.txt").write_text("from another run")
    res = CliRunner().invoke(app, ["demo", "--quick", "--steps", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert not (out / "stale.txt").exists() and json.loads((out / "metrics.json").read_text())
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(other)])
    assert res.exit_code == 2 and "not empty" in res.output and (other / "keep.txt").is_file()
