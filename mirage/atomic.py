"""Atomic file writes for every layer: write a temporary file beside the target, then rename.

One writer per kind of file: `write_bytes`, `write_json` (strict JSON of plain values,
tensors and Paths), and `atomic_path` for writers that need a file name.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
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
