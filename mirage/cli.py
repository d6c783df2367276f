"""The `mirage` command line: parses arguments, builds a config, calls one library function.

Heavy imports (torch, diffusers) happen inside each command so `mirage --help` is instant.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Mirage: latent spatial memory for video world models.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # help text is plain: "[mixed]" is a default, not a Rich style tag
)
bench_app = typer.Typer(help="Speed and memory benchmarks (figures to benchmarks/results/).")
world_app = typer.Typer(help="The procedural synthetic world: render scenes with ground truth.")
eval_app = typer.Typer(help="Quality evaluation: novel views and closed loop.")
memory_app = typer.Typer(help="Inspect and export saved latent memories.")
app.add_typer(bench_app, name="bench")
app.add_typer(world_app, name="world")
app.add_typer(eval_app, name="eval")
app.add_typer(memory_app, name="memory")

PROGRESS_HELP = "Progress bars (default: only when stderr is a terminal)."


def _progress(flag: bool | None) -> bool:
    """Bars only on a terminal unless asked: no cursor escapes in logs and pipes."""
    import sys

    return sys.stderr.isatty() if flag is None else flag


def _version(value: bool) -> None:
    if value:
        from mirage import __version__

        typer.echo(f"mirage {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
):
    """Mirage: latent spatial memory for video world models."""


# --- demo -----------------------------------------------------------------------------------


@app.command()
def demo(
    out: Path = typer.Option(Path("demo"), help="Output folder."),
    model: Path = typer.Option(None, help="Model folder (default: the shipped mirage-tiny)."),
    quick: bool = typer.Option(False, "--quick", help="2 chunks, fewer steps (CI)."),
    scene: int = typer.Option(900_005, help="Held-out synthetic scene seed (900000-900999)."),
    scene_kind: str = typer.Option("indoor", help="indoor | outdoor."),
    steps: int = typer.Option(None, help="Denoising steps per chunk (default 10; quick 4)."),
    seed: int = typer.Option(0, help="Noise seed."),
    progress: bool = typer.Option(None, "--progress/--no-progress", help=PROGRESS_HELP),
):
    """Fly out and back through a held-out scene with latent, rgb and no memory; write demo/."""
    from mirage.demo import DEFAULT_MODEL, DemoConfig, run_demo

    try:
        config = DemoConfig(
            model=model or DEFAULT_MODEL, out=out, quick=quick, scene_seed=scene,
            scene_kind=scene_kind, steps=steps, seed=seed, progress=_progress(progress),
        )  # fmt: skip
        result = run_demo(config)
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    typer.echo(result.table)
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in result.out.iterdir())
    typer.echo(f"wrote {', '.join(names)} to {result.out}")  # what it holds, never a stale list


# --- explore --------------------------------------------------------------------------------


@app.command()
def explore(
    model: list[str] = typer.Option(
        None, help="Model folder(s) to offer (repeatable); the first opens (default: tiny)."
    ),
    depth_model: Path = typer.Option(None, help="Depth model folder, for uploaded images."),
    out: Path = typer.Option(Path("explore"), help="Session folder: saves go here only."),
    scene: int = typer.Option(900_005, help="Synthetic scene seed to start in."),
    scene_kind: str = typer.Option("indoor", help="indoor | outdoor."),
    memory: str = typer.Option("latent", help="latent | rgb | none."),
    steps: int = typer.Option(None, help="Denoising steps per chunk (default: the model's)."),
    step: float = typer.Option(0.3, help="World units per move (W/S/A/D/R/F)."),
    turn: float = typer.Option(15.0, help="Degrees per turn (Q/E)."),
    seed: int = typer.Option(0, help="Noise seed."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (warns if not loopback)."),
    port: int = typer.Option(None, help="Port (default: a free one, printed)."),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N."),
):
    """Steer the world model in the browser and watch its latent memory grow."""
    from mirage.explore.start import ExploreConfig

    try:
        from mirage.explore.serve import serve
    except ImportError as e:
        raise typer.BadParameter(f"{e}: install the explorer with pip install -e .[explore]") from e
    models = tuple(model or ())
    try:
        config = ExploreConfig(
            model=models[0] if models else None, out=out, scene_seed=scene, scene_kind=scene_kind,
            memory=memory, step=step, turn=turn, steps=steps, seed=seed, device=device,
        )  # fmt: skip
        serve(config, host=host, port=port, models=models[1:], depth_model=depth_model)
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e


VOXEL_HELP = "Memory fusion: footprint (bounded, default) | none (append) | a voxel size."


# --- generate -------------------------------------------------------------------------------


@app.command()
def generate(
    model: str = typer.Option("tiny", help="Model folder, or tiny (the embedded mirage-tiny)."),
    out: Path = typer.Option(..., help="Output folder (refused if not empty; see --overwrite)."),
    overwrite: bool = typer.Option(False, help="Replace a non-empty --out folder."),
    branch: Path = typer.Option(None, help="Side-branch checkpoint (default: in --model)."),
    lora: Path = typer.Option(None, help="LoRA checkpoint (default: in --model, if any)."),
    image: Path = typer.Option(None, help="First frame (default: rendered from --scene)."),
    scene: int = typer.Option(None, help="Synthetic scene seed (for gt depth/masks)."),
    scene_kind: str = typer.Option("indoor", help="indoor | outdoor."),
    dynamic: int = typer.Option(0, help="Moving objects in the synthetic scene."),
    trajectory: str = typer.Option("orbit", help="A preset name or a trajectory JSON file."),
    fov: float = typer.Option(60.0, help="Horizontal field of view (deg) for a preset's camera."),
    geometry: Path = typer.Option(
        None, help="An official geometry.npz: cameras, depth and masks of every frame."
    ),
    frames: int = typer.Option(33, help="Frames for a preset: 1 + n * (chunk_frames - 1)."),
    size: str = typer.Option(None, help="HEIGHTxWIDTH (default: the model's, else the image's)."),
    prompt: str = typer.Option(None, help="Text prompt (needs a text encoder in --model)."),
    memory: str = typer.Option("latent", help="latent | rgb | none."),
    depth: str = typer.Option("gt", help="gt (synthetic scene) or a depth model folder."),
    masks: str = typer.Option("none", help="none | gt | a SAM3 model folder."),
    chunk_frames: int = typer.Option(
        None, help="Frames per chunk, 4k + 1 (default: the model's, else 33)."
    ),
    steps: int = typer.Option(
        None, help="Denoising steps per chunk (default: the model's, else 20)."
    ),
    guidance: float = typer.Option(1.0, help="Classifier-free guidance scale (1 = off)."),
    memory_guidance: str = typer.Option(
        "auto",
        help="Push each step away from what an empty memory gives, where the memory sees: "
        "auto (the model's, else off) | off | a weight (1 = off; 2 passes).",
    ),
    memory_guidance_sigma: float = typer.Option(
        1.0,
        help="Memory guidance only on the steps of noise level sigma <= this (1 = every step; "
        "the low-noise steps carry its effect, at fewer extra passes).",
    ),
    readout_copy: str = typer.Option(
        "auto",
        help="Move each step's clean estimate this fraction of the way to the memory readout "
        "where it sees a surface: auto (the model's, else off) | off | 0..1.",
    ),
    shift: float = typer.Option(5.0, help="Flow-matching timestep shift of the sampler."),
    context_latents: int = typer.Option(2, help="Previous-chunk latents as context (0..k)."),
    voxel_size: str = typer.Option("footprint", help=VOXEL_HELP),
    fusion: str = typer.Option(
        "auto",
        help="How a stored surface takes a new view: auto (the model's, else mean) | mean | "
        "latest | first.",
    ),
    subcells: int = typer.Option(
        2, help="Latent-memory sub-cells per cell side, averaged on read (1: one point per cell)."
    ),
    sky_distance: str = typer.Option(
        "auto",
        help="Sky dome: store pixels of infinite depth this far away (world units) instead of "
        "dropping them: auto (the model's, else off) | off | a distance.",
    ),
    references: str = typer.Option(
        "auto", help="Past latents as reference slots: auto (on for official branches) | on | off."
    ),
    reference_voxel: float = typer.Option(
        0.1, help="Voxel size (world units) of the reference-frame IoU."
    ),
    cache: str = typer.Option(
        "off", help="Step cache of the main blocks: off | fbc (First Block Cache; faster, lossy)."
    ),
    cache_threshold: float = typer.Option(
        0.05, help="fbc: skip later blocks when the first block's residual changed less."
    ),
    seed: int = typer.Option(0, help="Noise seed."),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N."),
    dtype: str = typer.Option("float32", help="Transformer dtype: float32 | bfloat16."),
    offload: bool = typer.Option(False, help="Keep models on CPU, move each to GPU to run."),
    ulysses: int = typer.Option(
        1,
        help="Context parallelism: split each chunk's tokens over N processes (launch with "
        "torchrun --nproc_per_node N; Ulysses attention, CPU or GPU).",
    ),
    ring: int = typer.Option(1, help="Ring-attention degree (GPU only; ulysses x ring = N)."),
    progress: bool = typer.Option(None, "--progress/--no-progress", help=PROGRESS_HELP),
):
    """Generate a camera-controlled video chunk by chunk with a spatial memory."""
    from mirage.data.world import parse_size
    from mirage.pipeline import GenerationConfig
    from mirage.pipeline.config import (
        parse_memory_guidance,
        parse_readout_copy,
        parse_sky_distance,
        parse_voxel_size,
    )
    from mirage.pipeline.model_info import model_defaults
    from mirage.pipeline.runner import GenerateJob, resolve_model, run_generate

    try:
        model_dir = resolve_model(model)
        native = model_defaults(model_dir)
        chunk_frames = chunk_frames or native.get("chunk_frames", 33)
        steps = steps or native.get("num_inference_steps", 20)
        if size is None and image is None and "height" in native:
            size = f"{native['height']}x{native['width']}"
        config = GenerationConfig(
            chunk_frames=chunk_frames, num_inference_steps=steps, shift=shift,
            guidance_scale=guidance, memory_guidance=parse_memory_guidance(memory_guidance),
            memory_guidance_sigma=memory_guidance_sigma,
            readout_copy=parse_readout_copy(readout_copy),
            context_latents=context_latents, memory=memory,
            voxel_size=parse_voxel_size(voxel_size), fusion=fusion, subcells=subcells, seed=seed,
            references=references, reference_voxel=reference_voxel, cache=cache,
            cache_threshold=cache_threshold,
            sky_distance=parse_sky_distance(sky_distance),
        )  # fmt: skip
        job = GenerateJob(
            model=model_dir, out=out, trajectory=trajectory, frames=frames, fov=fov,
            geometry=geometry,
            size=parse_size(size) if size else None, image=image, scene_seed=scene,
            scene_kind=scene_kind, num_dynamic=dynamic, prompt=prompt, branch=branch, lora=lora,
            depth=depth, masks=masks, device=device, dtype=dtype, offload=offload,
            overwrite=overwrite, ulysses=ulysses, ring=ring, config=config,
        )  # fmt: skip
        paths = run_generate(job, progress=_progress(progress))
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    if paths:  # under context parallelism the first process writes
        typer.echo(f"wrote {', '.join(sorted(p.name for p in paths.values()))} to {out}")


# --- training -------------------------------------------------------------------------------


@app.command()
def preprocess(
    out: Path = typer.Option(..., help="Shard folder to write."),
    source: str = typer.Option("synthetic", help="'synthetic' or a RealEstate10K-layout folder."),
    preset: str = typer.Option(None, help="'tiny': the synthetic shards mirage-tiny trains on."),
    clips: int = typer.Option(None, help="Synthetic clips [64; tiny: 256]."),
    frames: int = typer.Option(None, help="Frames per clip, 1 + n (chunk - 1) [33]."),
    chunk_frames: int = typer.Option(None, help="Frames per training chunk, 4k + 1 [17]."),
    size: str = typer.Option(None, help="HEIGHTxWIDTH of the frames [128x128]."),
    seed: int = typer.Option(None, help="Synthetic clip seed [0]."),
    kind: str = typer.Option(None, help="Synthetic scenes: indoor | outdoor | mixed [mixed]."),
    dynamic: int = typer.Option(None, help="Moving objects per synthetic scene [1]."),
    supersample: int = typer.Option(
        None, help="Synthetic RGB rays per pixel side, anti-aliased (depth exact) [1]."
    ),
    keep_frames: bool = typer.Option(
        None, help="Store the aligned RGB frames (for `mirage train --memory rgb`)."
    ),
    decoded_writes: bool = typer.Option(
        None,
        help="Store what generation writes into the memory (for `mirage train --memory-frames "
        "decoded`); on an existing folder, adds them without rendering again.",
    ),
    stride: int = typer.Option(None, help="Frame stride inside a real clip window [1]."),
    depth_dir: Path = typer.Option(None, help="<dir>/<clip>/depth.safetensors for real clips."),
    depth_model: str = typer.Option(None, help="Depth model folder for real clips."),
    masks_dir: Path = typer.Option(None, help="<dir>/<clip>/masks.safetensors for real clips."),
    vae: Path = typer.Option(None, help="AutoencoderKLWan folder (default: tiny random VAE)."),
    model: Path = typer.Option(None, help="Wan diffusers folder (vae/, text_encoder/)."),
    threads: int = typer.Option(None, help="torch CPU threads per process (0 = default)."),
):
    """Clips -> training shards: latents, depth, masks, cameras, text (no VAE in training)."""
    options = dict(locals())
    from mirage.training.cli_args import preprocess_config
    from mirage.training.preprocess import preprocess as run

    try:
        cfg = preprocess_config(options)
        typer.echo(f"wrote shards to {run(cfg)}")
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e


@app.command()
def train(
    data: Path = typer.Option(..., help="Shard folder from `mirage preprocess`."),
    out: Path = typer.Option(..., help="Output folder (checkpoints, export)."),
    preset: str = typer.Option(None, help="'tiny': stage 0 then stage 1 of mirage-tiny."),
    stage: int = typer.Option(None, help="0 base + side branch | 1 side branch | 2 + LoRA."),
    transformer: str = typer.Option(None, help="'tiny' or a folder with transformer/."),
    side_branch: Path = typer.Option(None, help="Initial side branch (.safetensors)."),
    lora: Path = typer.Option(None, help="Initial LoRA (.safetensors, stage 2)."),
    lora_rank: int = typer.Option(None, help="LoRA rank [64]."),
    memory: str = typer.Option(
        None,
        help="latent | rgb: readouts from the latent memory or the RGB point cache "
        "(renders encoded by --vae; shards preprocessed with --keep-frames) [latent].",
    ),
    vae: Path = typer.Option(None, help="VAE folder that encodes RGB renders (--memory rgb)."),
    fusion: str = typer.Option(
        None, help="Latent-memory fusion of readouts: mean | latest | first (as generation) [mean]."
    ),
    subcells: int = typer.Option(
        None, help="Latent-memory sub-cells per cell side of the readouts (as generation) [2]."
    ),
    memory_frames: str = typer.Option(
        None,
        help="What the training memory holds: gt (the clip's frames) | decoded (what generation "
        "writes: the chunks decoded as video, re-encoded; preprocess --decoded-writes) [gt].",
    ),
    sky_distance: float = typer.Option(
        None, help="Store sky (depth +inf) this far away, as generation's --sky-distance [off]."
    ),
    readout_dropout: float = typer.Option(
        None,
        help="Probability of an empty side-branch input (no memory), the condition "
        "`--memory-guidance` pushes away from [0].",
    ),
    steps: int = typer.Option(None, help="Optimizer steps [10000]."),
    batch_size: int = typer.Option(None, help="Samples per process per step [1]."),
    lr: float = typer.Option(None, help="Peak learning rate [1e-5]."),
    schedule: str = typer.Option(None, help="constant | cosine after warmup [constant]."),
    warmup: int = typer.Option(None, help="Warmup steps [100]."),
    grad_clip: float = typer.Option(None, help="Max grad norm, 0 = off [1.0]."),
    ema: float = typer.Option(None, help="EMA decay, 0 = off [0]."),
    gradient_checkpointing: bool = typer.Option(None, help="Recompute blocks in backward."),
    mixed_precision: str = typer.Option(None, help="auto | bf16 | fp16 | no [auto]."),
    checkpoint_every: int = typer.Option(None, help="Steps between checkpoints [500]."),
    keep: int = typer.Option(None, help="Checkpoints kept [3]."),
    resume: str = typer.Option(None, help="A checkpoint folder or 'latest'."),
    workers: int = typer.Option(None, help="DataLoader workers [0]."),
    seed: int = typer.Option(None, help="Seed [0]."),
    threads: int = typer.Option(None, help="torch CPU threads (0 = default) [0]."),
    tensorboard: bool = typer.Option(None, help="Log to TensorBoard under out/logs."),
):
    """Train the side branch (stage 1), + LoRA (stage 2), or base + branch from scratch (0)."""
    options = dict(locals())
    from mirage.training.cli_args import train_configs
    from mirage.training.train import train as run

    try:
        for cfg in train_configs(options):
            typer.echo(f"stage {cfg.stage}: {run(cfg).out}")
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e


# --- convert --------------------------------------------------------------------------------


@app.command()
def convert(
    src: Path = typer.Argument(..., help="A DiffSynth-style checkpoint (official Mirage, Spatia)."),
    out: Path = typer.Option(..., help="The Mirage .safetensors file to write."),
    kind: str = typer.Option("auto", help="auto | official | spatia | lora."),
    lora_alpha: float = typer.Option(None, help="LoRA alpha (default: the rank, as official)."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out file."),
):
    """Convert a side branch or LoRA from the official code or Spatia into Mirage's format."""
    from mirage.models.convert import convert_checkpoint

    try:
        info = convert_checkpoint(src, out, kind, lora_alpha, overwrite=overwrite)
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    profile = f" (profile {info['profile']})" if info.get("profile") else ""
    typer.echo(f"wrote {info['kind']}{profile}, {info['tensors']} tensors, to {out}")


