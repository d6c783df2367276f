"""LoRA (peft) on the main blocks' self-attention, its diffusers-format files, and stage selection.

- `add_lora(transformer, rank=64, alpha=64)`: LoRA on `blocks.N.attn1.{to_q,to_k,to_v,to_out.0}`
  of the base `WanTransformer3DModel` only (never cross-attention, FFN or the side branch),
  through diffusers' `PeftAdapterMixin.add_adapter` (peft). `lora_B` starts at zero, so a fresh
  LoRA leaves the output unchanged. Works on a `MirageTransformer` or a bare base model.
- `set_lora_enabled(transformer, enabled)`: switch it on/off (off = the base output exactly).
- `save_lora(transformer, path)` / `load_lora(transformer, path)`: one safetensors file in the
  diffusers LoRA format, keys `transformer.blocks.0.attn1.to_q.lora_A.weight`, the peft
  `LoraConfig` as JSON under the `lora_adapter_metadata` header key (prefixed `transformer.`,
  as diffusers' `save_lora_weights` writes it), so `pipe.load_lora_weights` can read it too.
  Loading adds the adapter if needed, and refuses a file whose rank, alpha, names or shapes do
  not fit, listing them.
- `trainable_parameters(model, stage)`: stage 1 = side branch only; stage 2 = side branch +
  LoRA. Sets `requires_grad` accordingly on every parameter and returns the selected ones.
  (peft's enable/disable toggles `requires_grad` of LoRA weights: call this after switching.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn as nn

from mirage.atomic import atomic_path
from mirage.models._checkpoint import fit_problems

ADAPTER_NAME = "mirage"
TARGET_MODULES = r"blocks\.\d+\.attn1\.(to_q|to_k|to_v|to_out\.0)"
METADATA_KEY = "lora_adapter_metadata"  # diffusers.loaders.lora_base.LORA_ADAPTER_METADATA_KEY
PREFIX = "transformer."


def _base(transformer):
    from diffusers import WanTransformer3DModel

    from mirage.models.transformer import MirageTransformer

    if isinstance(transformer, MirageTransformer):
        return transformer.base
    if isinstance(transformer, WanTransformer3DModel):
        return transformer
    raise ValueError(
        "`transformer` must be a MirageTransformer or WanTransformer3DModel, "
        f"got {type(transformer).__name__}"
    )


def has_lora(transformer) -> bool:
    base = _base(transformer)
    return ADAPTER_NAME in (getattr(base, "peft_config", None) or {})


def _lora_named_parameters(base) -> dict[str, nn.Parameter]:
    """Model parameter name -> parameter, for the Mirage adapter's lora_A / lora_B weights."""
    tag = f".{ADAPTER_NAME}."
    return {
        n: p
        for n, p in base.named_parameters()
        if (".lora_A." in n or ".lora_B." in n) and tag in n
    }


def _file_key(param_name: str) -> str:
    """Model name -> file key.

    `blocks.0.attn1.to_q.lora_A.mirage.weight` -> `transformer.blocks.0.attn1.to_q.lora_A.weight`
    """
    return PREFIX + param_name.replace(f".{ADAPTER_NAME}.", ".")


def lora_parameters(transformer) -> list[nn.Parameter]:
    return list(_lora_named_parameters(_base(transformer)).values())


def add_lora(
    transformer, rank: int = 64, alpha: float = 64, modules: list[str] | None = None
) -> list[nn.Parameter]:
    """Add LoRA (rank, alpha) to the main blocks' self-attention projections; return its params.

    `modules` names other base modules instead (e.g. `blocks.3.attn2.to_q`, `blocks.3.ffn.net.2`
    of a LoRA converted from the official trainer, which also adapts cross-attention and FFN).
    """
    if int(rank) != rank or rank < 1:
        raise ValueError(f"`rank` must be a positive integer, got {rank}")
    if not alpha > 0:
        raise ValueError(f"`alpha` must be > 0, got {alpha}")
    from peft import LoraConfig

    base = _base(transformer)
    if has_lora(transformer):
        raise ValueError("`transformer` already has a Mirage LoRA; load into it or remove it first")
    config = LoraConfig(
        r=int(rank),
        lora_alpha=float(alpha),
        target_modules=TARGET_MODULES if modules is None else sorted(modules),
        lora_dropout=0.0,
        init_lora_weights=True,
    )
    base.add_adapter(config, adapter_name=ADAPTER_NAME)
    params = _lora_named_parameters(base)
    # 4 projections x (A, B) per block, or (A, B) per named module
    expected = 4 * 2 * base.config.num_layers if modules is None else 2 * len(modules)
    if len(params) != expected:
        raise RuntimeError(f"LoRA wrapped {len(params)} weights, expected {expected}")
    return list(params.values())


