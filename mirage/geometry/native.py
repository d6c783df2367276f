"""The CPU z-buffer as one small C loop, compiled on first use; `render_index` falls back to
torch ops where no C compiler is found.

Why: on CPU the z-buffer of `render_index` is bound by memory traffic, not arithmetic. In
torch ops every step (GEMM, divide, clamp, floor, cell id, key, scatter) is a pass over all
points of a view, ~150 bytes moved per point and view; this loop reads a point's 12 bytes
once per view and keeps the grid's keys in cache (measured: several times faster).

Exactness: the loop evaluates the rule of `zbuffer` on `project`'s numbers, operation for
operation, in float32: x, y, z = ((P0 X + P1 Y) + P2 Z) + P3 each rounded on its own (the sums
of `projection._camera_rows`; compiled with `-ffp-contract=off`, so no fused multiply-add),
u = x / z and v = y / z (IEEE division), a point lands when z > 0, z < inf, 0 <= u < W and
0 <= v < H (NaN fails every test), in cell (trunc v, trunc u) (= floor: both >= 0), and the
cell keeps the smallest 64-bit key (z bits above, point index below), which is the nearest
point, ties to the smaller index. No fast-math, no threads: the same bits as the torch path.

Set MIRAGE_NATIVE=0 to use the torch path; CC names the compiler (default `cc`);
MIRAGE_NATIVE_CACHE the folder of the compiled library (default ~/.cache/mirage/native).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

_SOURCE = r"""
#include <float.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 256

/* Z-buffer of n points (xyz [n][3] float32) into T views (P [T][3][4] float32, row-major):
   best [T][H*W + 1] int64 holds INT64_MAX (empty) or the smallest key of a cell; the last
   slot of a view takes the points that do not land. Keys: z bits << 32 | point index. */
void zbuffer(const float *xyz, int64_t n, const float *P, int64_t T, int32_t H, int32_t W,
             int64_t *best)
{
    const int32_t dump = H * W;
    const float fh = (float)H, fw = (float)W;
    float zs[BLOCK];
    int32_t cell[BLOCK];
    for (int64_t t = 0; t < T; t++) {
        const float *p = P + 12 * t;
        const float p0 = p[0], p1 = p[1], p2 = p[2], p3 = p[3], p4 = p[4], p5 = p[5];
        const float p6 = p[6], p7 = p[7], p8 = p[8], p9 = p[9], p10 = p[10], p11 = p[11];
        int64_t *b = best + t * (int64_t)(dump + 1);
        for (int64_t s = 0; s < n; s += BLOCK) {
            const int m = n - s < BLOCK ? (int)(n - s) : BLOCK;
            const float *q = xyz + 3 * s;
            /* 1. the cell of each point of the block, and its z (no branches: vectorised) */
            for (int j = 0; j < m; j++) {
                const float X = q[3 * j], Y = q[3 * j + 1], Z = q[3 * j + 2];
                const float x = ((p0 * X + p1 * Y) + p2 * Z) + p3;
                const float y = ((p4 * X + p5 * Y) + p6 * Z) + p7;
                const float z = ((p8 * X + p9 * Y) + p10 * Z) + p11;
                const float u = x / z, v = y / z;
                const int in = (z > 0.0f) & (z <= FLT_MAX) & (u >= 0.0f) & (u < fw)
                               & (v >= 0.0f) & (v < fh);
                /* convert only numbers in range: the others would be undefined */
                const float uc = in ? u : 0.0f, vc = in ? v : 0.0f;
                cell[j] = in ? (int32_t)vc * W + (int32_t)uc : dump;
                zs[j] = z;
            }
            /* 2. the smallest key of each cell (a point in front has z bits < 0x7F800000, so
               its key is a positive int64, below the empty INT64_MAX); a select, not a branch:
               which way it goes is not predictable */
            for (int j = 0; j < m; j++) {
                uint32_t bits;
                memcpy(&bits, &zs[j], sizeof bits);
                const int64_t k = (int64_t)(((uint64_t)bits << 32) | (uint64_t)(s + j));
                const int64_t old = b[cell[j]];
                b[cell[j]] = k < old ? k : old;
            }
        }
    }
}
"""
_FLAGS = ["-O3", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math", "-std=c99"]


def _flags() -> list[str]:
    """`_FLAGS`, plus SSE4.1 on an x86 CPU that has it (gcc vectorises step 1 only with its
    shuffles; the library is built on the machine that runs it)."""
    try:
        cpu = Path("/proc/cpuinfo").read_text() if platform.machine() in ("x86_64", "AMD64") else ""
    except OSError:
        cpu = ""
    return _FLAGS + (["-msse4.1"] if " sse4_1" in cpu else [])


_kernel: ctypes.CDLL | None | bool = False  # False: not tried yet; None: not available


def _library_path() -> Path:
    what = _SOURCE + " ".join(_flags()) + sys.platform + platform.machine()
    key = hashlib.sha256(what.encode()).hexdigest()
    root = os.environ.get("MIRAGE_NATIVE_CACHE") or Path.home() / ".cache" / "mirage" / "native"
    return Path(root) / f"zbuffer-{key[:16]}.so"


def _build(path: Path) -> bool:
    """Compile `_SOURCE` into `path` (atomically: a temporary file, then a rename)."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        src, out = Path(tmp) / "zbuffer.c", Path(tmp) / "zbuffer.so"
        src.write_text(_SOURCE)
        try:
            done = subprocess.run(
                [cc, *_flags(), "-o", str(out), str(src)], capture_output=True, timeout=120
            )
        except (OSError, subprocess.SubprocessError):
            return False
        if done.returncode != 0 or not out.exists():
            return False
        os.replace(out, path)
    return True


def kernel() -> ctypes.CDLL | None:
    """The compiled z-buffer, built on the first call; None where disabled or not buildable."""
    global _kernel
    if _kernel is False:
        _kernel = None
        if os.environ.get("MIRAGE_NATIVE", "1") != "0":
            path = _library_path()
            try:
                if path.exists() or _build(path):
                    lib = ctypes.CDLL(str(path))
                    i64, i32, ptr = ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p
                    lib.zbuffer.argtypes = [ptr, i64, ptr, i64, i32, i32, ptr]
                    lib.zbuffer.restype = None
                    _kernel = lib
            except OSError:  # a library that does not load (another platform's, truncated)
                _kernel = None
    return _kernel


def render_index_native(lib: ctypes.CDLL, points: torch.Tensor, P: torch.Tensor, H: int, W: int):
    """`render_index` on CPU by the compiled loop.

    # points [N,3] float32, P [T,3,4] float32 (K [R | t]) -> index [T,H,W], depth [T,H,W]
    """
    points, P = points.contiguous(), P.contiguous()
    T, N = len(P), len(points)
    best = torch.full((T, H * W + 1), torch.iinfo(torch.int64).max, dtype=torch.int64)
    if N and T:
        lib.zbuffer(points.data_ptr(), N, P.data_ptr(), T, H, W, best.data_ptr())
    best = best[:, :-1].view(T, H, W)
    hit = best != torch.iinfo(torch.int64).max
    index = torch.where(hit, best & 0xFFFFFFFF, -1)
    depth = torch.where(hit, (best >> 32).to(torch.int32).view(torch.float32), 0.0)
    return index, depth
