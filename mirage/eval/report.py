"""Result files of an evaluation: atomic CSV / JSON / PNG writes and contact sheets.

Unavailable metrics (None) are written as "n/a" in CSV and null in JSON, never as a number.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import torch

from mirage.atomic import atomic_path

NA = "n/a"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def _plain(value):
    """JSON-safe copy: tensors -> lists, non-finite floats -> their string ("inf", "nan")."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | Path, data: dict) -> Path:
    """Write `data` as indented, strictly valid JSON (no NaN/Infinity tokens), atomically."""
    path = Path(path)
    text = json.dumps(_plain(data), indent=2, allow_nan=False) + "\n"
    _atomic_write_bytes(path, text.encode("utf-8"))
    return path


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
    _atomic_write_bytes(path, buf.getvalue().encode("utf-8"))
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


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a [H,W,3] uint8 picture as PNG, atomically."""
    import imageio.v3 as iio

    path = Path(path)
    data = iio.imwrite("<bytes>", image, extension=".png")
    _atomic_write_bytes(path, data)
    return path
