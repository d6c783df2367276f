"""Charts as PNG with Pillow (an imageio dependency), so plots need no matplotlib.

`bar_panels` draws side-by-side panels, one per quantity, each with one group of bars per x
value and one bar per series, a y axis from 0 with three labelled ticks, and a legend.
`line_plot` draws series against x with dashed vertical marks (e.g. the loop's turnaround).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

COLORS = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
    (148, 103, 189), (140, 86, 75), (127, 127, 127),
)  # one per series  # fmt: skip


@dataclass(frozen=True)
class Panel:
    title: str  # e.g. "read seconds per frame"
    x_label: str  # e.g. "chunks"
    x: Sequence  # one group of bars per entry
    series: dict  # name -> values (len(x) each), drawn in this order


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.3g}"
    return f"{v:.2g}"


def _panel(draw, font, box, panel: Panel) -> None:
    x0, y0, x1, y1 = box
    left, bottom, top = x0 + 60, y1 - 40, y0 + 30
    right = x1 - 15
    draw.text((x0 + 10, y0 + 6), panel.title, fill=(0, 0, 0), font=font)
    values = np.asarray([list(v) for v in panel.series.values()], dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(panel.x):
        raise ValueError(f"every series of panel {panel.title!r} needs {len(panel.x)} values")
    vmax = float(np.nanmax(values)) if values.size and np.nanmax(values) > 0 else 1.0
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=(0, 0, 0), width=1)
    for frac in (0.0, 0.5, 1.0):  # ticks and light grid lines
        y = bottom - frac * (bottom - top)
        draw.line([(left - 4, y), (left, y)], fill=(0, 0, 0))
        if frac > 0:
            draw.line([(left + 1, y), (right, y)], fill=(220, 220, 220))
        draw.text((x0 + 4, y - 6), _fmt(frac * vmax), fill=(0, 0, 0), font=font)
    groups, per = len(panel.x), len(panel.series)
    slot = (right - left) / max(groups, 1)
    bar = slot * 0.8 / max(per, 1)
    for g, label in enumerate(panel.x):
        gx = left + g * slot + slot * 0.1
        for s, vals in enumerate(values):
            v = vals[g]
            if not np.isfinite(v):
                continue
            h = (v / vmax) * (bottom - top)
            bx = gx + s * bar
            draw.rectangle([bx, bottom - h, bx + bar - 1, bottom], fill=COLORS[s % len(COLORS)])
        cx = left + g * slot + slot / 2 - 4
        draw.text((cx, bottom + 4), str(label), fill=(0, 0, 0), font=font)
    draw.text(((left + right) / 2 - 15, bottom + 20), panel.x_label, fill=(0, 0, 0), font=font)
    for s, name in enumerate(panel.series):  # legend, top right, above the plot area
        ly = y0 + 2 + 14 * s
        draw.rectangle([right - 150, ly, right - 140, ly + 10], fill=COLORS[s % len(COLORS)])
        draw.text((right - 135, ly - 2), str(name), fill=(0, 0, 0), font=font)


def bar_panels(panels: Sequence[Panel], title: str = "", panel_size=(520, 360)) -> np.ndarray:
    """Draw `panels` side by side under `title`; returns a [H,W,3] uint8 picture."""
    from PIL import Image, ImageDraw, ImageFont

    if not panels:
        raise ValueError("`panels` must hold at least one Panel")
    pw, ph = panel_size
    head = 28 if title else 0
    img = Image.new("RGB", (pw * len(panels), ph + head), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    if title:
        draw.text((10, 8), title, fill=(0, 0, 0), font=font)
    for i, panel in enumerate(panels):
        _panel(draw, font, (i * pw, head, (i + 1) * pw, head + ph), panel)
    return np.asarray(img, dtype=np.uint8).copy()


def line_plot(x: Sequence, series: dict, marks: dict | None = None, title: str = "",
              y_label: str = "", size=(640, 360)) -> np.ndarray:  # fmt: skip
    """Lines of `series` (name -> values over `x`), horizontal dotted lines for constant
    references given as single numbers, and vertical `marks` (label -> x); [H,W,3] uint8."""
    from PIL import Image, ImageDraw, ImageFont

    W, H = size
    left, right, top, bottom = 48, 120, 26, 30
    img = Image.new("RGB", (W, H), (255, 255, 255))
    d, font = ImageDraw.Draw(img), ImageFont.load_default()
    values = [v for vs in series.values() for v in (vs if isinstance(vs, Sequence) else [vs])]
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1
    x0, x1 = min(x), max(x)

    def px(xv, yv):
        u = left + (xv - x0) / max(x1 - x0, 1e-9) * (W - left - right)
        return u, top + (hi - yv) / (hi - lo) * (H - top - bottom)

    d.text((8, 6), title, fill=(0, 0, 0), font=font)
    d.line([(left, top), (left, H - bottom), (W - right, H - bottom)], fill=(0, 0, 0))
    for yv in (lo, (lo + hi) / 2, hi):
        d.text((4, px(x0, yv)[1] - 6), _fmt(yv), fill=(0, 0, 0), font=font)
    d.text((left, H - bottom + 12), f"{y_label} over frame {x0}..{x1}", fill=(0, 0, 0), font=font)
    for label, xv in (marks or {}).items():
        u = px(xv, lo)[0]
        for y in range(top, H - bottom, 6):
            d.line([(u, y), (u, y + 3)], fill=(120, 120, 120))
        d.text((u + 3, top), label, fill=(90, 90, 90), font=font)
    for k, (name, vs) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        if isinstance(vs, Sequence):
            d.line([px(a, b) for a, b in zip(x, vs, strict=True)], fill=color, width=2)
        else:  # a constant reference (a baseline)
            (ua, v), (ub, _) = px(x0, vs), px(x1, vs)
            for u in range(int(ua), int(ub), 8):
                d.line([(u, v), (u + 4, v)], fill=color)
        d.text((W - right + 8, top + 14 * k), name, fill=color, font=font)
    return np.asarray(img, dtype=np.uint8).copy()
