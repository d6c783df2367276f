"""Describe the machine a benchmark ran on, and write benchmark rows next to that description."""

from __future__ import annotations

import csv
import os
import platform
from pathlib import Path

import torch

from mirage.atomic import atomic_path, write_json


def describe_machine(device: str = "cpu") -> dict:
    """Hardware and software a figure depends on: CPU model and cores, GPU, torch, CUDA."""
    info = {
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        info["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
        info["cuda"] = torch.version.cuda
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
