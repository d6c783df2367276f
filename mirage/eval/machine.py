"""Describe the machine a benchmark ran on, and write benchmark rows next to that description."""

from __future__ import annotations

import csv
from pathlib import Path

from mirage.atomic import atomic_path, write_json
from mirage.machine import describe_machine

__all__ = ["describe_machine", "write_rows"]


def write_rows(rows: list[dict], path: Path, machine: dict) -> None:
    """Write rows as CSV at `path` and the machine as `<path>.machine.json`, both atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(rows[0].keys()) if rows else []
    with atomic_path(path, ".csv") as tmp, open(tmp, "w", newline="") as f:
        _write_csv(f, fields, rows)
    write_json(path.with_suffix(".machine.json"), machine)


def _write_csv(f, fields, rows):
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
