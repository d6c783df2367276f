"""The vectorised ray-caster: RGB, z-depth, dynamic and sky masks of a Scene for any Cameras.

One ray per pixel through the continuous pixel centre (j + 0.5, i + 0.5) for depth and
masks; RGB optionally averages s x s sub-pixel rays (`supersample`). Rays are built
with a camera-frame z component of exactly 1, so the ray parameter t of a hit *is* its
camera z-depth (not the ray length). Intersections are analytic (room box from inside,
ground plane, axis-aligned boxes by slabs, spheres, vertical capped cylinders), evaluated
for all primitives of a kind at once on a [P, N] grid, and the nearest hit wins. Shading is
view independent (solid procedural textures times a fixed two-light Lambert term), so one
world point has one colour in every view: that is what makes multi-view tests possible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mirage.geometry import Cameras, pixel_centers
from mirage.synthetic.textures import TEXTURES, lerp, texture_color

EPS = 1e-4  # metres: hits closer than this to the camera are ignored
INF = float("inf")
AMBIENT, KEY, FILL = 0.35, 0.45, 0.2  # shade = AMBIENT + KEY max(n.L1, 0) + FILL max(n.L2, 0)


@dataclass
class SceneRender:
    """What the ray-caster returns for T cameras of size H x W."""

    rgb: torch.Tensor  # [T,3,H,W] float32 in [0, 1]
    depth: torch.Tensor  # [T,H,W] camera z-depth, +inf for sky
    dynamic_mask: torch.Tensor  # [T,H,W] bool: a moving object is seen here
    sky_mask: torch.Tensor  # [T,H,W] bool: the ray hits nothing (outdoor sky)
    prim: torch.Tensor  # [T,H,W] int64 primitive id seen (-1 for sky)


class _Tables:
    """Per-scene lookup tables: primitive id -> material, material -> texture parameters."""

    def __init__(self, scene):
        mats = scene.materials
        self.tex = torch.tensor([TEXTURES.index(m.texture) for m in mats], dtype=torch.int64)
        self.colors = torch.tensor([m.colors for m in mats], dtype=torch.float32)  # [M,3,3]
        self.scale = torch.tensor([m.scale for m in mats], dtype=torch.float32)  # [M]
        self.rot = torch.tensor([m.rotation for m in mats], dtype=torch.float32).view(-1, 3, 3)
        self.offset = torch.tensor([m.offset for m in mats], dtype=torch.float32)  # [M,3]
        self.n_surf = len(scene.surface_mat)
        self.n_box, self.n_sph, self.n_cyl = (
            len(scene.boxes),
            len(scene.spheres),
            len(scene.cylinders),
        )
        self.box0 = self.n_surf
        self.sph0 = self.box0 + self.n_box
        self.cyl0 = self.sph0 + self.n_sph
        self.dyn0 = self.cyl0 + self.n_cyl
        dyn_mats = [d.material for d in scene.dynamic]
        prim_mat = (
            scene.surface_mat + scene.box_mat + scene.sphere_mat + scene.cylinder_mat + dyn_mats
        )
        self.prim_mat = torch.tensor(prim_mat, dtype=torch.int64)
        self.num_prims = len(prim_mat)
        dyn_ids = torch.arange(self.dyn0, self.num_prims)
        is_box = torch.tensor([d.shape == "box" for d in scene.dynamic], dtype=torch.bool)
        self.dyn_box_ids, self.dyn_sph_ids = dyn_ids[is_box], dyn_ids[~is_box]
        self.dyn_box_size = torch.tensor([d.size for d in scene.dynamic if d.shape == "box"])
        self.dyn_sph_size = torch.tensor([d.size for d in scene.dynamic if d.shape == "sphere"])
        self.box_ids = torch.arange(self.box0, self.sph0)
        self.sph_ids = torch.arange(self.sph0, self.cyl0)
        self.lights = torch.tensor(scene.lights, dtype=torch.float32)  # [2,3]
        self.sky = torch.tensor(scene.sky, dtype=torch.float32)  # [3,3]
        if scene.room is not None:
            self.room_lo = torch.tensor(scene.room[0], dtype=torch.float32)
            self.room_hi = torch.tensor(scene.room[1], dtype=torch.float32)
        # inward normals of the room faces (-x, +x, floor, ceiling, -z, +z) or the ground
        self.surf_normals = (
            torch.tensor(
                [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]],
                dtype=torch.float32,
            )
            if scene.room is not None
            else torch.tensor([[0.0, 1.0, 0.0]])
        )


@dataclass
class _Frame:
    """The geometry of one time step: static primitives plus the moving ones at that time."""

    boxes: torch.Tensor  # [B,2,3]
    box_ids: torch.Tensor  # [B]
    spheres: torch.Tensor  # [S,4]
    sph_ids: torch.Tensor  # [S]
    texmap: torch.Tensor  # [P,12] per primitive: q = A p + b as A's columns (9) then b (3)


def _frame(scene, tab: _Tables, centres: torch.Tensor) -> _Frame:  # centres [D,3]
    origins = torch.zeros(tab.num_prims, 3)
    boxes, spheres = scene.boxes, scene.spheres
    if len(centres):
        origins[tab.dyn0 :] = centres
        cb = centres[tab.dyn_box_ids - tab.dyn0]
        hb = tab.dyn_box_size[:, None]
        boxes = torch.cat([boxes, torch.stack([cb - hb, cb + hb], 1)])
        cs = centres[tab.dyn_sph_ids - tab.dyn0]
        spheres = torch.cat([spheres, torch.cat([cs, tab.dyn_sph_size[:, None]], 1)])
    # texture coordinates q = R (p - origin) / scale + offset, folded into one affine map
    m = tab.prim_mat
    A = tab.rot[m] / tab.scale[m][:, None, None]  # [P,3,3]
    b = tab.offset[m] - (A @ origins[:, :, None])[..., 0]
    texmap = torch.cat([A.transpose(1, 2).reshape(-1, 9), b], 1)
    return _Frame(
        boxes,
        torch.cat([tab.box_ids, tab.dyn_box_ids]),
        spheres,
        torch.cat([tab.sph_ids, tab.dyn_sph_ids]),
        texmap,
    )


def _aabbs(scene, tab: _Tables, fr: _Frame) -> torch.Tensor:  # -> [P-n_surf,2,3]
    """Axis-aligned bounds of every non-surface primitive, in primitive id order."""
    out = torch.zeros(tab.num_prims - tab.n_surf, 2, 3)
    out[fr.box_ids - tab.n_surf] = fr.boxes
    if len(fr.spheres):
        c, r = fr.spheres[:, :3], fr.spheres[:, 3:]
        out[fr.sph_ids - tab.n_surf] = torch.stack([c - r, c + r], 1)
    if tab.n_cyl:
        cy = scene.cylinders
        lo = torch.stack([cy[:, 0] - cy[:, 4], cy[:, 2], cy[:, 1] - cy[:, 4]], 1)
        hi = torch.stack([cy[:, 0] + cy[:, 4], cy[:, 3], cy[:, 1] + cy[:, 4]], 1)
        out[tab.cyl0 - tab.n_surf : tab.dyn0 - tab.n_surf] = torch.stack([lo, hi], 1)
    return out


_CORNERS = torch.tensor(
    [[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=torch.bool
)


def _rects(aabbs: torch.Tensor, K: torch.Tensor, w2c: torch.Tensor, H: int, W: int) -> list:
    """Pixel rectangles (v0, v1, u0, u1) that can see each box [P,2,3]; None = not at all.

    The projection of a box lies inside the bounding rectangle of its 8 projected corners when
    all of them are in front of the camera; a box reaching behind the camera gets the whole
    image, a box entirely behind it gets nothing. One pixel of margin absorbs rounding.
    """
    corners = torch.where(_CORNERS, aabbs[:, None, 1], aabbs[:, None, 0])  # [P,8,3]
    cam = corners @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[..., 2]
    zc = z.clamp_min(1e-6)
    u = K[0, 0] * cam[..., 0] / zc + K[0, 1] * cam[..., 1] / zc + K[0, 2]
    v = K[1, 1] * cam[..., 1] / zc + K[1, 2]
    front = (z > EPS).all(1)
    behind = (z <= EPS).all(1)
    u0 = (u.amin(1) - 1.5).ceil().clamp(0, W)
    u1 = (u.amax(1) + 0.5).floor().clamp(-1, W - 1) + 1
    v0 = (v.amin(1) - 1.5).ceil().clamp(0, H)
    v1 = (v.amax(1) + 0.5).floor().clamp(-1, H - 1) + 1
    full = torch.tensor([0, H, 0, W], dtype=torch.float32)
    box = torch.stack([v0, v1, u0, u1], 1)
    box = torch.where(front[:, None], box, full)
    out = []
    for rect, gone in zip(box.long().tolist(), behind.tolist(), strict=True):  # host sync: CPU
        empty = gone or rect[0] >= rect[1] or rect[2] >= rect[3]
        out.append(None if empty else rect)
    return out


def _hit_box(lo, hi, o, ix, iy, iz):  # floats, [h,w] inverse directions -> t [h,w]
    n = None
    f = None
    for a, i in ((0, ix), (1, iy), (2, iz)):
        t1, t2 = (lo[a] - o[a]) * i, (hi[a] - o[a]) * i
        lo_t, hi_t = torch.minimum(t1, t2), torch.maximum(t1, t2)
        n = lo_t if n is None else torch.maximum(n, lo_t)
        f = hi_t if f is None else torch.minimum(f, hi_t)
    return torch.where((n <= f) & (n > EPS), n, INF)


def _hit_sphere(c, r, o, dx, dy, dz, a):
    ox, oy, oz = o[0] - c[0], o[1] - c[1], o[2] - c[2]
    b = ox * dx + oy * dy + oz * dz
    cc = ox * ox + oy * oy + oz * oz - r * r
    disc = b * b - a * cc
    t = (-b - disc.clamp_min(0).sqrt()) / a
    return torch.where((disc >= 0) & (t > EPS), t, INF)


def _hit_cylinder(cyl, o, dx, dy, dz):  # cyl = (x, z, y0, y1, r), vertical, capped on top
    x, z, y0, y1, r = cyl
    ox, oz = o[0] - x, o[2] - z
    a = dx * dx + dz * dz
    b = ox * dx + oz * dz
    disc = b * b - a * (ox * ox + oz * oz - r * r)
    ts = (-b - disc.clamp_min(0).sqrt()) / a
    y = o[1] + ts * dy
    side = (disc >= 0) & (ts > EPS) & (y >= y0) & (y <= y1)
    tc = (y1 - o[1]) / dy
    xc, zc = ox + tc * dx, oz + tc * dz
    cap = (tc > EPS) & (xc * xc + zc * zc <= r * r)
    return torch.minimum(torch.where(side, ts, INF), torch.where(cap, tc, INF))


def _intersect(scene, tab, fr, o, d, K, w2c):
    """Nearest hit along rays o [3] + t d [H,W,3]: t [H,W] (inf on a miss), primitive id [H,W]."""
    H, W, _ = d.shape
    # 1. the room from inside (exit face of the box), or the ground plane: every pixel
    if scene.room is not None:
        bound = torch.where(d > 0, tab.room_hi, tab.room_lo)
        tt = torch.where(d == 0, INF, (bound - o) / d)
        t, axis = tt.min(-1)
        pid = 2 * axis + (d.gather(-1, axis[..., None])[..., 0] > 0)
        t = torch.where(t > EPS, t, INF)
    else:
        t = torch.where(d[..., 1] < 0, -o[1] / d[..., 1], INF)
        t = torch.where(t > EPS, t, INF)
        pid = torch.zeros(H, W, dtype=torch.int64)
    # 2. every other primitive, only on the pixels its projected bounding box covers
    dx, dy, dz = d.unbind(-1)
    ix, iy, iz = 1.0 / dx, 1.0 / dy, 1.0 / dz
    a = dx * dx + dy * dy + dz * dz
    ol = o.tolist()
    kinds = {}
    for row, k in enumerate(fr.box_ids.tolist()):
        kinds[k] = ("box", fr.boxes[row].tolist())
    for row, k in enumerate(fr.sph_ids.tolist()):
        kinds[k] = ("sphere", fr.spheres[row].tolist())
    for row, k in enumerate(range(tab.cyl0, tab.dyn0)):
        kinds[k] = ("cylinder", scene.cylinders[row].tolist())
    rects = _rects(_aabbs(scene, tab, fr), K, w2c, H, W)
    for k, rect in enumerate(rects, start=tab.n_surf):
        if rect is None:
            continue
        v0, v1, u0, u1 = rect
        win = (slice(v0, v1), slice(u0, u1))
        kind, prm = kinds[k]
        if kind == "box":
            tk = _hit_box(prm[0], prm[1], ol, ix[win], iy[win], iz[win])
        elif kind == "sphere":
            tk = _hit_sphere(prm[:3], prm[3], ol, dx[win], dy[win], dz[win], a[win])
        else:
            tk = _hit_cylinder(prm, ol, dx[win], dy[win], dz[win])
        closer = tk < t[win]
        t[win] = torch.where(closer, tk, t[win])
        pid[win] = torch.where(closer, k, pid[win])
    return t, torch.where(torch.isfinite(t), pid, -1)


def _normals(scene, tab: _Tables, fr: _Frame, p: torch.Tensor, pid: torch.Tensor):
    """Unit surface normals [N,3] at hit points p [N,3] of primitives pid [N] (all hits)."""
    n = torch.zeros_like(p)
    surf = pid < tab.n_surf
    n[surf] = tab.surf_normals[pid[surf]]
    # boxes (static and moving): the face whose slab the point lies on
    box_row = torch.full((tab.num_prims,), -1, dtype=torch.int64)
    box_row[fr.box_ids] = torch.arange(len(fr.box_ids))
    sel = (box_row[pid] >= 0).nonzero()[:, 0]
    if len(sel):
        bx = fr.boxes[box_row[pid[sel]]]
        rel = (p[sel] - (bx[:, 0] + bx[:, 1]) / 2) / ((bx[:, 1] - bx[:, 0]) / 2).clamp_min(1e-9)
        axis = rel.abs().argmax(1)
        nb = torch.zeros_like(rel)
        nb.scatter_(1, axis[:, None], rel.gather(1, axis[:, None]).sign())
        n[sel] = nb
    sph_row = torch.full((tab.num_prims,), -1, dtype=torch.int64)
    sph_row[fr.sph_ids] = torch.arange(len(fr.sph_ids))
    sel = (sph_row[pid] >= 0).nonzero()[:, 0]
    if len(sel):
        s = fr.spheres[sph_row[pid[sel]]]
        n[sel] = (p[sel] - s[:, :3]) / s[:, 3:]
    sel = ((pid >= tab.cyl0) & (pid < tab.dyn0)).nonzero()[:, 0]
    if len(sel):
        cy = scene.cylinders[pid[sel] - tab.cyl0]
        q = p[sel]
        rx, rz = q[:, 0] - cy[:, 0], q[:, 2] - cy[:, 1]
        rad = (rx * rx + rz * rz).sqrt()
        on_cap = (q[:, 1] - cy[:, 3]).abs() < (rad - cy[:, 4]).abs()
        side = torch.stack([rx, torch.zeros_like(rx), rz], 1) / rad.clamp_min(1e-9)[:, None]
        n[sel] = torch.where(on_cap[:, None], torch.tensor([0.0, 1.0, 0.0]), side)
    return n


def _shade_hits(scene, tab, fr, p, pid):  # [N,3], [N] (all hits) -> rgb [N,3]
    n = _normals(scene, tab, fr, p, pid)
    m = tab.prim_mat[pid]
    tm = fr.texmap[pid]  # [N,12]
    a0, a1, a2 = tm[:, 0:3], tm[:, 3:6], tm[:, 6:9]
    q = a0 * p[:, 0:1] + a1 * p[:, 1:2] + a2 * p[:, 2:3] + tm[:, 9:12]
    nq = a0 * n[:, 0:1] + a1 * n[:, 1:2] + a2 * n[:, 2:3]  # scaled normal: only |.| order used
    tex = tab.tex[m]
    rgb = torch.empty_like(p)
    for k, kind in enumerate(TEXTURES):
        sel = (tex == k).nonzero()[:, 0]
        if len(sel):
            rgb[sel] = texture_color(kind, q[sel], nq[sel], tab.colors[m[sel]])
    light = n @ tab.lights.T  # [N,2]
    shade = AMBIENT + KEY * light[:, 0].clamp_min(0) + FILL * light[:, 1].clamp_min(0)
    return rgb * shade[:, None]


def _sky(tab: _Tables, d: torch.Tensor) -> torch.Tensor:  # directions [N,3] -> rgb [N,3]
    dn = d / d.norm(dim=1, keepdim=True)
    up = dn[:, 1].clamp(0, 1)
    rgb = lerp(tab.sky[0].expand_as(dn), tab.sky[1].expand_as(dn), up.sqrt())
    h = up + 0.08  # clouds on a plane high above: coordinates by direction only
    px, pz = dn[:, 0] / h, dn[:, 2] / h
    cloud = 0.5 + 0.25 * (
        torch.sin(1.3 * px + 0.7 * torch.sin(2.1 * pz))
        + torch.sin(1.7 * pz + 0.5 * torch.sin(1.9 * px))
    )
    cloud = ((cloud - 0.55) / 0.25).clamp(0, 1) * (up > 0.02)
    rgb = lerp(rgb, torch.ones_like(rgb), 0.8 * cloud)
    sun = (dn @ tab.lights[0]) > 0.995
    return torch.where(sun[:, None], tab.sky[2], rgb)


def _rays(K: torch.Tensor, c2w: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """World directions [N,3] with camera-frame z = 1 through pixel points uv [N,2]."""
    y = (uv[:, 1] - K[1, 2]) / K[1, 1]
    x = (uv[:, 0] - K[0, 2] - K[0, 1] * y) / K[0, 0]
    return torch.stack([x, y, torch.ones_like(x)], 1) @ c2w[:3, :3].T


def _cast(scene, tab, fr, K, c2w, w2c, d: torch.Tensor, H: int, W: int):
    """Cast rays d [H*W,3] (one per pixel, within half a pixel of its centre, so the
    bounding-box culling of `_intersect` still holds): (rgb [N,3], t [N], pid [N])."""
    N = H * W
    o = c2w[:3, 3]
    t, pid = _intersect(scene, tab, fr, o, d.view(H, W, 3), K, w2c)
    t, pid = t.reshape(N), pid.reshape(N)
    hit = (pid >= 0).nonzero()[:, 0]
    if len(hit) == N:  # no sky: skip the scatter
        return _shade_hits(scene, tab, fr, o + t[:, None] * d, pid), t, pid
    out = torch.empty_like(d)
    out[hit] = _shade_hits(scene, tab, fr, o + t[hit, None] * d[hit], pid[hit])
    miss = (pid < 0).nonzero()[:, 0]
    out[miss] = _sky(tab, d[miss])
    return out, t, pid


def _subpixel_offsets(s: int) -> list[tuple[float, float]]:
    """(du, dv) from a pixel centre to the centres of its s x s sub-pixels: sub-pixel (a, b) of
    pixel (i, j) is centred at (j + (b + 0.5) / s, i + (a + 0.5) / s)."""
    steps = [(k + 0.5) / s - 0.5 for k in range(s)]
    return [(du, dv) for dv in steps for du in steps]


def _check_render_args(cameras, times, supersample):
    if not isinstance(cameras, Cameras):
        raise ValueError(
            f"`cameras` must be a mirage.geometry.Cameras, got {type(cameras).__name__}"
        )
    if isinstance(supersample, bool) or int(supersample) != supersample or supersample < 1:
        raise ValueError(f"`supersample` must be an integer >= 1, got {supersample!r}")
    T = len(cameras)
    if times is None:
        times = torch.arange(T, dtype=torch.float64)
    times = torch.as_tensor(times, dtype=torch.float64)
    if times.shape != (T,) or not torch.isfinite(times).all():
        raise ValueError(
            f"`times` must be a finite tensor of shape [{T}], got shape {tuple(times.shape)}"
        )
    return times


def render(
    scene,
    cameras: Cameras,
    times: torch.Tensor | None = None,
    progress: bool = False,
    supersample: int = 1,
) -> SceneRender:
    """Ray-cast `scene` for every camera.

    Args:
        scene: a `Scene` (read by its fields only, so this module need not import it).
        cameras: T cameras of one size H x W (K in pixels, continuous pixel convention).
        times: [T] time of each frame for the moving objects (default 0, 1, ..., T-1).
        progress: show a tqdm bar over frames.
        supersample: s >= 1. RGB is the box average of s x s rays through the centres of the
            pixel's sub-pixels (a camera integrates light over its pixel: anti-aliased edges
            and textures). Depth, masks and primitive ids always come from the one ray through
            the pixel centre, so they are exact and the same for every s.
    Returns:
        SceneRender with rgb [T,3,H,W], depth [T,H,W] (+inf for sky), dynamic_mask and
        sky_mask [T,H,W] bool, prim [T,H,W] primitive ids.
    """
    times = _check_render_args(cameras, times, supersample)
    T, H, W = len(cameras), cameras.height, cameras.width
    tab = _Tables(scene)  # built per call (under 1 ms), so edits to the scene show
    cameras = cameras.to("cpu")
    w2c = cameras.w2c  # [T,4,4], inverted once for all frames
    centres = scene.dynamic_positions(times).to(torch.float32)  # [D,T,3]
    uv = pixel_centers(H, W).reshape(-1, 2)  # [N,2]
    N = H * W
    rgb = torch.empty(T, N, 3)
    depth = torch.empty(T, N)
    prim = torch.empty(T, N, dtype=torch.int64)
    frames = range(T)
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, desc="render", unit="frame")
    for ti in frames:
        K, c2w = cameras.K[ti], cameras.c2w[ti]
        fr = _frame(scene, tab, centres[:, ti])
        args = (scene, tab, fr, K, c2w, w2c[ti])
        out, t, pid = _cast(*args, _rays(K, c2w, uv), H, W)
        if supersample > 1:
            out = torch.zeros_like(out)
            for du, dv in _subpixel_offsets(int(supersample)):
                sub = uv + torch.tensor([du, dv])
                out += _cast(*args, _rays(K, c2w, sub), H, W)[0].clamp_(0, 1)
            out /= supersample**2
        rgb[ti], depth[ti], prim[ti] = out, t, pid
    rgb = rgb.clamp_(0, 1).view(T, H, W, 3).permute(0, 3, 1, 2).contiguous()
    prim = prim.view(T, H, W)
    return SceneRender(
        rgb=rgb,
        depth=depth.view(T, H, W),
        dynamic_mask=prim >= tab.dyn0,
        sky_mask=prim < 0,
        prim=prim,
    )
