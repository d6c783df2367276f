"""Cache read cost and size: latent memory vs RGB point cache + Wan2.2 VAE (random weights).

    python benchmarks/memory_cost.py [--quick] [--size 128x224] [--chunks 10] [--device cuda]

Same as `mirage bench memory`. Writes benchmarks/results/memory_cost_<H>x<W>_<device>.csv,
the plot (.png) and the machine description (.machine.json) beside it.
"""

import argparse
from dataclasses import replace
from pathlib import Path

from mirage.eval.bench_memory import QUICK, MemoryBenchConfig, run_memory_benchmark

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", default="128x224")
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out-dir", default=None, help="[benchmarks/results]")
    args = parser.parse_args()
    out = Path(args.out_dir) if args.out_dir else Path(__file__).parent / "results"
    if args.quick:
        cfg, name = replace(QUICK, device=args.device), f"memory_cost_quick_{args.device}"
    else:
        h, w = (int(v) for v in args.size.lower().split("x"))
        cfg = MemoryBenchConfig(
            height=h,
            width=w,
            chunks=tuple(range(1, args.chunks + 1)),
            repeats=args.repeats,
            device=args.device,
        )
        name = None
    run_memory_benchmark(cfg, out_dir=out, name=name)
