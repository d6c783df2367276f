"""Seconds per pipeline stage of a few chunks of generation, the memory's share, peak memory.

    python benchmarks/generation_stages.py --config wan22 --device cuda --size 480x832 \\
        --dtype bfloat16 --offload both                                 # 5B, one GPU
    python benchmarks/generation_stages.py --config wan22 --layers 2 --size 64x64 \\
        --frames 17 --chunk-frames 9 --steps 1                          # the script, on a CPU

Random weights (stage times do not depend on them) in the real classes: the Wan2.2-TI2V-5B
transformer (`--layers` keeps fewer of its 30 blocks to fit a CPU) with a side branch, the
Wan2.2 VAE (z 48, 16x), flow UniPC; a synthetic scene gives exact depth, so no depth model
runs. Each run happens in its own subprocess so peak memory is its own
(`torch.cuda.max_memory_allocated` on CUDA, peak RSS on CPU). `--offload both` runs with the
models on the device and with per-stage offload, side by side. The memory's share is (read +
insert) / chunk time, the goal of the paper's claim (<= 2 %). Writes
benchmarks/results/generation_stages_<config>_<size>_<device>.csv with the machine.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from mirage.eval.machine import describe_machine, write_rows

RESULTS = Path(__file__).resolve().parent / "results"


def build(args, device: torch.device):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from mirage.models.loading import (
        make_scheduler,
        tiny_components,
        wan22_ti2v_transformer_config,
        wan22_vae_config,
    )
    from mirage.models.transformer import MirageTransformer
    from mirage.models.vae import VideoVAE
    from mirage.perception import GroundTruthDepth
    from mirage.pipeline import MiragePipeline
    from mirage.synthetic import make_scene

    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    if args.config == "tiny":
        parts = tiny_components(0)
        base, vae = parts.transformer, parts.vae
    else:
        cfg = wan22_ti2v_transformer_config()
        cfg["num_layers"] = args.layers or cfg["num_layers"]
        base = WanTransformer3DModel(**cfg)
        vae = AutoencoderKLWan(**wan22_vae_config())
    load = torch.device("cpu") if args.offload_run else device
    model = MirageTransformer.from_base(base.to(load, dtype)).eval().requires_grad_(False)
    vae = vae.to(load).eval().requires_grad_(False)
    scene = make_scene(args.scene)
    pipe = MiragePipeline(
        model, VideoVAE(vae), make_scheduler(5.0), GroundTruthDepth(scene), device=device,
        offload=args.offload_run,
    )  # fmt: skip
    return pipe, scene


def one_run(args) -> dict:
    from mirage.data.trajectories import make_trajectory
    from mirage.data.world import parse_size
    from mirage.pipeline import GenerationConfig

    device = torch.device(args.device)
    H, W = parse_size(args.size)
    pipe, scene = build(args, device)
    cams = make_trajectory("orbit", scene.start_camera(H, W), args.frames)
    image = scene.render(cams[0]).rgb[0]
    cfg = GenerationConfig(
        chunk_frames=args.chunk_frames, num_inference_steps=args.steps, memory=args.memory
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    result = pipe.generate(image, cams, config=cfg, progress=False)
    wall = time.perf_counter() - t0
    stages = ("read", "denoise", "decode", "encode", "masks", "depth", "insert")
    per_stage = {s: sum(t[s] for t in result.timings) for s in stages}
    chunk_total = sum(per_stage.values())
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {
        "config": args.config, "layers": args.layers or "all", "size": args.size,
        "frames": args.frames, "chunks": len(result.timings), "steps": args.steps,
        "memory": args.memory, "offload": args.offload_run, "dtype": args.dtype,
        **{f"{s}_s": round(v, 4) for s, v in per_stage.items()},
        "chunk_s": round(chunk_total / len(result.timings), 4),
        "memory_share": round((per_stage["read"] + per_stage["insert"]) / chunk_total, 5),
        "wall_s": round(wall, 3), "peak_gib": round(peak, 3),
        "cache_points": result.timings[-1]["cache_points"],
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=("tiny", "wan22"), default="wan22")
    p.add_argument("--layers", type=int, default=None, help="keep this many DiT blocks [all]")
    p.add_argument("--size", default="480x832")
    p.add_argument("--frames", type=int, default=97, help="1 + chunks x (chunk_frames - 1)")
    p.add_argument("--chunk-frames", type=int, default=33)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--memory", default="latent", choices=("latent", "rgb", "none"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", help="transformer dtype (bfloat16 on a GPU)")
    p.add_argument("--offload", choices=("off", "on", "both"), default="off")
    p.add_argument("--scene", type=int, default=900_001)
    p.add_argument("--out", default=None, help="CSV path (default: benchmarks/results/...)")
    p.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--offload-run", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one_run:
        print(json.dumps(one_run(args)))
        return
    if args.offload != "off" and not args.device.startswith("cuda"):
        raise SystemExit("--offload on/both needs a CUDA device (on a CPU nothing moves)")
    runs = {"off": [False], "on": [True], "both": [False, True]}[args.offload]
    rows = []
    for offload in runs:
        cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--one-run"]
        cmd += ["--offload-run"] if offload else []
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    name = f"generation_stages_{args.config}_{args.size}_{args.device.split(':')[0]}.csv"
    path = Path(args.out) if args.out else RESULTS / name
    write_rows(rows, path, describe_machine(args.device))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
