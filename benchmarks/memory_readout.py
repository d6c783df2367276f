"""Time LatentSpatialMemory.read: points 10k..2M, views 1..16, 44x80 and 30x52 latent grids.

    python benchmarks/memory_readout.py [--quick] [--device cuda] [--threads N]

Same as `mirage bench readout`. Writes benchmarks/results/memory_readout_<device>.csv and the
machine description beside it.
"""

import argparse
from pathlib import Path

from mirage.eval.bench_readout import run_readout_benchmark

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    out = Path(__file__).parent / "results"
    run_readout_benchmark(args.quick, args.device, out, args.threads)
