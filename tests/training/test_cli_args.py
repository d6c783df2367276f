"""CLI option dicts -> configs: renames, paths as str, presets and their refusals."""

from pathlib import Path

import pytest

from mirage.training.cli_args import preprocess_config, train_configs


def _train_opts(**given):
    names = ("data", "out", "preset", "stage", "steps", "warmup", "ema", "keep", "workers", "lora")
    return {n: given.get(n) for n in names}


def test_train_options_renamed_and_paths_str():
    (cfg,) = train_configs(
        _train_opts(data=Path("d"), out=Path("o"), stage=2, steps=7, warmup=3, ema=0.5, keep=4,
                    workers=2, lora=Path("l.safetensors"))
    )  # fmt: skip
    assert (cfg.data, cfg.out, cfg.lora) == ("d", "o", "l.safetensors")
    assert (cfg.stage, cfg.max_steps, cfg.warmup_steps) == (2, 7, 3)
    assert (cfg.ema_decay, cfg.keep_checkpoints, cfg.num_workers) == (0.5, 4, 2)
    assert cfg.lr == 1e-5  # not given: the TrainConfig default


def test_train_preset_runs_two_stages_with_overrides():
    s0, s1 = train_configs(_train_opts(data=Path("d"), out=Path("o"), preset="tiny", steps=5))
    assert (s0.stage, s0.out, s0.max_steps) == (0, "o/stage0", 5)
    assert (s1.stage, s1.out, s1.max_steps, s1.transformer) == (1, "o/stage1", 5, "o/stage0")
    with pytest.raises(ValueError, match="stage"):
        train_configs(_train_opts(data="d", out="o", preset="tiny", stage=1))
    with pytest.raises(ValueError, match="preset"):
        train_configs(_train_opts(data="d", out="o", preset="huge"))
    with pytest.raises(ValueError, match="`lora` cannot be combined with a preset"):
        train_configs(_train_opts(data=Path("d"), out=Path("o"), preset="tiny", lora=Path("l")))


def test_preprocess_options_renamed_and_size_parsed():
    opts = {"out": Path("s"), "preset": None, "clips": 3, "frames": 17, "dynamic": 0,
            "size": "32x48", "vae": Path("v"), "seed": None}  # fmt: skip
    cfg = preprocess_config(opts)
    assert (cfg.out, cfg.vae, cfg.num_clips, cfg.num_frames, cfg.num_dynamic) == (
        "s",
        "v",
        3,
        17,
        0,
    )
    assert (cfg.height, cfg.width) == (32, 48)
    tiny = preprocess_config({**opts, "preset": "tiny", "size": None, "clips": None})
    assert (tiny.num_clips, tiny.height, tiny.width, tiny.num_frames) == (256, 64, 64, 17)
