"""Batched pinhole geometry: back-projection, projection and the exact z-buffer.

Every function takes plain tensors and states its convention: OpenCV camera frame (x right,
y down, z forward), continuous pixel coordinates (the centre of pixel (row i, col j) is at
(j + 0.5, i + 0.5)), and depth as camera z-depth, not ray length.

Symbols: T views, N points, H x W grid cells.
"""

from __future__ import annotations

import sys

import torch

from mirage.geometry import native

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


def _columns(P: torch.Tensor):  # P [...,3,4] -> its four columns, each [...,3,1]
    return P[..., 0:1], P[..., 1:2], P[..., 2:3], P[..., 3:]


def _camera_rows(points_t: torch.Tensor, columns, out: torch.Tensor, tmp: torch.Tensor):
    """Rows (u z, v z, z) = P[:, :3] @ p + P[:, 3] of every point, written into `out`.

    # points_t [3,n] (rows X, Y, Z), columns of P [...,3,4] (`_columns`), out, tmp [...,3,n]
    Products and sums in one fixed order, ((P0 X + P1 Y) + P2 Z) + P3, each rounded on its own
    (separate element-wise ops: no fused multiply-add, no reduction): a point's result depends
    on nothing else that is computed with it, neither the other points nor the other views, on
    any device. (A GEMM is not so: one over all views rounds differently with their number, and
    BLAS kernels differ in order and fusion. This order is what MKL's addmm computed here.)
    """
    p0, p1, p2, p3 = columns
    tmp = torch.empty_like(out) if tmp is None else tmp
    torch.mul(p0, points_t[0], out=out)
    out.add_(torch.mul(p1, points_t[1], out=tmp))
    out.add_(torch.mul(p2, points_t[2], out=tmp))
    return out.add_(p3)


_GEMM_IS_EXACT: bool | None = None  # does torch.mm on this CPU compute `_camera_rows`' sums?


def _homogeneous(points: torch.Tensor) -> torch.Tensor:  # [N,3] -> [4,N] rows X, Y, Z, 1
    out = torch.empty((4, len(points)), dtype=torch.float32, device=points.device)
    out[3] = 1.0
    for i in range(3):  # a column at a time: on CPU ~3x faster than one transposed copy
        out[i].copy_(points[:, i])
    return out


def _cpu_gemm_is_exact() -> bool:
    """Whether the CPU GEMM P @ [X; Y; Z; 1] gives `_camera_rows` bit for bit (probed once).

    MKL's sgemm with an inner size of 4 adds the four products in order, each rounded (no fused
    multiply-add; P3 * 1 is P3): the operations of `_camera_rows`, about twice as fast. A BLAS
    that fuses or reorders fails this probe on random inputs (a few of every hundred elements
    differ), and then the element-wise ops are used.
    """
    global _GEMM_IS_EXACT
    if _GEMM_IS_EXACT is None:
        gen = torch.Generator().manual_seed(0)
        exact = True
        for n in (1, 3, 8, 33, 1000, 4099, 65539):
            pts = torch.randn(n, 3, generator=gen) * torch.rand(3, generator=gen) * 100
            for P in torch.randn(4, 3, 4, generator=gen) * 300:
                want = _camera_rows(pts.T, _columns(P), torch.empty(3, n), None)
                exact = exact and torch.equal(want, torch.mm(P, _homogeneous(pts)))
        _GEMM_IS_EXACT = exact
    return _GEMM_IS_EXACT


def _camera_rows_cpu(points_h: torch.Tensor, P: torch.Tensor, out, tmp):
    """`_camera_rows` for one view on CPU, the same bits: P [3,4], points_h [4,n] contiguous."""
    if _cpu_gemm_is_exact():
        return torch.mm(P, points_h, out=out)
    return _camera_rows(points_h, _columns(P), out, tmp)


def project(points: torch.Tensor, K: torch.Tensor, w2c: torch.Tensor):
    """Project world points into T cameras.

    # points [N,3], K [T,3,3], w2c [T,4,4] -> uv [T,N,2] (continuous pixels), z [T,N]
    Points at z <= 0 get non-finite or meaningless uv; callers mask them with z > 0.
    """
    # One [3,4] matrix per view, P = K [R | t]: its third row is the camera z (K's last row is
    # [0, 0, 1]). The sums of `_camera_rows`, so a view's result does not depend on what is
    # read with it; on CPU one view at a time (a GEMM where it is exact).
    P = (K @ w2c[:, :3, :]).to(torch.float32)  # [T,3,4]
    pts = _homogeneous(points.to(torch.float32))  # [4,N]
    uvz = torch.empty((len(P), 3, len(points)), device=points.device)
    if points.device.type == "cpu":
        for t in range(len(P)):
            _camera_rows_cpu(pts, P[t], uvz[t], None)
    else:
        _camera_rows(pts, _columns(P), uvz, None)
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