# --- memory ---------------------------------------------------------------------------------


def _load_memory(path: Path):
    """A saved memory of either kind, or one line saying what is wrong with the file."""
    from mirage.memory import load_memory

    try:
        return load_memory(path)
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e


@memory_app.command("info")
def memory_info(path: Path = typer.Argument(..., help="A memory.safetensors file.")):
    """Print the size and configuration of a saved memory (latent or RGB)."""
    mem = _load_memory(path)
    config = getattr(mem, "config", dict)()
    settings = ", ".join(f"{k} {v}" for k, v in config.items() if k != "latent_hw")
    typer.echo(
        f"{path}: {type(mem).__name__}, {mem.num_points} points"
        + (f", {settings}" if settings else "")
        + f", {mem.nbytes / 2**20:.3f} MiB"
    )


@memory_app.command("export-ply")
def memory_export_ply(
    path: Path = typer.Argument(..., help="A memory.safetensors file."),
    out: Path = typer.Argument(..., help="The .ply file to write."),
):
    """Write a saved memory as a coloured point cloud (latents: PCA to RGB)."""
    _load_memory(path).export_ply(out)
    typer.echo(f"wrote {out}")


# --- eval -----------------------------------------------------------------------------------


def _eval_command(protocol: str):
    def command(
        model: str = typer.Option("tiny", help="Model folder, or tiny (the embedded mirage-tiny)."),
        out: Path = typer.Option(..., help="Output folder (tables, JSON, contact sheets)."),
        synthetic: int = typer.Option(None, help="N held-out synthetic scenes (seeds 2**31+i)."),
        re10k: Path = typer.Option(None, help="RealEstate10K-layout folder of clips."),
        size: str = typer.Option("128x128", help="HEIGHTxWIDTH of the frames."),
        frames: int = typer.Option(33, help="Frames generated per clip: 1 + n (chunk - 1)."),
        kind: str = typer.Option("indoor", help="Synthetic scenes: indoor | outdoor."),
        dynamic: int = typer.Option(0, help="Moving objects per synthetic scene."),
        stride: int = typer.Option(1, help="RealEstate10K: source frames between clip frames."),
        max_clips: int = typer.Option(None, help="RealEstate10K: at most this many clips."),
        branch: Path = typer.Option(None, help="Side-branch checkpoint (default: in --model)."),
        lora: Path = typer.Option(None, help="LoRA checkpoint (default: in --model, if any)."),
        depth: str = typer.Option("gt", help="gt (synthetic) or a depth model folder."),
        masks: str = typer.Option("none", help="none | gt | a SAM3 model folder."),
        memory: str = typer.Option("latent", help="latent | rgb | none."),
        chunk_frames: int = typer.Option(33, help="Frames per chunk (4k + 1)."),
        steps: int = typer.Option(20, help="Denoising steps per chunk."),
        voxel_size: str = typer.Option("footprint", help=VOXEL_HELP),
        target_stride: int = typer.Option(1, help="Novel views: score every k-th frame."),
        lpips_backbone: Path = typer.Option(None, help="alexnet-owt-7be5be79.pth (TORCH_HOME)."),
        prompt: str = typer.Option(None, help="Text prompt (needs a text encoder in --model)."),
        seed: int = typer.Option(0, help="Noise seed."),
        device: str = typer.Option("auto", help="auto (accelerate's) | cpu | cuda:N."),
        dtype: str = typer.Option("float32", help="Transformer dtype: float32 | bfloat16."),
    ):
        from mirage.data.world import parse_size
        from mirage.eval.run import EvalJob, run_eval
        from mirage.pipeline import GenerationConfig
        from mirage.pipeline.config import parse_voxel_size
        from mirage.pipeline.runner import resolve_model

        try:
            config = GenerationConfig(
                chunk_frames=chunk_frames, num_inference_steps=steps, memory=memory,
                voxel_size=parse_voxel_size(voxel_size), seed=seed,
            )  # fmt: skip
            job = EvalJob(
                protocol=protocol, model=resolve_model(model), out=out, synthetic=synthetic,
                re10k=re10k,
                size=parse_size(size), frames=frames, kind=kind, num_dynamic=dynamic,
                stride=stride, max_clips=max_clips, branch=branch, lora=lora, depth=depth,
                masks=masks, device=device, dtype=dtype, prompt=prompt,
                target_stride=target_stride, lpips_backbone=lpips_backbone, config=config,
            )  # fmt: skip
            summary = run_eval(job)
        except (ValueError, FileNotFoundError) as e:
            raise typer.BadParameter(str(e)) from e
        means = ", ".join(f"{k} {v:.4g}" for k, v in summary["mean"].items() if v is not None)
        typer.echo(f"{len(summary['per_clip'])} clips: {means}; tables in {out}")

    return command


