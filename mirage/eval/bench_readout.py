"""Benchmark: time of LatentSpatialMemory.read against cache size, target views and latent grid."""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

from mirage.atomic import write_json
from mirage.eval.machine import describe_machine, write_rows
from mirage.geometry import Cameras, native
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


def readout_result_name(quick: bool, device: str, threads: int) -> str:
    """The CSV file name a sweep of these settings writes (so callers can check it first)."""
    suffix = f"_{threads}thread" if threads > 0 else ""
    return f"memory_readout_{'quick_' if quick else ''}{device.split(':')[0]}{suffix}.csv"


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
        name = readout_result_name(quick, device, threads)
        write_rows(rows, Path(out_dir) / name, describe_machine(device))
        print(f"wrote {Path(out_dir) / name}")
    return rows


def read_with_render_index(render_index):
    """A read function (mem, cameras) -> Readout: today's read with `render_index` in place of
    `mirage.memory.latent.render_index` for the duration of the call."""
    import mirage.memory.latent as latent

    def read(mem: LatentSpatialMemory, cams: Cameras):
        today = latent.render_index
        latent.render_index = render_index
        try:
            return mem.read(cams)
        finally:
            latent.render_index = today

    return read


def run_read_comparison(
    others: dict,
    num_points: int = 100_000,
    num_views: int = 9,
    hw: tuple[int, int] = (44, 80),
    device: str = "cpu",
    out_dir: Path | None = None,
    threads: int = 0,
    repeats: int = 7,
):
    """Time today's `read` against other read functions of one memory, side by side.

    `others` maps a name to a function (mem, cameras) -> Readout (`read_with_render_index`, or
    a frozen copy of an older read). The reads alternate (name 1, name 2, ..., today, name 1,
    ...) so that a change in the machine's load falls on all; each figure is the median of
    `repeats`. All readouts must be identical (bit for bit), or this raises. Prints the figures;
    writes CSV + JSON (with the machine and the load average before and after) to `out_dir`.
    Returns the result dict.
    """
    if threads > 0:
        torch.set_num_threads(threads)
    load_before = os.getloadavg()
    mem = _memory_with(num_points, device, hw)
    cams = _look_at_origin_cameras(num_views, *hw).to(device)
    sync = torch.cuda.synchronize if mem.device.type == "cuda" else (lambda: None)
    reads = {**others, "today": lambda m, c: m.read(c)}

    def timed(fn):  # -> wall seconds, this thread's CPU seconds, readout
        sync()
        t0, c0 = time.perf_counter(), time.thread_time()
        out = fn(mem, cams)
        sync()
        return time.perf_counter() - t0, time.thread_time() - c0, out

    outs = {name: timed(fn)[2] for name, fn in reads.items()}  # warm-up, and the readouts
    for name, out in outs.items():
        for k in ("latents", "mask", "depth"):
            if not torch.equal(getattr(out, k), getattr(outs["today"], k)):
                raise AssertionError(f"today's read differs from the {name} read ({k})")
    times = {name: [] for name in reads}
    cpu = {name: [] for name in reads}
    for _ in range(repeats):
        for name, fn in reads.items():
            wall, thread, _ = timed(fn)
            times[name].append(wall)
            cpu[name].append(thread)
    load_after = os.getloadavg()
    ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    cpu_ms = {name: statistics.median(t) * 1e3 for name, t in cpu.items()}
    result = {
        "grid": f"{hw[0]}x{hw[1]}",
        "points": num_points,
        "views": num_views,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "repeats": repeats,
        # the CPU z-buffer of today's read: the compiled loop, or torch ops without a compiler
        "native_zbuffer": device == "cpu" and native.kernel() is not None,
        "read_ms": round(ms["today"], 3),
        # CPU time of this thread: what the read costs when the machine's load takes turns
        "read_cpu_ms": round(cpu_ms["today"], 3),
    }
    for name in others:
        result[f"{name}_read_ms"] = round(ms[name], 3)
        result[f"{name}_read_cpu_ms"] = round(cpu_ms[name], 3)
        result[f"speedup_vs_{name}"] = round(ms[name] / ms["today"], 3)
        result[f"cpu_speedup_vs_{name}"] = round(cpu_ms[name] / cpu_ms["today"], 3)
    result["identical"] = True
    result["load_avg_before"] = [round(x, 2) for x in load_before]
    result["load_avg_after"] = [round(x, 2) for x in load_after]
    for name, t in times.items():
        result[f"{'read' if name == 'today' else name + '_read'}_ms_all"] = [
            round(x * 1e3, 3) for x in t
        ]
    versus = ", ".join(
        f"{name} {ms[name]:.2f} ms ({result[f'speedup_vs_{name}']:.2f}x; thread CPU time "
        f"{cpu_ms[name]:.2f} ms, {result[f'cpu_speedup_vs_{name}']:.2f}x)"
        for name in others
    )
    print(
        f"{result['grid']} {num_points:,} pts {num_views} views, {result['torch_threads']} "
        f"thread(s), median of {repeats}: today {ms['today']:.2f} ms (thread CPU time "
        f"{cpu_ms['today']:.2f} ms); {versus}; identical readouts; load avg "
        f"{load_before[0]:.2f} -> {load_after[0]:.2f}"
    )
    if out_dir is not None:
        name = (
            f"memory_readout_compare_{device.split(':')[0]}_{result['torch_threads']}thread_"
            f"{num_points}pts_{num_views}views"
        )
        row = {k: v for k, v in result.items() if not isinstance(v, list)}
        row["load_avg_1min_before"], row["load_avg_1min_after"] = load_before[0], load_after[0]
        machine = describe_machine(device)
        write_rows([row], Path(out_dir) / f"{name}.csv", machine)
        write_json(Path(out_dir) / f"{name}.json", {**result, "machine": machine})
        print(f"wrote {Path(out_dir) / name}.csv and .json")
    return result