# On CPU, the points of a view are z-buffered in passes of at most this many points: it bounds
# the scratch memory (about 40 bytes a point) and, measured, 1M points run ~20 % faster in
# passes of 128k than in one; the result does not depend on it.
CPU_POINTS_PER_PASS = 1 << 17
# The key of an empty cell on CPU: -1 (both words all ones, see `_render_index_cpu`): above the
# key of every point in front, below the key of every point behind.
_EMPTY_KEY = -1
_LITTLE_ENDIAN = sys.byteorder == "little"  # a key's two int32 words: index, then w bits
_FLOAT32_CELLS = 2**24  # padded grids below this size compute cell ids in float32 (exact)


def render_index(points: torch.Tensor, K: torch.Tensor, w2c: torch.Tensor, height: int, width: int):
    """Which point each cell of T views sees, and at what depth.

    # points [N,3], K [T,3,3] for an H x W grid, w2c [T,4,4] -> index [T,H,W], depth [T,H,W]
    Equal to `zbuffer(*project(points, K, w2c), height, width)`, bit for bit. On CPU by the
    compiled loop of `mirage.geometry.native` where a C compiler is found, else by
    `_render_index_cpu` (torch ops).
    """
    points = points.to(torch.float32)
    if points.device.type != "cpu":
        return zbuffer(*project(points, K, w2c), height, width)
    if len(points) >= MAX_POINTS:
        raise ValueError(f"the z-buffer takes at most {MAX_POINTS - 1} points, got {len(points)}")
    P = (K @ w2c[:, :3, :]).to(torch.float32)
    lib = _native_kernel()  # the compiled loop, ~3x faster; None without a C compiler
    if lib is not None and height * width < 2**31 - 1:
        return native.render_index_native(lib, points, P, height, width)
    return _render_index_cpu(points, P, height, width)


_NATIVE_PROBED: tuple = (None, False)  # (the compiled library probed, whether it passed)


def _native_kernel():
    """`native.kernel()` once it has given `zbuffer(*project(...))`'s bits on a probe (run once):
    random points with exact depth ties, points behind, at z = 0 and non-finite ones. A
    compiler that fuses or reorders despite the flags fails it, and the torch ops are used."""
    global _NATIVE_PROBED
    lib = native.kernel()
    if lib is None or _NATIVE_PROBED[0] is lib:
        return lib if lib is not None and _NATIVE_PROBED[1] else None
    gen = torch.Generator().manual_seed(0)
    pts = torch.randn(3000, 3, generator=gen) * torch.tensor([1.0, 1.0, 2.0])
    pts[1000:1500] = pts[:500]  # duplicates: equal z in every view, the smaller index wins
    pts[1500:1600, 2] = 0.0  # z = 0 in the w2c = I view
    pts[1600:1610] = torch.tensor([[float("inf"), 0, 1], [0, float("nan"), 1]]).repeat(5, 1)
    K = torch.tensor([[20.0, 0, 9.3], [0, 24.0, 6.1], [0, 0, 1]]).expand(3, 3, 3)
    w2c = torch.eye(4).repeat(3, 1, 1)
    w2c[1, :3, :3] = torch.linalg.qr(torch.randn(3, 3, generator=gen))[0]
    w2c[2, :3, 3] = torch.tensor([0.3, -0.2, 0.5])
    want = zbuffer(*project(pts, K, w2c), 13, 19)
    got = native.render_index_native(lib, pts, (K @ w2c[:, :3, :]).float(), 13, 19)
    _NATIVE_PROBED = (lib, torch.equal(want[0], got[0]) and torch.equal(want[1], got[1]))
    return lib if _NATIVE_PROBED[1] else None


def _z_stays_finite(points: torch.Tensor, P: torch.Tensor) -> list[bool]:
    """Per view: whether no point's z can overflow to inf or be NaN.  # [N,3], [T,3,4] -> [T]"""
    if len(points) == 0:
        return [True] * len(P)
    lo, hi = points.aminmax()  # NaN or inf in a coordinate makes the bound non-finite
    bound = max(-float(lo), float(hi))
    # |z| <= sum |P_i| * max |p|: below this, z cannot overflow to inf
    return (P[:, 2, :3].abs().sum(1) * bound + P[:, 2, 3].abs() < 1e37).tolist()


