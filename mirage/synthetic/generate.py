"""Seeded procedural scenes: rooms and outdoor plots with furniture, landmarks and movers.

Everything random is drawn from one `random.Random` per (kind, seed) and one per (kind, seed)
for the moving objects, so a seed gives the same scene bit for bit on any machine, and adding
movers keeps the rest of the scene.
"""

from __future__ import annotations

import colorsys
import math
import random

import torch

from mirage.synthetic.scene import KINDS, DynamicObject, Scene
from mirage.synthetic.textures import TEXTURES, Material


def _color(rng: random.Random, sat=(0.35, 0.9), val=(0.35, 0.95)) -> tuple:
    return colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))


def _rotation(rng: random.Random) -> tuple:
    """A seeded rotation (random unit quaternion) as a row-major 3x3 tuple."""
    q = [rng.gauss(0, 1) for _ in range(4)]
    n = math.sqrt(sum(x * x for x in q))
    w, x, y, z = (v / n for v in q)
    return (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip


_EYE = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def _material(rng, texture=None, scale=(0.25, 0.8), colors=None, rotate=True, **ckw) -> Material:
    texture = texture or rng.choice(TEXTURES)
    colors = colors or (_color(rng, **ckw), _color(rng, **ckw), _color(rng, **ckw))
    return Material(
        texture=texture,
        colors=tuple(tuple(float(c) for c in col) for col in colors),
        scale=rng.uniform(*scale),
        rotation=_rotation(rng) if rotate else _EYE,
        offset=tuple(rng.uniform(0.1, 0.9) for _ in range(3)),
    )


class _Builder:
    def __init__(self, rng):
        self.rng = rng
        self.materials, self.boxes, self.box_mat = [], [], []
        self.spheres, self.sphere_mat, self.cylinders, self.cylinder_mat = [], [], [], []

    def mat(self, m: Material) -> int:
        self.materials.append(m)
        return len(self.materials) - 1

    def box(self, lo, hi, m):
        self.boxes.append((tuple(lo), tuple(hi)))
        self.box_mat.append(m)

    def sphere(self, c, r, m):
        self.spheres.append((*c, r))
        self.sphere_mat.append(m)

    def cylinder(self, x, z, y0, y1, r, m):
        self.cylinders.append((x, z, y0, y1, r))
        self.cylinder_mat.append(m)

    def tensors(self):
        return dict(
            boxes=torch.tensor(self.boxes, dtype=torch.float32).reshape(-1, 2, 3),
            box_mat=self.box_mat,
            spheres=torch.tensor(self.spheres, dtype=torch.float32).reshape(-1, 4),
            sphere_mat=self.sphere_mat,
            cylinders=torch.tensor(self.cylinders, dtype=torch.float32).reshape(-1, 5),
            cylinder_mat=self.cylinder_mat,
            materials=self.materials,
        )


def _wall_frame(wall: int, lo, hi):
    """For room wall 0..3 (-x, +x, -z, +z): (axis, plane coordinate, inward sign, along axis)."""
    axis = 0 if wall < 2 else 2
    side = wall % 2
    plane = (lo, hi)[side][axis]
    inward = 1.0 if side == 0 else -1.0
    along = 2 if axis == 0 else 0
    return axis, plane, inward, along


def _slab(axis, plane, inward, along, a0, a1, y0, y1, thick):
    """lo, hi corners of a thin box on a wall: along-range [a0, a1], height [y0, y1]."""
    lo, hi = [0.0] * 3, [0.0] * 3
    n0, n1 = sorted((plane, plane + inward * thick))
    lo[axis], hi[axis] = n0, n1
    lo[along], hi[along] = a0, a1
    lo[1], hi[1] = y0, y1
    return lo, hi


def _indoor(rng: random.Random, b: _Builder):
    sx, sz, h = rng.uniform(5.0, 8.0), rng.uniform(5.0, 8.0), rng.uniform(2.6, 3.2)
    lo, hi = (-sx / 2, 0.0, -sz / 2), (sx / 2, h, sz / 2)
    surface = [
        b.mat(
            _material(
                rng, rng.choice(("noise", "stripes", "gradient", "dots", "checker")), (0.4, 1.2)
            )
        )
        for _ in range(2)
    ]
    surface.append(b.mat(_material(rng, rng.choice(("tiles", "checker", "rings")), (0.3, 0.7))))
    surface.append(
        b.mat(
            _material(rng, rng.choice(("noise", "tiles", "gradient")), (0.5, 1.5), val=(0.6, 1.0))
        )
    )
    surface += [
        b.mat(
            _material(
                rng, rng.choice(("noise", "stripes", "gradient", "dots", "checker")), (0.4, 1.2)
            )
        )
        for _ in range(2)
    ]
    landmarks = []
    kinds = ["door", "window"] + [rng.choice(("painting", "painting", "window")) for _ in range(4)]
    rng.shuffle(kinds)
    walls = [0, 1, 2, 3, 0, 1, 2, 3]
    rng.shuffle(walls)
    used = {w: [] for w in range(4)}
    for kind, wall in zip(kinds, walls, strict=False):
        axis, plane, inward, along = _wall_frame(wall, lo, hi)
        half_len = (hi[along] - lo[along]) / 2
        wid = {"door": 0.9, "window": rng.uniform(0.9, 1.4), "painting": rng.uniform(0.6, 1.2)}[
            kind
        ]
        for _ in range(20):
            c = rng.uniform(-half_len + wid / 2 + 0.3, half_len - wid / 2 - 0.3)
            if all(abs(c - o) > (wid + w2) / 2 + 0.2 for o, w2 in used[wall]):
                break
        else:
            continue
        used[wall].append((c, wid))
        a0, a1 = c - wid / 2, c + wid / 2
        if kind == "door":
            m = b.mat(_material(rng, "stripes", (0.1, 0.3), val=(0.3, 0.7), rotate=False))
            b.box(*_slab(axis, plane, inward, along, a0, a1, 0.0, 2.05, 0.04), m)
            knob = [0.0, 1.0, 0.0]
            knob[axis], knob[along] = plane + inward * 0.08, a1 - 0.12
            b.sphere(knob, 0.04, b.mat(_material(rng, "noise", (0.05, 0.1), val=(0.7, 1.0))))
            centre = [0.0, 1.1, 0.0]
        else:
            y0 = rng.uniform(0.9, 1.2)
            ht = rng.uniform(0.5, 0.9) if kind == "painting" else rng.uniform(0.8, 1.1)
            frame = b.mat(_material(rng, "noise", (0.2, 0.4), val=(0.1, 0.5)))
            b.box(
                *_slab(
                    axis,
                    plane,
                    inward,
                    along,
                    a0 - 0.06,
                    a1 + 0.06,
                    y0 - 0.06,
                    y0 + ht + 0.06,
                    0.03,
                ),
                frame,
            )
            if kind == "window":
                colors = ((0.85, 0.93, 1.0), (0.55, 0.75, 0.95), (0.15, 0.15, 0.18))
                m = b.mat(_material(rng, "tiles", (0.3, 0.45), colors=colors, rotate=False))
            else:
                m = b.mat(
                    _material(
                        rng,
                        rng.choice(("rings", "noise", "stripes", "dots", "checker")),
                        (0.08, 0.3),
                        sat=(0.6, 1.0),
                    )
                )
            b.box(*_slab(axis, plane, inward, along, a0, a1, y0, y0 + ht, 0.045), m)
            centre = [0.0, y0 + ht / 2, 0.0]
        centre[axis], centre[along] = plane + inward * 0.05, (a0 + a1) / 2
        landmarks.append((kind, tuple(centre)))
    # Furniture along the walls, spheres on top of some, and pillars or stools.
    for _ in range(rng.randint(3, 5)):
        wall = rng.randrange(4)
        axis, plane, inward, along = _wall_frame(wall, lo, hi)
        half_len = (hi[along] - lo[along]) / 2
        w, d, ht = rng.uniform(0.5, 1.3), rng.uniform(0.4, 0.8), rng.uniform(0.4, 1.1)
        c = rng.uniform(-half_len + w / 2 + 0.1, half_len - w / 2 - 0.1)
        gap = rng.uniform(0.05, 0.3)
        blo, bhi = _slab(
            axis, plane + inward * gap, inward, along, c - w / 2, c + w / 2, 0.0, ht, d
        )
        b.box(blo, bhi, b.mat(_material(rng, scale=(0.15, 0.5))))
        if rng.random() < 0.6:
            r = rng.uniform(0.1, 0.25)
            top = [(blo[0] + bhi[0]) / 2, ht + r, (blo[2] + bhi[2]) / 2]
            b.sphere(top, r, b.mat(_material(rng, scale=(0.08, 0.2), sat=(0.6, 1.0))))
    for _ in range(rng.randint(1, 3)):
        cx = rng.choice((-1, 1)) * (sx / 2 - rng.uniform(0.4, 0.9))
        cz = rng.choice((-1, 1)) * (sz / 2 - rng.uniform(0.4, 0.9))
        tall = rng.random() < 0.5
        r = rng.uniform(0.12, 0.3)
        b.cylinder(
            cx,
            cz,
            0.0,
            h if tall else rng.uniform(0.4, 0.8),
            r,
            b.mat(_material(rng, scale=(0.1, 0.4))),
        )
    margin = 1.4
    bounds = ((lo[0] + margin, 1.2, lo[2] + margin), (hi[0] - margin, 2.0, hi[2] - margin))
    return (lo, hi), surface, landmarks, bounds


def _outdoor(rng: random.Random, b: _Builder):
    surface = [
        b.mat(_material(rng, rng.choice(("noise", "tiles", "checker")), (0.5, 1.5), rotate=False))
    ]
    landmarks = []
    n = rng.randint(7, 11)
    for i in range(n):
        ang = 2 * math.pi * (i + rng.uniform(-0.3, 0.3)) / n
        dist = rng.uniform(5.5, 11.0)
        x, z = dist * math.cos(ang), dist * math.sin(ang)
        kind = rng.choice(("building", "tree", "ball", "crate"))
        if kind == "building":
            w, d, ht = rng.uniform(1.5, 3.0), rng.uniform(1.5, 3.0), rng.uniform(2.0, 6.0)
            b.box(
                (x - w / 2, 0.0, z - d / 2),
                (x + w / 2, ht, z + d / 2),
                b.mat(_material(rng, scale=(0.3, 1.0))),
            )
            landmarks.append((kind, (x, min(ht / 2, 1.5), z)))
        elif kind == "tree":
            ht, r = rng.uniform(1.5, 3.0), rng.uniform(0.15, 0.3)
            b.cylinder(
                x, z, 0.0, ht, r, b.mat(_material(rng, "stripes", (0.1, 0.3), val=(0.2, 0.5)))
            )
            crown = rng.uniform(0.7, 1.4)
            b.sphere((x, ht + crown * 0.7, z), crown, b.mat(_material(rng, "noise", (0.2, 0.5))))
            landmarks.append((kind, (x, ht, z)))
        elif kind == "ball":
            r = rng.uniform(0.4, 1.0)
            b.sphere((x, r, z), r, b.mat(_material(rng, scale=(0.15, 0.5), sat=(0.6, 1.0))))
            landmarks.append((kind, (x, r, z)))
        else:
            s = rng.uniform(0.4, 1.0)
            b.box(
                (x - s, 0.0, z - s), (x + s, 2 * s, z + s), b.mat(_material(rng, scale=(0.2, 0.6)))
            )
            landmarks.append((kind, (x, s, z)))
    bounds = ((-3.0, 1.2, -3.0), (3.0, 2.0, 3.0))
    return None, surface, landmarks, bounds


def _dynamic(rng: random.Random, b: _Builder, bounds, kind: str) -> DynamicObject:
    shape = rng.choice(("sphere", "box"))
    size = rng.uniform(0.15, 0.3)
    y = rng.uniform(size, 0.8 if kind == "indoor" else 1.0)
    m = b.mat(
        _material(
            rng,
            rng.choice(("checker", "stripes", "dots")),
            (0.1, 0.25),
            sat=(0.8, 1.0),
            val=(0.7, 1.0),
        )
    )
    lo, hi = bounds
    if rng.random() < 0.5:
        cx, cz = rng.uniform(lo[0], hi[0]) * 0.5, rng.uniform(lo[2], hi[2]) * 0.5
        r = rng.uniform(0.6, 1.2)
        omega = rng.choice((-1, 1)) * 2 * math.pi / rng.uniform(40, 120)
        params = (cx, cz, r, omega, rng.uniform(0, 2 * math.pi), y)
        return DynamicObject(shape, size, m, "circle", params)
    a = (rng.uniform(lo[0], hi[0]), y, rng.uniform(lo[2], hi[2]))
    b_ = (rng.uniform(lo[0], hi[0]), y, rng.uniform(lo[2], hi[2]))
    if math.dist(a, b_) < 0.5:
        b_ = (a[0] + 0.8, y, a[2])
    return DynamicObject(shape, size, m, "line", (*a, *b_, rng.uniform(0.02, 0.05)))


def make_scene(seed: int, kind: str = "indoor", num_dynamic: int = 0) -> Scene:
    """A procedural scene, the same bit for bit for the same (seed, kind, num_dynamic).

    indoor: a room with distinct floor/wall/ceiling textures, doors, windows and paintings
    on the walls, furniture boxes, spheres and cylinders. outdoor: a textured ground plane,
    buildings, trees, balls and crates around the free region, and a sky at infinity.
    `num_dynamic` moving spheres/cubes follow seeded circular or back-and-forth paths.
    """
    if int(seed) != seed:
        raise ValueError(f"`seed` must be an integer, got {seed!r}")
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}")
    if int(num_dynamic) != num_dynamic or num_dynamic < 0:
        raise ValueError(f"`num_dynamic` must be a non-negative integer, got {num_dynamic!r}")
    rng = random.Random(f"mirage-{kind}-{int(seed)}")
    b = _Builder(rng)
    room, surface, landmarks, bounds = (_indoor if kind == "indoor" else _outdoor)(rng, b)
    drng = random.Random(f"mirage-dynamic-{kind}-{int(seed)}")  # adding movers keeps the rest
    dynamic = [_dynamic(drng, b, bounds, kind) for _ in range(int(num_dynamic))]
    lights = (
        tuple(_unit([rng.uniform(-1, 1), 1.0, rng.uniform(-1, 1)])),
        tuple(_unit([rng.uniform(-1, 1), 0.3, rng.uniform(-1, 1)])),
    )
    return Scene(
        seed=int(seed),
        kind=kind,
        room=room,
        surface_mat=surface,
        dynamic=dynamic,
        landmarks=landmarks,
        lights=lights,
        bounds=bounds,
        **b.tensors(),
    )


def _unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]