def set_lora_enabled(transformer, enabled: bool) -> None:
    """Switch the LoRA on or off (off: the base model's output exactly)."""
    if not has_lora(transformer):
        raise ValueError("`transformer` has no LoRA: call add_lora first")
    base = _base(transformer)
    if enabled:
        base.enable_adapters()
    else:
        base.disable_adapters()


def _lora_config_of(base) -> dict:
    cfg = base.peft_config[ADAPTER_NAME]
    return {"r": int(cfg.r), "lora_alpha": float(cfg.lora_alpha)}


def save_lora(transformer, path: str | Path) -> None:
    """Write the LoRA to one safetensors file in the diffusers LoRA format (atomic)."""
    from safetensors.torch import save_file

    if not has_lora(transformer):
        raise ValueError("`transformer` has no LoRA to save: call add_lora first")
    base = _base(transformer)
    sd = {
        _file_key(n): p.detach().contiguous().cpu() for n, p in _lora_named_parameters(base).items()
    }
    cfg = base.peft_config[ADAPTER_NAME].to_dict()
    cfg = {k: (sorted(v) if isinstance(v, set) else v) for k, v in cfg.items()}
    cfg = {PREFIX + k: v for k, v in cfg.items()}
    meta = {"format": "pt", METADATA_KEY: json.dumps(cfg, indent=2, sort_keys=True, default=str)}
    with atomic_path(path, ".safetensors") as tmp:
        save_file(sd, tmp, metadata=meta)


def _rank_alpha_from_file(f, keys: list[str]) -> tuple[int, float]:
    meta = f.metadata() or {}
    if METADATA_KEY in meta:
        cfg = json.loads(meta[METADATA_KEY])
        if PREFIX + "r" in cfg:
            rank = int(cfg[PREFIX + "r"])
            return rank, float(cfg.get(PREFIX + "lora_alpha", rank))
    a_keys = [k for k in keys if ".lora_A." in k]
    if not a_keys:
        raise ValueError("the LoRA file holds no lora_A weights")
    rank = int(f.get_slice(a_keys[0]).get_shape()[0])
    return rank, float(rank)  # diffusers' convention without metadata: alpha = rank


@torch.no_grad()
def load_lora(transformer, path: str | Path) -> None:
    """Load a file written by `save_lora`, or any diffusers-format LoRA of the base model.

    Into a model without LoRA, the adapter is added on exactly the modules the file names
    (self-attention for ours; also cross-attention and FFN for one converted from the official
    trainer).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LoRA file not found: {path}")
    base = _base(transformer)
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        bad = [k for k in keys if not k.startswith(PREFIX)]
        if bad:
            raise ValueError(
                f"{path} is not a diffusers transformer LoRA: keys must start with "
                f"{PREFIX!r}, got e.g. {bad[:3]}"
            )
        rank, alpha = _rank_alpha_from_file(f, keys)
        if not has_lora(transformer):
            modules = sorted({k[len(PREFIX) :].split(".lora_")[0] for k in keys})
            default = all(re.fullmatch(TARGET_MODULES, m) for m in modules)
            add_lora(transformer, rank=rank, alpha=alpha, modules=None if default else modules)
        own_cfg = _lora_config_of(base)
        if (own_cfg["r"], own_cfg["lora_alpha"]) != (rank, alpha):
            raise ValueError(
                f"LoRA file {path} has rank {rank} / alpha {alpha:g}; the model's LoRA has rank "
                f"{own_cfg['r']} / alpha {own_cfg['lora_alpha']:g}"
            )
        own = {_file_key(n): p for n, p in _lora_named_parameters(base).items()}
        problems = fit_problems(f, own)
        if problems:
            shown = problems[:20] + ([f"... and {len(problems) - 20} more"] * (len(problems) > 20))
            raise ValueError(f"LoRA file {path} does not fit the model:\n  " + "\n  ".join(shown))
        for k, p in own.items():
            p.copy_(f.get_tensor(k))


def trainable_parameters(model, stage: int) -> list[nn.Parameter]:
    """Select and unfreeze what a training stage updates; freeze everything else.

    stage 1: the side branch (patch embedding + side blocks). stage 2: side branch + LoRA.
    """
    from mirage.models.transformer import MirageTransformer

    if not isinstance(model, MirageTransformer):
        raise ValueError(f"`model` must be a MirageTransformer, got {type(model).__name__}")
    if stage not in (1, 2):
        raise ValueError(f"`stage` must be 1 or 2, got {stage}")
    selected = list(model.side_branch_parameters())
    if stage == 2:
        if not has_lora(model):
            raise ValueError("stage 2 trains the LoRA: call add_lora(model) first")
        selected += lora_parameters(model)
    chosen = {id(p) for p in selected}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    return selected
