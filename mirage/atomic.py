"""Atomic file writes for every layer: write a temporary file beside the target, then rename.

One writer per kind of file: `write_bytes`, `write_json` (strict JSON of plain values,
tensors and Paths), and `atomic_path` for writers that need a file name.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp"):
    """Yield a temporary path beside `path`; on success it replaces `path` (mode 0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(path)


def _plain(value):
    """JSON-safe copy: tensors -> lists, Paths -> str, non-finite floats -> "inf" / "nan"."""
    if hasattr(value, "tolist") and not isinstance(value, list | tuple):  # tensors, arrays
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | Path, data, indent: int | None = 2) -> Path:
    """Write `data` as strictly valid JSON (no NaN/Infinity tokens), atomically."""
    text = json.dumps(_plain(data), indent=indent, allow_nan=False, default=str) + "\n"
    return write_bytes(path, text.encode("utf-8"))


def replace_dir(tmp: str | Path, final: str | Path) -> Path:
    """Rename the complete folder `tmp` to `final`, replacing an old `final` (the atomic step)."""
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return Path(final)


@contextlib.contextmanager
def atomic_dir(final: str | Path):
    """Yield an empty temporary folder beside `final`; on success it becomes `final`.

    A run's folder is then either complete or absent: an interruption leaves only the hidden
    temporary folder, which the next run into the same place removes.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_out_dir(out: str | Path, overwrite: bool = False) -> Path:
    """Refuse an output path that is a file, or a non-empty folder unless `overwrite`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"`out` must be a folder, but {out} is a file")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(
            f"`out` {out} is not empty; pass --overwrite to replace it, or choose a new folder"
        )
    return out
