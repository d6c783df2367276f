"""Batched pinhole geometry: back-projection, projection and the exact z-buffer.

Every function takes plain tensors and states its convention: OpenCV camera frame (x right,
y down, z forward), continuous pixel coordinates (the centre of pixel (row i, col j) is at
(j + 0.5, i + 0.5)), and depth as camera z-depth, not ray length.

Symbols: T views, N points, H x W grid cells.
"""

from __future__ import annotations

import torch

MAX_POINTS = 2**32  # the z-buffer packs a point index into 32 bits
EMPTY = -1  # index of a grid cell that no point reaches


def pixel_centers(height: int, width: int, device=None) -> torch.Tensor:  # -> [H,W,2] (u, v)
    """Continuous coordinates (u, v) = (j + 0.5, i + 0.5) of every cell of an H x W grid."""
    v = torch.arange(height, device=device, dtype=torch.float32) + 0.5
    u = torch.arange(width, device=device, dtype=torch.float32) + 0.5
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv], dim=-1)


def transform_points(points: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Apply rigid/affine transforms to points.  # [N,3] or [T,N,3], [T,4,4] -> [T,N,3]"""
    R, t = T[:, :3, :3], T[:, :3, 3]
    if points.ndim == 2:
        return torch.einsum("tij,nj->tni", R, points) + t[:, None, :]
    return torch.einsum("tij,tnj->tni", R, points) + t[:, None, :]


def unproject(
    uv: torch.Tensor, z: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor
) -> torch.Tensor:
    """World points seen at pixel coordinates uv with z-depth z.

    # uv [T,N,2], z [T,N], K [T,3,3], c2w [T,4,4] -> [T,N,3]
    """
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    cx, cy, skew = K[:, 0, 2, None], K[:, 1, 2, None], K[:, 0, 1, None]
    y = (uv[..., 1] - cy) / fy
    x = (uv[..., 0] - cx - skew * y) / fx
    cam = torch.stack([x * z, y * z, z], dim=-1)
    return transform_points(cam, c2w)


def backproject(depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor) -> torch.Tensor:
    """World point of every grid cell centre for a z-depth grid.

    # depth [T,H,W], K [T,3,3] for that grid, c2w [T,4,4] -> [T,H,W,3]
    """
    T, H, W = depth.shape
    uv = pixel_centers(H, W, depth.device).reshape(1, H * W, 2).expand(T, -1, -1)
    return unproject(uv, depth.reshape(T, H * W), K, c2w).reshape(T, H, W, 3)


def project(points: torch.Tensor, K: torch.Tensor, w2c: torch.Tensor):
    """Project world points into T cameras.

    # points [N,3], K [T,3,3], w2c [T,4,4] -> uv [T,N,2] (continuous pixels), z [T,N]
    Points at z <= 0 get non-finite or meaningless uv; callers mask them with z > 0.
    """
    # One [3,4] matrix per view, P = K [R | t]: its third row is the camera z (K's last row is
    # [0, 0, 1]). One [3,3] @ [3,N] GEMM per view: a GEMM over all views at once rounds
    # differently with the number of views (a view's result must not depend on what is read
    # with it), and a batched matmul with an inner size of 3 is several times slower.
    P = K @ w2c[:, :3, :]  # [T,3,4]
    pts = points.T
    uvz = torch.stack([torch.addmm(P[t, :, 3:], P[t, :, :3], pts) for t in range(len(P))])
    z = uvz[:, 2]  # [T,N], contiguous rows
    return (uvz[:, :2] / z[:, None]).transpose(1, 2), z


def zbuffer(uv: torch.Tensor, z: torch.Tensor, height: int, width: int):
    """Exact z-buffer: for every cell, the frontmost point that lands in it.

    # uv [T,N,2], z [T,N] -> index [T,H,W] int64 (EMPTY = -1), depth [T,H,W] (0 where empty)

    A point lands in the cell containing its projection (floor of the continuous coordinate)
    when 0 <= u < W, 0 <= v < H and z > 0 (finite). Among the points in a cell the smallest z
    wins and ties go to the smallest point index. The rule is evaluated in one
    `scatter_reduce(amin)` on a 64-bit key (float32 bits of z above, point index below): for
    positive floats the bit pattern orders like the value, so the minimum key is the winner.
    It is deterministic on any device: no racy indexed writes.
    """
    T, N = z.shape
    if N >= MAX_POINTS:
        raise ValueError(f"the z-buffer takes at most {MAX_POINTS - 1} points, got {N}")
    z = z.to(torch.float32)
    u, v = uv[..., 0], uv[..., 1]
    inside = (z > 0) & (z < torch.inf) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    # Truncation equals floor for the points inside (u, v >= 0); the others (NaN included) go
    # to one extra dump slot, so no boolean indexing (a host sync) is needed.
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


def _zbuffer(uv: torch.Tensor, z: torch.Tensor, height: int, width: int):
    """Plain-loop twin of `zbuffer`, for tests and for reading. Same signature and result."""
    T, N = z.shape
    index = torch.full((T, height, width), EMPTY, dtype=torch.int64)
    depth = torch.zeros((T, height, width), dtype=torch.float32)
    for t in range(T):
        for n in range(N):
            zz = float(z[t, n])
            u, v = float(uv[t, n, 0]), float(uv[t, n, 1])
            if not (zz > 0 and zz < float("inf") and 0 <= u < width and 0 <= v < height):
                continue
            i, j = int(v // 1), int(u // 1)
            # Strict < keeps the earlier (smaller) index on a tie, since n increases.
            if index[t, i, j] == EMPTY or zz < float(depth[t, i, j]):
                index[t, i, j], depth[t, i, j] = n, zz
    return index, depth


# On CPU, views are z-buffered in passes of at most this many projected points: one pass over
# millions of points x many views outgrows the caches and runs 2-3x slower per view.
CPU_POINTS_PER_PASS = 1 << 20


def render_index(points: torch.Tensor, K: torch.Tensor, w2c: torch.Tensor, height: int, width: int):
    """Which point each cell of T views sees, and at what depth.

    # points [N,3], K [T,3,3] for an H x W grid, w2c [T,4,4] -> index [T,H,W], depth [T,H,W]
    """
    points = points.to(torch.float32)
    T, N = len(K), len(points)
    per_pass = T if points.device.type != "cpu" else max(1, CPU_POINTS_PER_PASS // max(N, 1))
    passes = [
        zbuffer(*project(points, K[i : i + per_pass], w2c[i : i + per_pass]), height, width)
        for i in range(0, T, per_pass)
    ]
    if len(passes) == 1:
        return passes[0]
    return torch.cat([p[0] for p in passes]), torch.cat([p[1] for p in passes])
