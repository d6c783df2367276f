"""The training loop, top to bottom: Accelerator -> data -> model -> optimizer -> resume -> loop.

Run with `mirage train ...`, `python -m mirage.training ...` or
`accelerate launch [--multi_gpu --num_processes N ...] -m mirage.training ...`.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mirage.training.checkpoint import (
    CKPT_DIR,
    export_model,
    full_state_dict,
    is_fsdp,
    list_checkpoints,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
    write_json,
)
from mirage.training.config import TrainConfig, lr_at
from mirage.training.flow import flow_matching_loss
from mirage.training.samples import ShardDataset, StepBatches, collate


class EMA:
    """Exponential moving average of the trainable parameters (fp32, on their device)."""

    def __init__(self, named_params: dict[str, torch.nn.Parameter], decay: float):
        self.decay = decay
        self.params = named_params
        self.shadow = {n: p.detach().float().clone() for n, p in named_params.items()}

    @torch.no_grad()
    def update(self) -> None:
        for n, p in self.params.items():
            self.shadow[n].lerp_(p.detach().float(), 1 - self.decay)

    def state(self) -> dict[str, torch.Tensor]:
        return {n: t.cpu().contiguous() for n, t in self.shadow.items()}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        for n, t in state.items():
            self.shadow[n].copy_(t)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for n, p in self.params.items():
            p.copy_(self.shadow[n])


def build_model(cfg: TrainConfig, channels: int):
    """MirageTransformer for `cfg`: base DiT (tiny random or a folder) + side branch (+ LoRA)."""
    from diffusers import WanTransformer3DModel

    from mirage.models.loading import tiny_transformer_config
    from mirage.models.lora import add_lora, load_lora, trainable_parameters
    from mirage.models.transformer import MirageTransformer

    if cfg.transformer == "tiny":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            base = WanTransformer3DModel(
                **tiny_transformer_config(in_channels=channels, out_channels=channels)
            )
    else:
        folder = Path(cfg.transformer)
        if (folder / "transformer" / "config.json").is_file():
            folder = folder / "transformer"
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"`transformer` must be 'tiny' or a folder with transformer/config.json or "
                f"config.json, got {cfg.transformer}"
            )
        base = WanTransformer3DModel.from_pretrained(
            folder, torch_dtype=torch.float32, local_files_only=True
        )
    if base.config.in_channels != channels:
        raise ValueError(
            f"the shards hold {channels}-channel latents, the transformer takes "
            f"{base.config.in_channels} (`transformer` {cfg.transformer})"
        )
    model = MirageTransformer.from_base(base, side_every=cfg.side_every, seed=cfg.seed).float()
    if cfg.side_branch:
        model.load_side_branch(cfg.side_branch)
    if cfg.stage == 2:
        if cfg.lora:
            load_lora(model, cfg.lora)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed + 1)
                add_lora(model, rank=cfg.lora_rank, alpha=cfg.lora_alpha)
    if cfg.stage == 0:
        model.requires_grad_(True)
    else:
        trainable_parameters(model, cfg.stage)
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    return model.train()


def _render_encoder(cfg: TrainConfig):
    """frames -> image latents of `cfg.vae` for an RGB memory's renders (None otherwise)."""
    if cfg.memory != "rgb":
        return None
    from mirage.models.vae import VideoVAE, load_autoencoder

    return VideoVAE(load_autoencoder(cfg.vae).requires_grad_(False)).encode_images


def _mixed_precision(cfg: TrainConfig) -> str:
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    return "bf16" if torch.cuda.is_available() else "no"


