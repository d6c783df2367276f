"""What a model folder says about itself in its `mirage.json` (read without loading weights)."""

from __future__ import annotations

import json
from pathlib import Path


def model_defaults(model: Path) -> dict:
    """What a model folder was trained for (`mirage.json` "generation": height, width,
    chunk_frames, num_inference_steps); {} for a folder without one (e.g. plain Wan2.2)."""
    info = Path(model) / "mirage.json"
    if not info.is_file():
        return {}
    try:
        return dict(json.loads(info.read_text()).get("generation", {}))
    except (ValueError, AttributeError) as err:
        raise ValueError(f"{info} is not valid JSON: {err}") from None


def synthetic_supersample(model: Path) -> int:
    """Rays per pixel side (s x s) the model's synthetic training frames were rendered with
    (`mirage.json` "synthetic": {"supersample": s}; 1 without): synthetic first frames and
    ground truth are rendered the same way, so a model is shown the pictures it learnt."""
    info = Path(model) / "mirage.json"
    if not info.is_file():
        return 1
    try:
        return int(json.loads(info.read_text()).get("synthetic", {}).get("supersample", 1))
    except (ValueError, AttributeError) as err:
        raise ValueError(f'{info}: bad "synthetic" entry: {err}') from None
