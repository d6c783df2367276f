"""What a model folder says about itself in its `mirage.json` (read without loading weights)."""

from __future__ import annotations

import json
from pathlib import Path


def _section(model: Path, name: str) -> dict:
    """`mirage.json`'s `name` entry; {} for a folder without the file or the entry."""
    info = Path(model) / "mirage.json"
    if not info.is_file():
        return {}
    try:
        section = json.loads(info.read_text()).get(name, {})
    except (ValueError, AttributeError) as err:
        raise ValueError(f"{info} is not valid JSON: {err}") from None
    if not isinstance(section, dict):
        raise ValueError(f'{info}: "{name}" must be an object, got {section!r}')
    return dict(section)


def model_defaults(model: Path) -> dict:
    """What a model folder was trained for (`mirage.json` "generation": height, width,
    chunk_frames, num_inference_steps, sky_distance); {} for a folder without one (e.g. plain
    Wan2.2)."""
    return _section(model, "generation")


def synthetic_supersample(model: Path) -> int:
    """Rays per pixel side (s x s) the model's synthetic training frames were rendered with
    (`mirage.json` "synthetic": {"supersample": s}; 1 without): synthetic first frames and
    ground truth are rendered the same way, so a model is shown the pictures it learnt."""
    return int(_section(model, "synthetic").get("supersample", 1))
