"""Checkpoints (atomic, last N kept, everything resume needs) and the final export for generation.

A checkpoint is a folder `<out>/checkpoints/step-XXXXXXXX/`:

    trainable.safetensors   the trainable parameters (fp32 master weights), by model name
    ema.safetensors         their EMA (when ema_decay > 0)
    optimizer.pt            AdamW state (rank 0; under FSDP one optimizer-rankR.pt per rank),
                            read back with torch.load(weights_only=True)
    rng-rankR.safetensors   each rank's torch CPU (and CUDA) RNG state
    state.json              step, asdict(config), the LR of the last step

It is written into `.tmp-step-XXXXXXXX/` and renamed when complete, so a crash never leaves a
half checkpoint under a real name. The export (`export_model`) writes `side_branch.safetensors`,
`lora.safetensors` (stage 2), the base DiT with `save_pretrained` into `transformer/` (stage 0),
and `metadata.json`, the files `mirage generate` loads.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mirage.atomic import replace_dir, write_json

CKPT_DIR = "checkpoints"


def trainable_state(model) -> dict[str, torch.Tensor]:
    """Name -> detached fp32 CPU copy of every trainable parameter of the unwrapped model."""
    return {
        n: p.detach().float().cpu().contiguous()
        for n, p in model.named_parameters()
        if p.requires_grad
    }


def is_fsdp(accelerator) -> bool:
    return accelerator.distributed_type.name == "FSDP"


def full_state_dict(model) -> dict[str, torch.Tensor]:
    """The full (unsharded) state dict of an FSDP-wrapped model on the main process.

    torch's `get_model_state_dict` rather than `accelerator.get_state_dict`: accelerate's FSDP1
    gather asks for `offload_to_cpu`, which on CPU parameters clones freed memory (a segfault
    in torch 2.13's `_full_post_state_dict_hook`). Call on every process (it all-gathers).
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    offload = next(model.parameters()).device.type != "cpu"
    opts = StateDictOptions(full_state_dict=True, cpu_offload=offload)
    return get_model_state_dict(model, options=opts)


def gathered_trainable(accelerator, model) -> dict[str, torch.Tensor]:
    """Full (unsharded) fp32 CPU copies of the trainable parameters; call on every process."""
    if not is_fsdp(accelerator):
        return trainable_state(accelerator.unwrap_model(model))
    names = {n for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
    names = {n.replace("_fsdp_wrapped_module.", "") for n in names}
    full = full_state_dict(model)
    return {n: t.detach().float().cpu().contiguous() for n, t in full.items() if n in names}


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def save_checkpoint(accelerator, out: Path, step: int, model, optimizer, ema, cfg, lr) -> Path:
    """Write the checkpoint of `step` (call on every process; main writes shared files)."""
    root = Path(out) / CKPT_DIR
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    rank = accelerator.process_index
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    save_file(rng, str(tmp / f"rng-rank{rank}.safetensors"))
    sharded = is_fsdp(accelerator)
    if sharded:
        torch.save(optimizer.state_dict(), tmp / f"optimizer-rank{rank}.pt")
    weights = gathered_trainable(accelerator, model)  # every rank (FSDP gathers), main keeps it
    if accelerator.is_main_process:
        save_file(weights, str(tmp / "trainable.safetensors"))
        if ema is not None:
            save_file(ema.state(), str(tmp / "ema.safetensors"))
        if not sharded:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        state = {
            "step": step,
            "lr": lr,
            "config": asdict(cfg),
            "world_size": accelerator.num_processes,
        }
        write_json(tmp / "state.json", state)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_dir(tmp, final)
        prune_checkpoints(root, cfg.keep_checkpoints)
    accelerator.wait_for_everyone()
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / "state.json").is_file())


def prune_checkpoints(root: Path, keep: int) -> None:
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def resolve_resume(resume: str | None, out: Path) -> Path | None:
    """The checkpoint folder `resume` names ("latest": the newest under out/checkpoints)."""
    if resume is None:
        return None
    if resume == "latest":
        found = list_checkpoints(Path(out) / CKPT_DIR)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / "state.json").is_file():
        raise FileNotFoundError(f"`resume` must be a checkpoint folder with state.json, got {path}")
    return path


ARCH_KEYS = ("stage", "transformer", "side_every", "lora_rank", "lora_alpha", "context_latents")


def load_checkpoint(path: Path, accelerator, model, optimizer, ema, cfg) -> int:
    """Restore trainable weights, optimizer, EMA and RNG from `path`; return the next step."""
    state = json.loads((path / "state.json").read_text())
    theirs = state["config"]
    diff = [k for k in ARCH_KEYS if theirs.get(k) != getattr(cfg, k)]
    if diff:
        pairs = ", ".join(
            f"{k}: checkpoint {theirs.get(k)!r}, config {getattr(cfg, k)!r}" for k in diff
        )
        raise ValueError(f"checkpoint {path} was made for another model ({pairs})")
    unwrapped = accelerator.unwrap_model(model)
    weights = load_file(str(path / "trainable.safetensors"))
    own = {n.replace("_fsdp_wrapped_module.", ""): p for n, p in unwrapped.named_parameters()}
    bad = sorted(set(weights) ^ {n for n, p in own.items() if p.requires_grad})
    if bad:
        raise ValueError(f"checkpoint {path} trainable parameters do not fit the model: {bad[:5]}")
    if is_fsdp(accelerator):  # sharded parameters: let torch scatter the full tensors
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        # the wrapped model: unwrapped, FSDP1's root unit (side patch embedding, norms, ...)
        # shows its parameters as empty flat-parameter views and the load fails on their size
        opts = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(model, weights, options=opts)
    else:
        with torch.no_grad():
            for n, t in weights.items():
                own[n].copy_(t)
    rank = accelerator.process_index
    opt_file = path / "optimizer.pt"
    if not opt_file.is_file():
        opt_file = path / f"optimizer-rank{rank}.pt"
    optimizer.load_state_dict(torch.load(opt_file, map_location="cpu", weights_only=True))
    if ema is not None:
        ema_file = path / "ema.safetensors"
        if ema_file.is_file():
            ema.load(load_file(str(ema_file)))
    rng_file = path / f"rng-rank{rank}.safetensors"
    if rng_file.is_file():
        rng = load_file(str(rng_file))
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return int(state["step"])


def export_model(out: Path, model, cfg, step: int, extra: dict | None = None) -> dict[str, Path]:
    """Write the final side branch, LoRA (stage 2), base DiT (stage 0) and metadata.json."""
    from mirage.models.lora import has_lora, save_lora

    out = Path(out)
    paths = {"side_branch": out / "side_branch.safetensors"}
    model.save_side_branch(paths["side_branch"])
    if cfg.stage == 2 and has_lora(model):
        paths["lora"] = out / "lora.safetensors"
        save_lora(model, paths["lora"])
    if cfg.exports_base:
        paths["transformer"] = out / "transformer"
        tmp = out / ".tmp-transformer"
        shutil.rmtree(tmp, ignore_errors=True)
        model.base.save_pretrained(tmp, safe_serialization=True)
        replace_dir(tmp, paths["transformer"])
    meta = {
        "format": "mirage.training_export",
        "step": step,
        "config": cfg.record(),
        "files": {k: v.name for k, v in paths.items()},
        "side_branch_config": model.side_config,
        **(extra or {}),
    }
    paths["metadata"] = out / "metadata.json"
    write_json(paths["metadata"], meta)
    return paths
