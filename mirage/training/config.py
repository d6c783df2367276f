"""TrainConfig: every knob of one training stage with its default, the LR schedule, and presets."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from mirage.memory.latent import DEFAULT_FUSION, DEFAULT_SUBCELLS, FUSION_MODES, check_subcells
from mirage.training.flow import TIMESTEP_SAMPLING
from mirage.training.samples import MEMORY_FRAMES

STAGES = (0, 1, 2)
SCHEDULES = ("cosine", "constant")
LATENT_MEMORY_KNOBS = ("voxel_size", "fusion", "subcells", "memory_dtype")  # latent memory only


@dataclass(frozen=True)
class TrainConfig:
    data: str = ""  # shard folder written by `mirage preprocess`
    out: str = ""  # output folder: checkpoints/, metadata.json and the final export
    stage: int = 1  # 0 = base + side branch (from scratch), 1 = side branch, 2 = + LoRA
    # model
    transformer: str = (
        "tiny"  # "tiny" (random tiny DiT) or a folder with transformer/ or config.json
    )
    side_branch: str | None = None  # initial side branch (.safetensors), None = fresh init
    lora: str | None = None  # initial LoRA file (stage 2), None = fresh (B = 0)
    side_every: int = 2  # a side block beside every k-th main block
    lora_rank: int = 64  # stage 2 LoRA rank (main self-attention only)
    lora_alpha: float = 64.0  # stage 2 LoRA alpha
    gradient_checkpointing: bool = False  # recompute blocks in backward (memory for time)
    # data (must match generation: context latents and memory settings)
    context_latents: int = 2  # clean latents of the previous chunk in front of the first frame
    voxel_size: float | str | None = "footprint"  # memory fusion (generation default)
    fusion: str = DEFAULT_FUSION  # memory fusion mode (generation's without a model's own)
    subcells: int = DEFAULT_SUBCELLS  # latent-memory sub-cells per cell side (generation default)
    memory_dtype: str = "bfloat16"  # storage dtype of the memory (generation default)
    sky_distance: float | None = None  # sky dome distance (generation's `sky_distance`)
    memory: str = "latent"  # readouts from "latent" memory or the "rgb" point cache (the
    # paper's explicit-RGB ablation: renders encoded by `vae`; shards need `keep_frames`)
    vae: str | None = None  # AutoencoderKLWan folder that encodes RGB renders (memory "rgb")
    # what the memory holds: "gt" (the clip's frames) or "decoded" (what generation writes, the
    # chunks decoded as video and re-encoded: shards preprocessed with `decoded_writes`)
    memory_frames: str = "gt"
    batch_size: int = 1  # samples per process per step
    num_workers: int = 0  # DataLoader workers (memory is built in them)
    # objective
    shift: float = 5.0  # flow-matching timestep shift
    timestep_sampling: str = "uniform"  # "uniform" or "logit_normal" u, then shifted
    prompt_dropout: float = 0.1  # probability of the null (zero) text embedding
    # probability of the empty side-branch input (no memory): trains the condition that
    # memory guidance pushes away from (generation's `memory_guidance`)
    readout_dropout: float = 0.0
    # optimisation (fp32 master weights; bf16 autocast on CUDA only)
    max_steps: int = 10_000  # optimizer steps
    lr: float = 1e-5  # peak learning rate (official: 1e-5)
    schedule: str = "constant"  # after warmup: "constant" or "cosine" to min_lr_ratio * lr
    warmup_steps: int = 100  # linear warmup from 0
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of lr
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    ema_decay: float = 0.0  # EMA of trainable params (e.g. 0.999); 0 = off; export uses EMA
    mixed_precision: str = "auto"  # "auto" (bf16 on CUDA, none on CPU), "bf16", "fp16", "no"
    # bookkeeping
    seed: int = 0  # model init, batches, noise
    log_every: int = 10  # steps between tracker logs
    checkpoint_every: int = 500  # steps between checkpoints (0 = only at the end)
    keep_checkpoints: int = 3  # newest checkpoints kept
    resume: str | None = None  # a checkpoint folder, or "latest" under out/checkpoints
    export_base: bool | None = None  # save the base DiT to out/transformer (None: stage 0 only)
    threads: int = 0  # torch CPU threads (0: torch's default; 1 helps on a busy CPU)
    tensorboard: bool = False  # accelerate's TensorBoard tracker into out/logs
    progress: bool = True  # tqdm bar on the main process

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"`stage` must be one of {STAGES}, got {self.stage}")
        if self.stage == 0 and self.lora is not None:
            raise ValueError("stage 0 trains base + side branch; `lora` is for stage 2")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"`schedule` must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.timestep_sampling not in TIMESTEP_SAMPLING:
            raise ValueError(
                f"`timestep_sampling` must be one of {TIMESTEP_SAMPLING}, "
                f"got {self.timestep_sampling!r}"
            )
        if self.mixed_precision not in ("auto", "bf16", "fp16", "no"):
            raise ValueError(
                f"`mixed_precision` must be auto/bf16/fp16/no, got {self.mixed_precision!r}"
            )
        for name in ("max_steps", "batch_size", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        for name in (
            "warmup_steps",
            "checkpoint_every",
            "num_workers",
            "context_latents",
            "threads",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        if self.memory not in ("latent", "rgb"):
            raise ValueError(f"`memory` must be 'latent' or 'rgb', got {self.memory!r}")
        if self.memory == "rgb" and not self.vae:
            raise ValueError("`memory` 'rgb' needs `vae` (the folder whose encoder reads renders)")
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"`fusion` must be one of {FUSION_MODES}, got {self.fusion!r}")
        if self.memory_frames not in MEMORY_FRAMES:
            raise ValueError(
                f"`memory_frames` must be one of {MEMORY_FRAMES}, got {self.memory_frames!r}"
            )
        check_subcells(self.subcells)
        if self.sky_distance is not None and not self.sky_distance > 0:
            raise ValueError(f"`sky_distance` must be > 0 or None, got {self.sky_distance}")
        for name in ("prompt_dropout", "readout_dropout"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"`{name}` must be in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"`ema_decay` must be in [0, 1), got {self.ema_decay}")
        if not (self.lr > 0 and self.shift > 0):
            raise ValueError(f"`lr` and `shift` must be > 0, got {self.lr}, {self.shift}")

    @property
    def exports_base(self) -> bool:
        return self.stage == 0 if self.export_base is None else self.export_base

    def record(self) -> dict:
        """The config as an export records it. The latent memory's knobs are None when the run
        read another memory: they configured nothing, and the record must not say they did."""
        d = asdict(self)
        if self.memory != "latent":
            d.update(dict.fromkeys(LATENT_MEMORY_KNOBS, None))
        return d


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warmup, then constant/cosine.

    `cfg` is any config with lr, warmup_steps, max_steps, min_lr_ratio and schedule
    (TrainConfig, AutoencoderConfig).
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.min_lr_ratio * cfg.lr
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


# --- presets -------------------------------------------------------------------------------

PRESETS = ("tiny",)


def tiny_stages(data: str, out: str, **overrides) -> list[TrainConfig]:
    """mirage-tiny: the tiny DiT from scratch (stage 0), then its side branch alone (stage 1).

    Stage 0 writes `<out>/stage0` (base + side branch); stage 1 starts from it and writes
    `<out>/stage1` with the base DiT, side branch and metadata (a complete transformer).
    Sized for a 2-core CPU: 8 samples per step (64x64 frames, chunks of 9), one torch thread
    for the model and one DataLoader worker building memories beside it.
    """
    base = TrainConfig(
        data=data, out=f"{out}/stage0", stage=0, transformer="tiny", batch_size=8,
        max_steps=8000, lr=3e-4, schedule="cosine", warmup_steps=100, weight_decay=0.01,
        grad_clip=1.0, ema_decay=0.0, prompt_dropout=0.1, checkpoint_every=250,
        log_every=10, timestep_sampling="logit_normal", threads=1, num_workers=1,
    )  # fmt: skip
    base = replace(base, **{k: v for k, v in overrides.items() if not k.startswith("stage1_")})
    stage1 = replace(
        base, out=f"{out}/stage1", stage=1, transformer=f"{out}/stage0",
        side_branch=f"{out}/stage0/side_branch.safetensors", max_steps=2000, lr=1e-4,
        export_base=True,
    )  # fmt: skip
    s1 = {k[len("stage1_") :]: v for k, v in overrides.items() if k.startswith("stage1_")}
    return [base, replace(stage1, **s1)]
