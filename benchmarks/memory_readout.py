"""Time LatentSpatialMemory.read: points 10k..2M, views 1..16, 44x80 and 30x52 latent grids.

    python benchmarks/memory_readout.py [--quick] [--device cuda] [--threads N]
    python benchmarks/memory_readout.py --compare [--points 100000] [--views 9] [--threads 1]

Same as `mirage bench readout`. Writes benchmarks/results/memory_readout_<device>.csv and the
machine description beside it.

`--compare` times the read with today's `render_index` against `reference_render_index` below
(the implementation before the CPU fast path, kept verbatim), alternating the two, checks that
both give identical readouts, and writes
memory_readout_compare_<device>_<threads>thread_<points>pts_<views>views.csv and .json (median
of 7 each, the ratio, the load average before and after).
"""

import argparse
from pathlib import Path

import torch

from mirage.eval.bench_readout import run_read_comparison, run_readout_benchmark
from mirage.geometry.projection import EMPTY, MAX_POINTS

# --- reference: mirage/geometry/projection.py as of c1ca722 (project, zbuffer, render_index) ---


def reference_project(points: torch.Tensor, K: torch.Tensor, w2c: torch.Tensor):
    P = K @ w2c[:, :3, :]  # [T,3,4]
    pts = points.T
    uvz = torch.stack([torch.addmm(P[t, :, 3:], P[t, :, :3], pts) for t in range(len(P))])
    z = uvz[:, 2]  # [T,N], contiguous rows
    return (uvz[:, :2] / z[:, None]).transpose(1, 2), z


def reference_zbuffer(uv: torch.Tensor, z: torch.Tensor, height: int, width: int):
    T, N = z.shape
    if N >= MAX_POINTS:
        raise ValueError(f"the z-buffer takes at most {MAX_POINTS - 1} points, got {N}")
    z = z.to(torch.float32)
    u, v = uv[..., 0], uv[..., 1]
    inside = (z > 0) & (z < torch.inf) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    cells = height * width
    view = torch.arange(T, device=z.device)[:, None] * cells
    slot = torch.where(inside, view + v.long() * width + u.long(), T * cells)
    zbits = torch.where(inside, z, 1.0).view(torch.int32)
    key = (zbits.long() << 32) | torch.arange(N, device=z.device, dtype=torch.int64)
    best = torch.full(
        (T * cells + 1,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=z.device
    )
    best.scatter_reduce_(0, slot.flatten(), key.flatten(), reduce="amin", include_self=True)
    best = best[:-1].view(T, height, width)
    hit = best != torch.iinfo(torch.int64).max
    index = torch.where(hit, best & 0xFFFFFFFF, EMPTY)
    depth_bits = (best >> 32).to(torch.int32)
    depth = torch.where(hit, depth_bits.view(torch.float32), 0.0)
    return index, depth


REFERENCE_CPU_POINTS_PER_PASS = 1 << 20


def reference_render_index(points, K, w2c, height: int, width: int):
    """`render_index` before the CPU fast path (c1ca722): project, then one z-buffer pass."""
    points = points.to(torch.float32)
    T, N = len(K), len(points)
    per_pass = (
        T if points.device.type != "cpu" else max(1, REFERENCE_CPU_POINTS_PER_PASS // max(N, 1))
    )
    passes = [
        reference_zbuffer(
            *reference_project(points, K[i : i + per_pass], w2c[i : i + per_pass]), height, width
        )
        for i in range(0, T, per_pass)
    ]
    if len(passes) == 1:
        return passes[0]
    return torch.cat([p[0] for p in passes]), torch.cat([p[1] for p in passes])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--compare", action="store_true", help="today's read vs the reference")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--views", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out-dir", default=None, help="[benchmarks/results]")
    args = parser.parse_args()
    out = Path(args.out_dir) if args.out_dir else Path(__file__).parent / "results"
    if args.compare:
        run_read_comparison(
            reference_render_index, args.points, args.views, (44, 80), args.device, out,
            args.threads, args.repeats,
        )  # fmt: skip
    else:
        run_readout_benchmark(args.quick, args.device, out, args.threads)
