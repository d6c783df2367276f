"""One `mirage eval nvs|closed-loop` run: clips, the pipeline, the protocol runner, accelerate.

Under `accelerate launch` every process builds the pipeline once on its own device, scores
the clips i with i % num_processes == process_index, and the main process merges the shards
into the tables a single process writes (docs/eval.md has the recipe).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from mirage.eval.clips import PROTOCOLS, Re10kEvalClips, SyntheticEvalClips
from mirage.pipeline.chunks import plan_chunks
from mirage.pipeline.config import GenerationConfig

SCENE_SPECS = ("gt",)  # provider specs that read the clip's synthetic scene


@dataclass(frozen=True)
class EvalJob:
    protocol: str  # "nvs" or "closed_loop"
    model: Path  # Wan-layout model folder (transformer/, vae/, scheduler/)
    out: Path  # tables, JSON and sheets go here
    synthetic: int | None = None  # number of held-out synthetic clips, or
    re10k: Path | None = None  # a RealEstate10K-layout folder (<clip>/cameras.txt + frames)
    size: tuple[int, int] = (128, 128)  # (H, W) of generated and ground-truth frames
    frames: int = 33  # frames generated per clip: 1 + n (chunk_frames - 1)
    kind: str = "indoor"  # synthetic scenes
    num_dynamic: int = 0  # moving objects per synthetic scene
    stride: int = 1  # RealEstate10K: source frames between clip frames
    max_clips: int | None = None  # RealEstate10K: at most this many clip windows
    branch: Path | None = None
    lora: Path | None = None
    depth: str = "gt"  # "gt" (synthetic only) or a depth model folder
    masks: str = "none"  # "none", "gt" (synthetic only) or a SAM3 folder
    device: str = "auto"  # "auto": the accelerate process's device
    dtype: str = "float32"
    offload: bool = False
    prompt: str | None = None
    target_stride: int = 1  # novel views: score every target_stride-th frame after frame 0
    lpips_backbone: Path | None = None
    lpips_heads: Path | None = None
    sheet_frames: int = 6
    config: GenerationConfig = field(default_factory=GenerationConfig)


def _check(job: EvalJob) -> None:
    if job.protocol not in PROTOCOLS:
        raise ValueError(f"`protocol` must be one of {PROTOCOLS}, got {job.protocol!r}")
    if (job.synthetic is None) == (job.re10k is None):
        raise ValueError("give exactly one clip source: `synthetic` (a count) or `re10k` (a dir)")
    if job.re10k is not None and (job.depth in SCENE_SPECS or job.masks in SCENE_SPECS):
        raise ValueError(
            "RealEstate10K clips have no synthetic scene: `depth` must be a depth model folder "
            f"and `masks` 'none' or a SAM3 folder, got depth={job.depth!r}, masks={job.masks!r}"
        )
    plan_chunks(job.frames, job.config.chunk_frames)  # the length must fit the chunk plan
    if not Path(job.model).is_dir():
        raise FileNotFoundError(f"`model` folder not found: {job.model}")


def eval_clips(job: EvalJob):
    """The clip sequence of a job (lazy) and the runner's loop arguments."""
    H, W = job.size
    if job.synthetic is not None:
        from mirage.pipeline.model_info import synthetic_supersample

        clips = SyntheticEvalClips(
            job.synthetic, job.frames, H, W, job.protocol, job.kind, job.num_dynamic,
            supersample=synthetic_supersample(Path(job.model)),
        )  # fmt: skip
        return clips, {"clips_are_loops": True} if job.protocol == "closed_loop" else {}
    if job.protocol == "closed_loop":  # outbound clips; the loop of `frames` is built from them
        clips = Re10kEvalClips(job.re10k, (job.frames + 1) // 2, H, W, job.stride, job.max_clips)
        return clips, {"clips_are_loops": False, "loop_frames": job.frames}
    return Re10kEvalClips(job.re10k, job.frames, H, W, job.stride, job.max_clips), {}


def run_eval(job: EvalJob, shard: tuple[int, int] | None = None) -> dict:
    """Evaluate `job`; returns the summary of this process (merged tables on the main one).

    `shard` = (rank, world) overrides accelerate's process index and count.
    """
    from accelerate import Accelerator

    from mirage.atomic import write_json
    from mirage.eval.machine import describe_machine
    from mirage.eval.protocol import (
        evaluate_closed_loop,
        evaluate_nvs,
        merge_shards,
        pipeline_generate_fn,
    )
    from mirage.perception import load_depth_provider, load_mask_provider
    from mirage.pipeline.loading import build_pipeline

    _check(job)
    clips, loop_args = eval_clips(job)
    state = Accelerator()  # reads `accelerate launch` / torchrun settings (ACCELERATE_USE_CPU, ...)
    if shard is None:
        shard = (state.process_index, state.num_processes)
    rank, world = shard
    device = str(state.device) if job.device == "auto" else job.device
    first = clips.scene(min(rank, len(clips) - 1)) if job.synthetic is not None else None
    pipe = build_pipeline(
        job.model, job.branch, job.lora, depth=job.depth, masks=job.masks, scene=first,
        device=device, dtype=getattr(torch, job.dtype), offload=job.offload,
    )  # fmt: skip

    def bind_scene(clip) -> None:
        """Ground-truth providers read the scene of the clip being generated."""
        if job.depth in SCENE_SPECS:
            pipe.depth = load_depth_provider(job.depth, scene=clip.scene, device=device)
        if job.masks in SCENE_SPECS:
            pipe.masks = load_mask_provider(job.masks, scene=clip.scene, device=device)

    common = dict(
        out_dir=job.out, lpips_backbone=job.lpips_backbone, lpips_heads=job.lpips_heads,
        sheet_frames=job.sheet_frames, shard=shard,
        before_clip=bind_scene if job.synthetic is not None else None,
        # finished clips are reused only by a run of the same model files and settings
        run={"job": {k: v for k, v in asdict(job).items() if k not in ("config", "out")},
             "config": asdict(job.config), "files": pipe.files},
    )  # fmt: skip
    generate_fn = pipeline_generate_fn(pipe, job.config, job.prompt)
    if job.protocol == "nvs":
        summary = evaluate_nvs(generate_fn, clips, target_stride=job.target_stride, **common)
    else:
        summary = evaluate_closed_loop(generate_fn, clips, **loop_args, **common)
    if world > 1:
        state.wait_for_everyone()
    if rank == 0:
        if world > 1:
            summary = merge_shards(job.out, job.protocol, world)
        record = {k: v for k, v in asdict(job).items() if k != "config"}
        write_json(
            Path(job.out) / f"{job.protocol}_job.json",
            {"job": record, "config": asdict(job.config), "clips": len(clips), "shards": world,
             "machine": describe_machine(device)},
        )  # fmt: skip
    return summary
