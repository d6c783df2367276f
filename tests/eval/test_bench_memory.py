"""`mirage bench memory --quick`: files written, cache bytes against a closed form."""

import csv
import json
import math
from pathlib import Path

import imageio.v3 as iio
import torch
from typer.testing import CliRunner

from mirage.cli import app
from mirage.eval.bench_memory import QUICK, bench_scene_and_cameras

LATENT_CHANNELS = 16  # the tiny VAE's z_dim
FACTOR = 8  # the tiny VAE's spatial factor


def _valid_cells(depth, s):  # brute force: a cell is valid when >= half its pixels have depth
    T, H, W = depth.shape
    n = 0
    for t in range(T):
        for i in range(H // s):
            for j in range(W // s):
                block = depth[t, i * s : (i + 1) * s, j * s : (j + 1) * s]
                good = int((torch.isfinite(block) & (block > 0)).sum())
                n += good > 0 and 2 * good >= s * s
    return n


def test_quick_run_writes_csv_plot_and_closed_form_bytes(tmp_path):
    res = CliRunner().invoke(app, ["bench", "memory", "--quick", "--out-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    stem = tmp_path / "memory_cost_quick_cpu"
    with open(f"{stem}.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["chunks"]) for r in rows] == [1, 2, 3]
    machine = json.loads(stem.with_suffix(".machine.json").read_text())
    assert machine["cpu_cores"] >= 1 and "torch" in machine
    png = iio.imread(f"{stem}.png")
    assert png.ndim == 3 and png.shape[2] == 3 and png.shape[1] > png.shape[0]
    assert (png != 255).any()  # something was drawn
    # a second run would replace those results: refused unless asked, the files untouched
    before = Path(f"{stem}.csv").read_bytes()
    again = CliRunner().invoke(app, ["bench", "memory", "--quick", "--out-dir", str(tmp_path)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert Path(f"{stem}.csv").read_bytes() == before

    scene, cams = bench_scene_and_cameras(QUICK)
    for r in rows:
        c = int(r["chunks"])
        frames = list(range(0, 32 * c + 1, 4))  # frame 0, then 4, 8, ..., 32 of every chunk
        depth = scene.render(cams[frames], times=torch.tensor(frames).double()).depth
        pixels = int((torch.isfinite(depth) & (depth > 0)).sum())
        cells = _valid_cells(depth, FACTOR)
        rgb_bytes = 15 * pixels  # float32 xyz + uint8 rgb
        latent_bytes = (12 + 2 * LATENT_CHANNELS) * cells  # float32 xyz + bf16 latent
        assert int(r["frames_inserted"]) == len(frames)
        assert int(r["rgb_bytes"]) == rgb_bytes and int(r["rgb_points"]) == pixels
        assert int(r["latent_bytes"]) == latent_bytes and int(r["latent_points"]) == cells
        assert float(r["cache_ratio"]) == round(rgb_bytes / latent_bytes, 2)
        assert latent_bytes < rgb_bytes
        for key in ("latent_read_s_per_frame", "rgb_read_s_per_frame"):
            assert math.isfinite(float(r[key])) and float(r[key]) > 0
