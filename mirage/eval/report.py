"""Result files of an evaluation: atomic CSV writes and contact sheets.

Unavailable metrics (None) are written as "n/a" in CSV and null in JSON, never as a number.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from mirage.atomic import write_bytes

NA = "n/a"


def format_cell(value) -> str:
    if value is None:
        return NA
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_csv(path: str | Path, rows: list[dict], columns: list[str]) -> Path:
    """Write rows (dicts) with the given columns, None as "n/a", atomically."""
    path = Path(path)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_cell(row.get(c)) for c in columns])
    write_bytes(path, buf.getvalue().encode("utf-8"))
    return path


def to_uint8(images: torch.Tensor) -> np.ndarray:  # [N,3,H,W] in [0,1] -> [N,H,W,3] uint8
    images = (images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).numpy()


def contact_sheet(rows: list[torch.Tensor], pad: int = 2) -> np.ndarray:
    """Tile image rows ([N,3,H,W] each, equal shapes) into one [H',W',3] uint8 picture.

    Rows are separated (and framed) by `pad` white pixels.
    """
    if not rows:
        raise ValueError("`rows` must hold at least one row of images")
    N, C, H, W = rows[0].shape
    for i, r in enumerate(rows):
        if tuple(r.shape) != (N, C, H, W) or C != 3:
            raise ValueError(f"row {i} must have shape {(N, 3, H, W)}, got {tuple(r.shape)}")
    sheet = np.full((pad + len(rows) * (H + pad), pad + N * (W + pad), 3), 255, np.uint8)
    for i, r in enumerate(rows):
        for j, img in enumerate(to_uint8(r)):
            y, x = pad + i * (H + pad), pad + j * (W + pad)
            sheet[y : y + H, x : x + W] = img
    return sheet


# --- labelled pictures -----------------------------------------------------------------


def _label(images: torch.Tensor, text: str) -> torch.Tensor:
    """Draw `text` at the top left of images [T,3,H,W] in [0,1] (white on a dark band)."""
    import numpy as np
    from PIL import Image, ImageDraw

    arr = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = []
    for a in arr:
        im = Image.fromarray(np.ascontiguousarray(a))
        d = ImageDraw.Draw(im)
        box = d.textbbox((3, 2), text)
        d.rectangle((0, 0, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
        d.text((3, 2), text, fill=(255, 255, 255))
        out.append(torch.from_numpy(np.asarray(im).copy()))
    return torch.stack(out).permute(0, 3, 1, 2).float() / 255


def side_by_side(panels: dict[str, torch.Tensor], upscale: int) -> torch.Tensor:
    """Labelled panels [T,3,H,W] each, upscaled (nearest) and joined left to right."""
    cols = []
    for name, frames in panels.items():
        big = frames.repeat_interleave(upscale, 2).repeat_interleave(upscale, 3)
        cols.append(_label(big, name))
    return torch.cat(cols, dim=3)


def return_sheet(rows: dict[str, torch.Tensor], indices: list[int], scale: int = 2,
                 columns: list[str] | None = None):  # fmt: skip
    """Contact sheet [H',W',3] uint8 of frames `indices`, one labelled row per entry.

    `columns` labels each column on top (default: "f<index>", the frame index).
    """
    import numpy as np
    from PIL import Image, ImageDraw

    imgs = [r[indices].repeat_interleave(scale, 2).repeat_interleave(scale, 3)
            for r in rows.values()]  # fmt: skip
    sheet = contact_sheet(imgs)
    label_w, head, pad = 56, 14, 2
    canvas = np.full((sheet.shape[0] + head, sheet.shape[1] + label_w, 3), 255, np.uint8)
    canvas[head:, label_w:] = sheet
    im = Image.fromarray(canvas)
    d = ImageDraw.Draw(im)
    H, W = imgs[0].shape[2:]
    for i, name in enumerate(rows):
        d.text((4, head + pad + i * (H + pad) + H // 2 - 6), name, fill=(0, 0, 0))
    for j, text in enumerate(columns or [f"f{i}" for i in indices]):
        d.text((label_w + pad + j * (W + pad) + 2, 1), text, fill=(0, 0, 0))
    return np.asarray(im)