eval_app.command(
    "nvs", help="Novel views: generate each clip from its first frame, score against truth."
)(_eval_command("nvs"))
eval_app.command(
    "closed-loop", help="Go and return: score return frames against outbound frames and truth."
)(_eval_command("closed_loop"))


@app.command()
def worldscore(
    instance: Path = typer.Argument(..., help="A WorldScore instance folder."),
    model: str = typer.Option(..., help="Model folder, or tiny (the embedded mirage-tiny)."),
    depth: str = typer.Option(..., help="Depth model folder (WorldScore has no ground truth)."),
    out: Path = typer.Option(None, help="Where frames/ go (default: the instance folder)."),
    size: str = typer.Option("512x512", help="HEIGHTxWIDTH generated (multiples of 32)."),
    masks: str = typer.Option("none", help="none | a SAM3 model folder."),
    branch: Path = typer.Option(None, help="Side-branch checkpoint (default: in --model)."),
    lora: Path = typer.Option(None, help="LoRA checkpoint (default: in --model, if any)."),
    prompt: str = typer.Option(None, help="Text prompt (default: the instance's first)."),
    dataset_root: Path = typer.Option(None, help="WorldScore dataset root (start images)."),
    memory: str = typer.Option("latent", help="latent | rgb | none."),
    chunk_frames: int = typer.Option(33, help="Frames per chunk (4k + 1)."),
    steps: int = typer.Option(20, help="Denoising steps per chunk."),
    seed: int = typer.Option(0, help="Noise seed."),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N."),
    dtype: str = typer.Option("float32", help="Transformer dtype: float32 | bfloat16."),
):
    """Generate a WorldScore instance and write its frames where their evaluator reads them."""
    from mirage.data.world import parse_size
    from mirage.eval.worldscore_run import WorldScoreJob, run_worldscore
    from mirage.pipeline import GenerationConfig
    from mirage.pipeline.runner import resolve_model

    try:
        config = GenerationConfig(
            chunk_frames=chunk_frames, num_inference_steps=steps, memory=memory, seed=seed
        )
        job = WorldScoreJob(
            instance=instance, model=resolve_model(model), out=out, size=parse_size(size),
            depth=depth,
            masks=masks, branch=branch, lora=lora, prompt=prompt, dataset_root=dataset_root,
            device=device, dtype=dtype, config=config,
        )  # fmt: skip
        paths = run_worldscore(job)
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    typer.echo(f"wrote {len(paths)} frames to {paths[0].parent}")


