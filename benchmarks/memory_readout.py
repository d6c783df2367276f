"""Time LatentSpatialMemory.read: points 10k..2M, views 1..16, 44x80 and 30x52 latent grids.

    python benchmarks/memory_readout.py [--quick] [--device cuda] [--threads N]
    python benchmarks/memory_readout.py --compare [--points 100000] [--views 9] [--threads 1]

Same as `mirage bench readout`. Writes benchmarks/results/memory_readout_<device>.csv and the
machine description beside it.

`--compare` times four reads of one memory, alternating them, and checks that all four give
identical readouts (bit for bit):
- `reference`: today's read with `reference_render_index` below (the z-buffer before the CPU
  fast path of 20b80da, kept verbatim) in place of today's `render_index`;
- `baseline`: `baseline_read` below, the whole read as it was before issue #16 item 4
  (811363e: camera scaling, CPU z-buffer and gather, kept verbatim): "today's read" of then;
- `torch_path`: today's read with the compiled z-buffer of `mirage.geometry.native` off, as
  on a machine without a C compiler (its torch-ops fallback);
- `today`: `LatentSpatialMemory.read` as it is.
It writes memory_readout_compare_<device>_<threads>thread_<points>pts_<views>views.csv and
.json (median of 7 each, the speed-ups, the load average before and after).
"""

import argparse
import sys
from pathlib import Path

import torch

from mirage.eval.bench_readout import (
    read_with_render_index,
    run_read_comparison,
    run_readout_benchmark,
)
from mirage.geometry import native
from mirage.geometry.projection import (
    EMPTY,
    MAX_POINTS,
    _camera_rows,
    _columns,
    _cpu_gemm_is_exact,
    project,
    zbuffer,
)
from mirage.memory.base import Readout, empty_readout
from mirage.memory.pooling import grid_factor

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


# --- baseline: the read as of 811363e (mirage/memory/latent.py read, _render; projection.py's
# render_index, _render_index_cpu, _homogeneous, _camera_rows_cpu), before issue #16 item 4 ---

BASELINE_CPU_POINTS_PER_PASS = 1 << 17
_BASELINE_EMPTY_KEY = (0x7F800000 << 32) | 0xFFFFFFFF
_BASELINE_LITTLE_ENDIAN = sys.byteorder == "little"
_BASELINE_FLOAT32_CELLS = 2**24


def _baseline_homogeneous(points: torch.Tensor) -> torch.Tensor:  # [N,3] -> [4,N]
    out = torch.ones((4, len(points)), dtype=torch.float32, device=points.device)
    out[:3] = points.T
    return out


def _baseline_camera_rows_cpu(points_h: torch.Tensor, P: torch.Tensor, out, tmp):
    if _cpu_gemm_is_exact():
        return torch.mm(P, points_h, out=out)
    return _camera_rows(points_h, _columns(P), out, tmp)