def _render_index_cpu(points: torch.Tensor, P: torch.Tensor, height: int, width: int):
    """`render_index` on CPU: one view at a time, a few in-place passes over the points.

    The same rule as `zbuffer`, reached with fewer and cheaper passes (profiled: boolean masks,
    `torch.where` and int64 arithmetic each cost several float passes, a strided GEMM ~3x a
    contiguous one; the time goes to memory traffic, so every pass saved counts):
    - x, y, z of a view in one GEMM on [X; Y; Z; 1] where it is exact (`_camera_rows_cpu`), with
      P negated: it gives -x, -y and w = -z exactly (IEEE rounding is symmetric; only the sign
      of an exact zero can differ, which moves no point), and u = -x / w, v = -y / w are the
      very quotients `project` computes;
    - the 64-bit key is w's float bits above, the point index below (two int32 words of one
      buffer whose low words hold the indices once for all views: little-endian layout). Read as
      int64, the key of a point in front (w < 0) is negative and grows with z, that of a point
      behind (w > 0, or +0) is positive, and an empty cell holds -1 in between: so amin keeps
      the nearest point in front and a point behind never shows, with no clamp of z and no mask;
    - the grid is padded by one cell on every side; u, v are clamped to [-1, W] / [-1, H] and
      floored, and a NaN cell id (0 / 0, inf / inf) goes to padded cell 0, so a point outside
      the frame, or one with z = 0, lands in the border;
    - where z could be infinite or NaN (`_z_stays_finite`), w is replaced by NaN there first,
      so the quotients are NaN and the point lands in the border;
    - the cell index is computed in float32 (exact while the padded grid has < 2**24 cells,
      float64 above) and converted through int32 (faster than float32 to int64 in one step);
    - a view's points are taken in passes of `CPU_POINTS_PER_PASS` (amin does not care).
    """
    T, N = len(P), len(points)
    H, W = height, width
    Wp = W + 2
    padded = (H + 2) * Wp
    wide = padded >= _FLOAT32_CELLS  # cell ids in float64, converted to int64 directly
    best = torch.full((T, padded), _EMPTY_KEY, dtype=torch.int64)
    rows = best.unbind(0)
    P_neg = -P  # rows give -x, -y, w = -z
    pts = _homogeneous(points)  # [4,N]
    finite = _z_stays_finite(points, P)
    chunk = max(1, min(N, CPU_POINTS_PER_PASS))
    little = _LITTLE_ENDIAN
    xyw, tmp, q = torch.empty(3, chunk), torch.empty(3, chunk), torch.empty(chunk)
    slot_f = torch.empty(chunk, dtype=torch.float64 if wide else torch.float32)
    slot32, slot = torch.empty(chunk, dtype=torch.int32), torch.empty(chunk, dtype=torch.int64)
    words = torch.empty(chunk, 2, dtype=torch.int32)  # [:, 0] point index, [:, 1] w bits
    for s in range(0, N, chunk):
        n = min(chunk, N - s)
        c_pts = pts[:, s : s + n].contiguous()
        c_xyw, c_tmp, c_sf, c_slot = xyw[:, :n], tmp[:, :n], slot_f[:n], slot[:n]
        xy, (u, v) = c_xyw[:2], c_xyw[:2]
        c_words = words[:n]
        c_words[:, 0] = torch.arange(s, s + n, dtype=torch.int64).to(torch.int32)
        w_word, key = c_words[:, 1], c_words.view(torch.int64).view(n)
        ids = None if little else torch.arange(s, s + n, dtype=torch.int64)
        u_s, v_s = (torch.empty_like(c_sf), torch.empty_like(c_sf)) if wide else (u, v)
        for t in range(T):
            _camera_rows_cpu(c_pts, P_neg[t], c_xyw, c_tmp)  # -x, -y, w, exactly
            w = c_xyw[2]
            if not finite[t]:  # w + (w - w) is w where finite and NaN where not
                w = torch.sub(w, w, out=q[:n]).add_(c_xyw[2])
            xy.div_(w)  # u, v (`project`'s quotients); inf or NaN where w is 0 or NaN
            u.clamp_(-1.0, float(W))  # +-inf to the border; NaN stays NaN (caught below)
            v.clamp_(-1.0, float(H))
            xy.floor_()
            if wide:
                u_s.copy_(u), v_s.copy_(v)
            # padded cell (v + 1) * (W + 2) + (u + 1); NaN in u or v: padded cell 0, a corner
            torch.add(u_s, v_s, alpha=Wp, out=c_sf).add_(Wp + 1).nan_to_num_(nan=0.0)
            if wide:
                c_slot.copy_(c_sf)
            else:
                c_slot.copy_(slot32[:n].copy_(c_sf))
            if little:
                w_word.copy_(w.view(torch.int32))
            else:
                key = (w.view(torch.int32).to(torch.int64) << 32) | ids
            rows[t].scatter_reduce_(0, c_slot, key, reduce="amin", include_self=True)
    return _index_and_depth(best, T, H, W, little and N < 2**31)


def _index_and_depth(best: torch.Tensor, T: int, H: int, W: int, by_words: bool):
    """The point index and z-depth of each cell from the keys of `_render_index_cpu`.

    # best [T,(H+2)(W+2)] int64 keys -> index [T,H,W] (EMPTY where empty), depth [T,H,W]
    """
    if by_words:  # the words of a key are the index (-1: EMPTY) and w bits (NaN if empty)
        words = best.view(torch.int32).view(T, H + 2, W + 2, 2)[:, 1:-1, 1:-1]
        index = words[..., 0].to(torch.int64)
        depth = words[..., 1].contiguous().view(torch.float32).neg_().nan_to_num_(nan=0.0)
        return index, depth
    best = best.view(T, H + 2, W + 2)[:, 1:-1, 1:-1]
    hit = best != _EMPTY_KEY
    index = torch.where(hit, best & 0xFFFFFFFF, EMPTY)
    depth = torch.where(hit, -(best >> 32).to(torch.int32).view(torch.float32), 0.0)
    return index, depth
