"""Option dicts of `mirage train` / `mirage preprocess` -> configs (None = keep the default)."""

from __future__ import annotations

from dataclasses import replace

from mirage.training.config import PRESETS, TrainConfig, tiny_stages
from mirage.training.preprocess import PreprocessConfig, tiny_preprocess

_TRAIN_NAMES = {
    "steps": "max_steps", "warmup": "warmup_steps", "ema": "ema_decay",
    "keep": "keep_checkpoints", "workers": "num_workers",
}  # fmt: skip


def _given(options: dict, skip: tuple[str, ...]) -> dict:
    return {k: v for k, v in options.items() if v is not None and k not in skip}


def train_configs(options: dict) -> list[TrainConfig]:
    """The stages to run: one TrainConfig, or the preset's list with the options applied."""
    preset = options.get("preset")
    given = _given(options, ("preset",))
    kw = {_TRAIN_NAMES.get(k, k): str(v) if k in ("data", "out") else v for k, v in given.items()}
    for k in ("side_branch", "lora"):
        if k in kw:
            kw[k] = str(kw[k])
    if preset is None:
        return [TrainConfig(**kw)]
    if preset not in PRESETS:
        raise ValueError(f"`preset` must be one of {PRESETS}, got {preset!r}")
    data, out = kw.pop("data"), kw.pop("out")
    if "stage" in kw:
        raise ValueError("`stage` cannot be combined with a preset (it runs its own stages)")
    stages = tiny_stages(data, out)
    return [replace(cfg, **kw) for cfg in stages]


def preprocess_config(options: dict) -> PreprocessConfig:
    from mirage.data.world import parse_size

    given = _given(options, ("preset", "size", "clips", "frames", "dynamic"))
    kw = {k: str(v) if k in ("out", "depth_dir", "masks_dir", "vae", "model") else v
          for k, v in given.items()}  # fmt: skip
    for src, dst in (("clips", "num_clips"), ("frames", "num_frames"), ("dynamic", "num_dynamic")):
        if options.get(src) is not None:
            kw[dst] = options[src]
    if options.get("size"):
        kw["height"], kw["width"] = parse_size(options["size"])
    preset = options.get("preset")
    if preset is None:
        return PreprocessConfig(**kw)
    if preset not in PRESETS:
        raise ValueError(f"`preset` must be one of {PRESETS}, got {preset!r}")
    return tiny_preprocess(**kw)
