"""Option dicts of `mirage train` / `mirage preprocess` -> configs (None = keep the default)."""

from __future__ import annotations

from dataclasses import replace

from mirage.training.config import PRESETS, TrainConfig, tiny_stages
from mirage.training.preprocess import PreprocessConfig, tiny_preprocess

_TRAIN_NAMES = {
    "steps": "max_steps", "warmup": "warmup_steps", "ema": "ema_decay",
    "keep": "keep_checkpoints", "workers": "num_workers",
}  # fmt: skip
_PREPROCESS_NAMES = {"clips": "num_clips", "frames": "num_frames", "dynamic": "num_dynamic"}
_PATHS = ("data", "out", "side_branch", "lora", "depth_dir", "masks_dir", "vae", "model")


def _config_kwargs(options: dict, names: dict[str, str], skip: tuple[str, ...]) -> dict:
    """Given options (not None, not in `skip`) renamed to config fields; paths as str."""
    return {
        names.get(k, k): str(v) if k in _PATHS else v
        for k, v in options.items()
        if v is not None and k not in skip
    }


def _check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise ValueError(f"`preset` must be one of {PRESETS}, got {preset!r}")


def train_configs(options: dict) -> list[TrainConfig]:
    """The stages to run: one TrainConfig, or the preset's list with the options applied."""
    preset = options.get("preset")
    kw = _config_kwargs(options, _TRAIN_NAMES, ("preset",))
    if preset is None:
        return [TrainConfig(**kw)]
    _check_preset(preset)
    # The preset chains its stages (stage 1 starts from stage 0's output): options that
    # choose a stage or its starting weights would cut that chain.
    chained = [k for k in ("stage", "transformer", "side_branch", "lora") if k in kw]
    if chained:
        raise ValueError(
            f"{', '.join(f'`{k}`' for k in chained)} cannot be combined with a preset "
            "(it runs its own stages, each starting from the one before)"
        )
    stages = tiny_stages(kw.pop("data"), kw.pop("out"))
    return [replace(cfg, **kw) for cfg in stages]


def preprocess_config(options: dict) -> PreprocessConfig:
    from mirage.data.world import parse_size

    kw = _config_kwargs(options, _PREPROCESS_NAMES, ("preset", "size"))
    if options.get("size"):
        kw["height"], kw["width"] = parse_size(options["size"])
    preset = options.get("preset")
    if preset is None:
        return PreprocessConfig(**kw)
    _check_preset(preset)
    return tiny_preprocess(**kw)
