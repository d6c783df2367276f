"""Seconds per training step and peak memory of stage 1 (side branch) and stage 2 (+ LoRA).

    python benchmarks/train_step.py --config tiny --device cpu                  # CPU, mirage-tiny
    python benchmarks/train_step.py --config wan22 --device cuda \\
        --frames 33 --size 480x832 --gradient-checkpointing                     # 5B, one GPU

Random weights (the figures do not depend on them) and a synthetic batch of the shapes a
training chunk has: [context | first frame | targets] latents, the side-branch readout
(C + 1 channels) and a text embedding. Each stage runs in its own subprocess, so peak memory
is per stage: `torch.cuda.max_memory_allocated` on CUDA, peak resident set size (ru_maxrss)
on CPU. The step is the training loop's: flow-matching loss under bf16 autocast on CUDA (fp32
on CPU), backward, grad clipping, AdamW on fp32 master weights, zero_grad. Writes
benchmarks/results/train_step_<config>_<device>.csv and the machine description beside it.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from mirage.eval.machine import describe_machine, write_rows


def build(config: str, stage: int, device: torch.device, rank: int, side_every: int, ckpt: bool,
          layers: int | None = None):  # fmt: skip
    from diffusers import WanTransformer3DModel

    from mirage.models.loading import tiny_transformer_config, wan22_ti2v_transformer_config
    from mirage.models.lora import add_lora, trainable_parameters
    from mirage.models.transformer import MirageTransformer

    cfg = tiny_transformer_config() if config == "tiny" else wan22_ti2v_transformer_config()
    cfg["num_layers"] = layers or cfg["num_layers"]  # fewer blocks: the script on a CPU
    torch.manual_seed(0)
    with torch.device(device):  # fp32 master weights, built where they train
        base = WanTransformer3DModel(**cfg)
    model = MirageTransformer.from_base(base, side_every=side_every)
    if stage == 2:
        add_lora(model, rank=rank, alpha=rank)
    params = trainable_parameters(model, stage)
    if ckpt:
        model.enable_gradient_checkpointing()
    return model.train(), params


def one_stage(args) -> dict:
    from mirage.training.flow import flow_matching_loss

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, params = build(
        args.config, args.stage, device, args.rank, args.side_every, args.gradient_checkpointing,
        args.layers,
    )  # fmt: skip
    opt = torch.optim.AdamW(params, lr=1e-5)
    C, D = model.config.in_channels, model.config.text_dim
    s = 8 if args.config == "tiny" else 16  # the VAE's spatial factor
    H, W = (int(v) for v in args.size.split("x"))
    k = (args.frames - 1) // 4
    F = args.context + 1 + k
    g = torch.Generator().manual_seed(0)
    batch = {
        "latents": torch.randn(args.batch_size, C, F, H // s, W // s, generator=g).to(device),
        "condition": torch.randn(args.batch_size, C + 1, F, H // s, W // s, generator=g).to(device),
        "num_clean": args.context + 1,
        "text": torch.zeros(args.batch_size, args.text_len, D, device=device),
    }
    cuda = device.type == "cuda"

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    times = []
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(args.warmup + args.steps):
        sync()
        t0 = time.perf_counter()
        loss = flow_matching_loss(model, batch, g, autocast=autocast)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        peak_kind = "cuda_max_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
        peak_kind = "cpu_peak_rss"
    times.sort()
    return {
        "config": args.config,
        "stage": args.stage,
        "device": str(device),
        "batch_size": args.batch_size,
        "frames": args.frames,
        "size": args.size,
        "latent_frames": F,
        "tokens": F * (H // s // 2) * (W // s // 2) * args.batch_size,
        "gradient_checkpointing": args.gradient_checkpointing,
        "layers": args.layers or "all",
        "trainable_params": sum(p.numel() for p in params),
        "total_params": sum(p.numel() for p in model.parameters()),
        "steps": args.steps,
        "seconds_per_step_mean": sum(times) / len(times),
        "seconds_per_step_median": times[len(times) // 2],
        "peak_memory_gib": round(peak, 4),
        "peak_memory_kind": peak_kind,
        "final_loss": float(loss),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=("tiny", "wan22"), default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=int, default=None, help="chunk frames 4k+1 [tiny 9, wan22 33]")
    p.add_argument("--size", default=None, help="HxW frames [tiny 64x64, wan22 480x832]")
    p.add_argument("--batch-size", type=int, default=None, help="[tiny 8, wan22 1]")
    p.add_argument("--context", type=int, default=2, help="context latents in front")
    p.add_argument("--text-len", type=int, default=None, help="text tokens [tiny 1, wan22 512]")
    p.add_argument("--rank", type=int, default=64, help="stage 2 LoRA rank")
    p.add_argument("--side-every", type=int, default=2)
    p.add_argument("--layers", type=int, default=None, help="keep this many DiT blocks [all]")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--stages", default="1,2")
    p.add_argument("--stage", type=int, default=None, help=argparse.SUPPRESS)  # child process
    p.add_argument("--out-dir", default="benchmarks/results")
    args = p.parse_args(argv)
    tiny = args.config == "tiny"
    args.frames = args.frames or (9 if tiny else 33)
    args.size = args.size or ("64x64" if tiny else "480x832")
    args.batch_size = args.batch_size or (8 if tiny else 1)
    args.text_len = args.text_len or (1 if tiny else 512)

    if args.stage is not None:  # child: one stage, JSON on the last stdout line
        print(json.dumps(one_stage(args)))
        return
    rows = []
    given = list(argv if argv is not None else sys.argv[1:])
    child = []  # the same options without --stages
    while given:
        a = given.pop(0)
        if a == "--stages":
            given.pop(0)
        elif not a.startswith("--stages="):
            child.append(a)
    for stage in (int(s) for s in args.stages.split(",")):
        cmd = [sys.executable, __file__, *child, "--stage", str(stage)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
        if proc.returncode != 0:
            sys.exit(f"stage {stage} failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"stage {stage}: {row['seconds_per_step_median']:.4f} s/step (median of {args.steps}), "
            f"peak {row['peak_memory_gib']:.3f} GiB ({row['peak_memory_kind']}), "
            f"{row['trainable_params'] / 1e6:.2f} M of {row['total_params'] / 1e6:.2f} M trainable"
        )
    device = args.device.replace(":", "")
    machine = describe_machine(args.device)
    machine["threads_used"] = args.threads or torch.get_num_threads()
    path = Path(args.out_dir) / f"train_step_{args.config}_{device}.csv"
    write_rows(rows, path, machine)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
