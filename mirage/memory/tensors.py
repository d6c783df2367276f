"""Reading memory files: one place that turns a missing, truncated or foreign file into one line."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open


def _read(path: str | os.PathLike, read):
    """`read(f)` on the opened safetensors file; a missing or unreadable file in one line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no memory file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return read(f)
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err})") from None


def file_format(path: str | os.PathLike) -> str | None:
    """The `format` entry of a memory file's header (None when it has none)."""
    return _read(path, lambda f: (f.metadata() or {}).get("format"))


def load_tensors(path: str | os.PathLike, fmt: str, versions: tuple[str, ...]):
    """(metadata, tensors) of a safetensors memory file of format `fmt` and one of `versions`.

    Raises FileNotFoundError / ValueError naming the file and what is wrong with it.
    """

    def read(f):
        meta = f.metadata() or {}
        if meta.get("format") != fmt:
            raise ValueError(f"{path} is not a {fmt} file (format {meta.get('format')!r})")
        if meta.get("version") not in versions:
            raise ValueError(
                f"{path} has format version {meta.get('version')!r}; this Mirage reads "
                f"versions {', '.join(versions)}"
            )
        return meta, {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)

    return _read(path, read)


def check_finite(path, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse NaN / inf in any of `tensors` (a corrupt cache must not load)."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path} holds non-finite values in {sorted(bad)}")