# --- world ----------------------------------------------------------------------------------


@world_app.command("render")
def world_render(
    seed: int = typer.Option(0, help="Scene seed: the same seed gives the same scene."),
    kind: str = typer.Option("indoor", help="indoor | outdoor."),
    dynamic: int = typer.Option(0, help="Number of moving objects."),
    trajectory: str = typer.Option("orbit", help="A preset name or a trajectory JSON file."),
    frames: int = typer.Option(33, help="Number of frames (presets only)."),
    size: str = typer.Option("128x192", help="HEIGHTxWIDTH of the frames (presets only)."),
    fps: float = typer.Option(16.0, help="Frame rate of the mp4 and the camera timestamps."),
    out: Path = typer.Option(..., help="Output folder."),
):
    """Render a synthetic clip: video.mp4, depth (+ coloured preview), masks, cameras."""
    from mirage.data.world import parse_size, render_world

    try:
        height, width = parse_size(size)
        paths = render_world(
            out, seed=seed, kind=kind, num_dynamic=dynamic, trajectory=trajectory,
            num_frames=frames, height=height, width=width, fps=fps,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    typer.echo(f"wrote {', '.join(p.name for p in paths.values())} to {out}")


# --- bench ----------------------------------------------------------------------------------


@bench_app.command("readout")
def bench_readout(
    quick: bool = typer.Option(False, help="A small sweep that finishes in seconds."),
    device: str = typer.Option("cpu", help="Device to time on (cpu, cuda)."),
    out_dir: Path = typer.Option(Path("benchmarks/results"), help="Where the CSV goes."),
    threads: int = typer.Option(0, help="torch CPU threads (0: torch's default)."),
    overwrite: bool = typer.Option(False, help="Replace an existing result of these settings."),
):
    """Time LatentSpatialMemory.read against points, views and grid size."""
    from mirage.eval.bench_readout import readout_result_name, run_readout_benchmark

    _keep_results(out_dir / readout_result_name(quick, device, threads), overwrite)
    run_readout_benchmark(quick=quick, device=device, out_dir=out_dir, threads=threads)


def _keep_results(path: Path, overwrite: bool) -> None:
    """Results on disk (committed figures among them) are replaced only when asked."""
    if path.exists() and not overwrite:
        raise typer.BadParameter(
            f"{path} exists; pass --overwrite to replace it, or --out-dir for a new folder"
        )


@bench_app.command("memory")
def bench_memory(
    quick: bool = typer.Option(False, help="Tiny VAE, 32x48 frames, 1..3 chunks (seconds)."),
    size: str = typer.Option("128x224", help="HEIGHTxWIDTH (multiples of 32)."),
    chunks: int = typer.Option(10, help="Measure after 1..CHUNKS chunks."),
    chunk_frames: int = typer.Option(33, help="Frames per chunk (4k + 1)."),
    repeats: int = typer.Option(1, help="Timed reads per row (median)."),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N."),
    out_dir: Path = typer.Option(Path("benchmarks/results"), help="Where CSV and PNG go."),
    overwrite: bool = typer.Option(False, help="Replace an existing result of these settings."),
):
    """Read cost and cache size: latent memory vs RGB point cache + Wan2.2 VAE, side by side."""
    from dataclasses import replace

    from mirage.data.world import parse_size
    from mirage.eval.bench_memory import (
        QUICK,
        MemoryBenchConfig,
        memory_result_name,
        run_memory_benchmark,
    )

    try:
        if quick:
            cfg = replace(QUICK, device=device)
            name = f"memory_cost_quick_{device.split(':')[0]}"
        else:
            height, width = parse_size(size)
            cfg = MemoryBenchConfig(
                height=height, width=width, chunks=tuple(range(1, chunks + 1)),
                chunk_frames=chunk_frames, repeats=repeats, device=device,
            )  # fmt: skip
            name = None
        _keep_results(out_dir / f"{name or memory_result_name(cfg)}.csv", overwrite)
        run_memory_benchmark(cfg, out_dir=out_dir, name=name)
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e


def main() -> None:
    app()


if __name__ == "__main__":
    main()
