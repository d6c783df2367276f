"""Solid procedural textures: the `Material` a surface carries and its colour at a point.

A material's colour depends on the 3D position only (no view dependence), so one world
point has one colour in every view; the ray-caster shades hits with `texture_color`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TEXTURES = ("checker", "stripes", "noise", "gradient", "rings", "tiles", "dots")


@dataclass(frozen=True)
class Material:
    """A solid (3D) procedural texture: the colour of a point depends on its position only.

    The point q = R @ (p - origin) / scale + offset is textured by `texture` with the three
    colours; `origin` is the object's centre for moving objects, so their texture moves along.
    """

    texture: str
    colors: tuple  # three RGB triples in [0, 1]
    scale: float  # metres per texture period
    rotation: tuple  # 3x3 row-major rotation of the texture axes
    offset: tuple  # 3 numbers, keeps texture cell edges off the axis-aligned planes


def _hash01(cells: torch.Tensor) -> torch.Tensor:  # [N,3] int64 -> [N] in [0, 1), exact
    h = cells[:, 0] * 73856093 ^ cells[:, 1] * 19349663 ^ cells[:, 2] * 83492791
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).to(torch.float32) / 65536.0


def lerp(a, b, s):  # [N,3], [N,3], [N] -> [N,3]
    return a + (b - a) * s[:, None]


def texture_color(kind: str, q: torch.Tensor, nq: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Colour [N,3] of texture `kind` at texture coordinates q [N,3], colours c [N,3,3].

    nq [N,3] is the surface normal in texture axes: patterns that live on a plane (stripes,
    gradients, tile grout, dots, rings) use the axes most in that plane, so a flat wall never
    shows a degenerate (constant) slice of a 3D pattern.
    """
    c0, c1, c2 = c[:, 0], c[:, 1], c[:, 2]
    an = nq.abs()
    in_plane = an.argmin(1, keepdim=True)  # the axis most within the surface
    normal_ax = an.argmax(1, keepdim=True)  # the axis most along the normal
    if kind == "checker":
        parity = q.floor().sum(1).remainder(2) > 0.5
        return torch.where(parity[:, None], c0, c1)
    if kind == "stripes":
        f = q.gather(1, in_plane)[:, 0].remainder(1.0)
        return torch.where((f < 0.45)[:, None], c0, torch.where((f < 0.8)[:, None], c1, c2))
    if kind == "noise":
        x, y, z = q.unbind(1)
        v = 0.5 + 0.25 * (
            torch.sin(2.3 * x + 1.7 * torch.sin(1.1 * y))
            + torch.sin(1.9 * z + 1.3 * torch.sin(0.7 * x + y))
        )
        return torch.where((v > 0.85)[:, None], c2, lerp(c0, c1, v))
    if kind == "gradient":
        s = (q.gather(1, in_plane)[:, 0] * 0.5).remainder(1.0) * 2
        return torch.where((s < 1)[:, None], lerp(c0, c1, s), lerp(c1, c2, s - 1))
    if kind == "rings":
        r2 = (q * q).sum(1) - q.gather(1, normal_ax)[:, 0] ** 2
        f = r2.clamp_min(0).sqrt().remainder(1.0)
        return torch.where((f < 0.5)[:, None], c0, torch.where((f < 0.85)[:, None], c1, c2))
    frac = q.remainder(1.0)
    if kind == "tiles":
        edge = torch.minimum(frac, 1 - frac)
        edge = edge.scatter(1, normal_ax, 1.0)  # no grout lines along the normal axis
        grout = edge.amin(1) < 0.05
        return torch.where(grout[:, None], c2, lerp(c0, c1, _hash01(q.floor().long())))
    # dots: discs around cell centres, measured in the two in-plane axes
    dd = (frac - 0.5) ** 2
    dd = dd.scatter(1, normal_ax, 0.0)
    return torch.where((dd.sum(1) < 0.09)[:, None], c1, c0)