def _baseline_render_index_cpu(points: torch.Tensor, P: torch.Tensor, height: int, width: int):
    """`_render_index_cpu` as of 811363e (see `git show 811363e:mirage/geometry/projection.py`)."""
    T, N = len(P), len(points)
    H, W = height, width
    Wp = W + 2
    padded = (H + 2) * Wp
    slot_dtype = torch.float32 if padded < _BASELINE_FLOAT32_CELLS else torch.float64
    best = torch.full((T, padded), _BASELINE_EMPTY_KEY, dtype=torch.int64)
    pts = _baseline_homogeneous(points)  # [4,N]
    # |z| <= sum |P_i| * max |p|: below this, z cannot overflow to inf (nor be NaN)
    bound = max(-float(points.min()), float(points.max())) if N else 0.0
    finite = (P[:, 2, :3].abs().sum(1) * bound + P[:, 2, 3].abs() < 1e37).tolist()
    rows = best.unbind(0)
    chunk = max(1, min(N, BASELINE_CPU_POINTS_PER_PASS))
    little = _BASELINE_LITTLE_ENDIAN
    xyz, tmp = torch.empty(3, chunk), torch.empty(3, chunk)
    q, slot_f = torch.empty(chunk), torch.empty(chunk, dtype=slot_dtype)
    slot = torch.empty(chunk, dtype=torch.int64)
    words = torch.empty(chunk, 2, dtype=torch.int32)  # [:, 0] point index, [:, 1] z bits
    for s in range(0, N, chunk):
        n = min(chunk, N - s)
        c_pts = pts[:, s : s + n].contiguous()
        c_xyz, c_tmp, c_q, c_sf, c_slot = xyz[:, :n], tmp[:, :n], q[:n], slot_f[:n], slot[:n]
        xy, (u, v), z = c_xyz[:2], c_xyz[:2], c_xyz[2]
        c_words = words[:n]
        c_words[:, 0] = torch.arange(s, s + n, dtype=torch.int64).to(torch.int32)
        z_word, key = c_words[:, 1], c_words.view(torch.int64).view(n)
        ids = None if little else torch.arange(s, s + n, dtype=torch.int64)
        wide = slot_dtype != torch.float32
        u_s, v_s = (torch.empty_like(c_sf), torch.empty_like(c_sf)) if wide else (u, v)
        for t in range(T):
            _baseline_camera_rows_cpu(c_pts, P[t], c_xyz, c_tmp)  # x, y, z, exactly as `project`
            if finite[t]:
                torch.clamp_min(z, 0.0, out=c_q)
            else:  # z + (z - z) is z where finite and NaN where not; clamp_min(0) keeps NaN
                torch.sub(z, z, out=c_q).add_(z).clamp_min_(0.0)
            # u = x / z, v = y / z (exactly `project`'s) where the point can land; where it
            # cannot (z <= 0, inf or NaN) the quotient is infinite or NaN
            xy.div_(c_q)
            xy.nan_to_num_(nan=-1.0, posinf=float(max(H, W)), neginf=-1.0)
            u.clamp_(-1.0, float(W))
            v.clamp_(-1.0, float(H))
            xy.floor_()
            # padded cell (v + 1) * (W + 2) + (u + 1)
            if wide:
                u_s.copy_(u), v_s.copy_(v)
            torch.add(u_s, v_s, alpha=Wp, out=c_sf).add_(Wp + 1)
            c_slot.copy_(c_sf)
            if little:
                z_word.copy_(z.view(torch.int32))
            else:
                key = (z.view(torch.int32).to(torch.int64) << 32) | ids
            rows[t].scatter_reduce_(0, c_slot, key, reduce="amin", include_self=True)
    if little and N < 2**31:  # the words of a key are the index (EMPTY if none) and z bits
        words = best.view(torch.int32).view(T, H + 2, Wp, 2)[:, 1:-1, 1:-1]
        index = words[..., 0].to(torch.int64)
        depth = words[..., 1].contiguous().view(torch.float32).nan_to_num_(posinf=0.0)
        return index, depth
    best = best.view(T, H + 2, Wp)[:, 1:-1, 1:-1]
    hit = best != _BASELINE_EMPTY_KEY
    index = torch.where(hit, best & 0xFFFFFFFF, EMPTY)
    depth = torch.where(hit, (best >> 32).to(torch.int32).view(torch.float32), 0.0)
    return index, depth


def baseline_render_index(points, K, w2c, height: int, width: int):
    points = points.to(torch.float32)
    if points.device.type != "cpu":
        return zbuffer(*project(points, K, w2c), height, width)  # as today off CPU
    if len(points) >= MAX_POINTS:
        raise ValueError(f"the z-buffer takes at most {MAX_POINTS - 1} points, got {len(points)}")
    return _baseline_render_index_cpu(points, (K @ w2c[:, :3, :]).to(torch.float32), height, width)


def baseline_read(mem, cameras, latent_hw=None) -> Readout:
    """`LatentSpatialMemory.read` as of 811363e (with its `_render`)."""
    hw = latent_hw or mem.latent_hw
    h, w = hw
    s = grid_factor(cameras.height, cameras.width, h, w)
    cams = cameras.to(mem.device).scaled(1 / s)
    if mem.num_points == 0:
        return empty_readout(len(cameras), mem.channels, hw, mem.device, mem.dtype)
    index, depth = baseline_render_index(mem.positions, cams.K, cams.w2c, h, w)
    T, h, w = index.shape
    hit = index != EMPTY
    feats = mem.features.index_select(0, index.clamp(min=0).flatten()).view(T, h, w, -1)
    latents = torch.where(hit[..., None], feats, 0).permute(0, 3, 1, 2).contiguous()
    return Readout(latents, hit[:, None], depth[:, None])


def torch_path_read(mem, cameras) -> Readout:
    """Today's read with the compiled z-buffer off: `render_index` takes its torch ops."""
    native.kernel()  # built (or found missing) before it is switched off
    kept, native._kernel = native._kernel, None
    try:
        return mem.read(cameras)
    finally:
        native._kernel = kept


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument(
        "--compare", action="store_true", help="today's read vs older reads, side by side"
    )
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--views", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out-dir", default=None, help="[benchmarks/results]")
    args = parser.parse_args()
    out = Path(args.out_dir) if args.out_dir else Path(__file__).parent / "results"
    if args.compare:
        others = {
            "reference": read_with_render_index(reference_render_index),
            "baseline": baseline_read,
            "torch_path": torch_path_read,
        }
        run_read_comparison(
            others, args.points, args.views, (44, 80), args.device, out, args.threads,
            args.repeats,
        )  # fmt: skip
    else:
        run_readout_benchmark(args.quick, args.device, out, args.threads)