def _step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """Noise/sigma/dropout draws of one step on one rank: a pure function of (seed, step, rank)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 4099 + rank)


@dataclass
class TrainResult:
    out: Path  # output folder: checkpoints/, export, metadata.json
    step: int  # optimizer steps done
    losses: list[float]  # loss of every step run in this call (main process's batch)
    model: torch.nn.Module  # the trained MirageTransformer (unwrapped, this process's copy)


def train(cfg: TrainConfig) -> TrainResult:
    """Train one stage: returns the output folder, steps, losses and the model."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

    # 1. accelerator (fp32 weights; autocast only where mixed precision is on)
    out = Path(cfg.out)
    if not cfg.out or not cfg.data:
        raise ValueError("`data` (shard folder) and `out` (output folder) are required")
    if cfg.resume is None and list_checkpoints(out / CKPT_DIR):
        raise ValueError(
            f"`out` {out} holds checkpoints of an earlier run; pass --resume latest to continue "
            "it, or choose a new --out (two runs' checkpoints would mix)"
        )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise ValueError("`tensorboard` logging needs the tensorboard package (pip install)")
    accelerator = Accelerator(
        mixed_precision=_mixed_precision(cfg),
        log_with="tensorboard" if cfg.tensorboard else None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
    )
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and not is_fsdp(accelerator):
        raise ValueError(
            f"FSDP was asked for (ACCELERATE_USE_FSDP), but accelerate set up "
            f"{accelerator.distributed_type.name}: accelerate runs FSDP only on accelerators "
            "(CUDA, XPU, ...); over CPU processes train with DDP (ACCELERATE_USE_CPU=true)"
        )
    main = accelerator.is_main_process
    if cfg.tensorboard:
        accelerator.init_trackers("mirage", config=_flat(asdict(cfg)))

    # 2. data: validated before anything heavy (a bad folder fails here, naming the file)
    dataset = ShardDataset(
        cfg.data, cfg.context_latents, cfg.voxel_size, getattr(torch, cfg.memory_dtype),
        cfg.fusion, memory_kind=cfg.memory, encode=_render_encoder(cfg), subcells=cfg.subcells,
        memory_frames=cfg.memory_frames, sky_distance=cfg.sky_distance,
    )  # fmt: skip

    # 3. model: base + side branch (+ LoRA), trainable set by stage
    model = build_model(cfg, dataset.channels)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    text_dim = model.config.text_dim

    # 4. optimizer: AdamW on fp32 master weights
    optimizer = torch.optim.AdamW(
        list(params.values()), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    if cfg.ema_decay > 0 and is_fsdp(accelerator):
        raise ValueError("`ema_decay` > 0 is not supported under FSDP (sharded parameters)")
    ema = EMA(params, cfg.ema_decay) if cfg.ema_decay > 0 else None

    # 5. resume: weights, optimizer, EMA, RNG; the step is the data position
    step = 0
    ckpt = resolve_resume(cfg.resume, out)
    if ckpt is not None:
        step = load_checkpoint(ckpt, accelerator, model, optimizer, ema, cfg)
        if main:
            print(f"resumed from {ckpt} at step {step}")
    batches = StepBatches(
        dataset.groups(), cfg.batch_size, cfg.seed, step, cfg.max_steps,
        accelerator.process_index, accelerator.num_processes,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=partial(collate, text_dim=text_dim),
        num_workers=cfg.num_workers,
        persistent_workers=cfg.num_workers > 0,
    )

    # 6. the loop
    if main:
        out.mkdir(parents=True, exist_ok=True)
        _write_metadata(out, cfg, dataset, accelerator)
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not (main and cfg.progress), unit="step")
    losses: list[float] = []
    t0 = time.perf_counter()
    data = iter(loader)
    while step < cfg.max_steps:
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = {
            k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in next(data).items()
        }
        gen = _step_generator(cfg.seed, step, accelerator.process_index)
        parts: dict = {}
        loss = flow_matching_loss(
            model, batch, gen, cfg.shift, cfg.timestep_sampling, cfg.prompt_dropout,
            accelerator.autocast, parts, cfg.readout_dropout,
        )  # fmt: skip
        accelerator.backward(loss)
        grad_norm = None
        if cfg.grad_clip > 0:
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update()
        step += 1

        loss_value = loss.item()  # host sync: one per step, for the bar and the log
        losses.append(loss_value)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            logs = {"loss": loss_value, "lr": lr}
            logs.update({f"loss_{k}": float(v) for k, v in parts.items()})  # copy fidelity
            if grad_norm is not None:
                logs["grad_norm"] = float(grad_norm)  # host sync, every log_every steps
            accelerator.log(logs, step=step)
            if main:
                _append_log(out, step, logs, time.perf_counter() - t0)
        if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == cfg.max_steps:
            save_checkpoint(accelerator, out, step, model, optimizer, ema, cfg, lr)
    bar.close()

    # 7. export for generation (EMA weights when kept)
    accelerator.wait_for_everyone()
    if ema is not None:
        ema.copy_to_model()
    final = accelerator.unwrap_model(model)
    if is_fsdp(accelerator):  # sharded: gather the full weights into a CPU copy on main
        full = full_state_dict(model)
        if main:
            final = build_model(cfg, dataset.channels)
            final.load_state_dict(full, strict=False)
    if main:
        elapsed = time.perf_counter() - t0
        extra = {"final_loss": losses[-1] if losses else None, "seconds": elapsed}
        export_model(out, final, cfg, step, extra)
    accelerator.wait_for_everyone()
    for tracker in accelerator.trackers:  # not end_training(): the process group stays up so
        tracker.finish()  # a preset can run its next stage in the same processes
    return TrainResult(out, step, losses, accelerator.unwrap_model(model))


def _append_log(out: Path, step: int, logs: dict, seconds: float) -> None:
    """One JSON line per log step in `<out>/log.jsonl` (readable without a tracker)."""
    import json

    with (out / "log.jsonl").open("a") as f:
        f.write(json.dumps({"step": step, **logs, "seconds": round(seconds, 1)}) + "\n")


def _flat(d: dict) -> dict:
    """Tracker-friendly config: scalars kept, everything else as a string."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in d.items()}


def _write_metadata(out: Path, cfg: TrainConfig, dataset: ShardDataset, accelerator) -> None:
    meta = {
        "config": asdict(cfg),
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "device": str(accelerator.device),
        "shards": len(dataset.headers),
        "samples": len(dataset),
        "chunk_frames": dataset.chunk_frames,
        "latent_hw": list(dataset.latent_hw),
        "channels": dataset.channels,
        "torch": torch.__version__,
    }
    write_json(out / "run.json", meta)
