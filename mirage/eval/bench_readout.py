"""Benchmark: time of LatentSpatialMemory.read against cache size, target views and latent grid."""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

from mirage.eval.machine import describe_machine, write_rows
from mirage.geometry import Cameras
from mirage.memory import LatentSpatialMemory

CHANNELS = 48  # Wan2.2 VAE latent channels
FULL_POINTS = (10_000, 100_000, 1_000_000, 2_000_000)
FULL_VIEWS = (1, 4, 9, 16)
FULL_GRIDS = ((44, 80), (30, 52))  # 704x1280 and 480x832 at 16x


def _look_at_origin_cameras(T: int, h: int, w: int, factor: int = 16) -> Cameras:
    """T cameras on an arc 4 units from the origin, looking at it (60 degree horizontal fov)."""
    H, W = h * factor, w * factor
    f = W / (2 * math.tan(math.radians(30)))
    K = torch.tensor([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    c2w = []
    for k in range(T):
        a = (k / max(T - 1, 1) - 0.5) * 0.8
        eye = torch.tensor([4 * math.sin(a), 0.0, -4 * math.cos(a)])
        z = -eye / eye.norm()
        x = torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0]), z)
        x = x / x.norm()
        pose = torch.eye(4)
        pose[:3, :3] = torch.stack([x, torch.linalg.cross(z, x), z], 1)
        pose[:3, 3] = eye
        c2w.append(pose)
    return Cameras(K, torch.stack(c2w), H, W)


def _memory_with(num_points: int, device: str, hw: tuple[int, int]) -> LatentSpatialMemory:
    gen = torch.Generator().manual_seed(0)
    mem = LatentSpatialMemory(CHANNELS, dtype=torch.bfloat16, device=device)
    mem.positions = ((torch.rand(num_points, 3, generator=gen) - 0.5) * 3).to(device)
    mem.features = torch.randn(num_points, CHANNELS, generator=gen).to(device, torch.bfloat16)
    mem.counts = torch.ones(num_points, dtype=torch.int32, device=device)
    mem.latent_hw = hw
    return mem


def _time_read(mem: LatentSpatialMemory, cams: Cameras, repeats: int) -> float:
    """Median seconds of one read, synchronised on CUDA."""
    sync = torch.cuda.synchronize if mem.device.type == "cuda" else (lambda: None)
    mem.read(cams)  # warm-up: allocator, kernels
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        mem.read(cams)
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_readout_benchmark(
    quick: bool = False, device: str = "cpu", out_dir: Path | None = None, threads: int = 0
):
    """Sweep points x views x grid; print a table and write CSV + machine JSON to `out_dir`.

    `threads` > 0 sets torch's CPU threads (a shared machine: fewer threads, less contention).
    """
    if threads > 0:
        torch.set_num_threads(threads)
    points = (10_000, 100_000) if quick else FULL_POINTS
    views = (1, 9) if quick else FULL_VIEWS
    grids = FULL_GRIDS[:1] if quick else FULL_GRIDS
    rows = []
    combos = [(g, n, v) for g in grids for n in points for v in views]
    for (h, w), n, v in tqdm(combos, desc="readout", unit="case"):
        mem = _memory_with(n, device, (h, w))
        cams = _look_at_origin_cameras(v, h, w).to(device)
        seconds = _time_read(mem, cams, repeats=3 if n >= 1_000_000 else 7)
        rows.append(
            {
                "grid": f"{h}x{w}",
                "points": n,
                "views": v,
                "read_ms": round(seconds * 1e3, 3),
                "ms_per_view": round(seconds * 1e3 / v, 3),
                "bytes_per_point": mem.nbytes // n,
                "cache_mib": round(mem.nbytes / 2**20, 2),
                "load_avg_1min": round(os.getloadavg()[0], 2),  # a shared machine: say how busy
            }
        )
    for r in rows:
        print(
            f"{r['grid']:>6} {r['points']:>9,} pts {r['views']:>3} views: "
            f"{r['read_ms']:9.2f} ms ({r['ms_per_view']:.2f} ms/view)"
        )
    if out_dir is not None:
        suffix = f"_{threads}thread" if threads > 0 else ""
        name = f"memory_readout_{'quick_' if quick else ''}{device.split(':')[0]}{suffix}.csv"
        write_rows(rows, Path(out_dir) / name, describe_machine(device))
        print(f"wrote {Path(out_dir) / name}")
    return rows
