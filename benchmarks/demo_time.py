"""Wall time of `mirage demo` and `mirage demo --quick` as a user runs them, with `import torch`
alone beside them (the floor every command pays on this machine).

    python benchmarks/demo_time.py [--repeats 3]

Each run is a fresh process (`python -m mirage demo --out TMP [--quick]`), so every import is
paid as a user pays it; the three commands alternate so a busy spell of a shared machine falls
on all of them. Prints the runs and their medians; writes benchmarks/results/demo_time_cpu.csv
and its .machine.json. The model's targets: the full demo <= 60 s, --quick <= 20 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
COMMANDS = {
    "import torch": ["-c", "import torch"],
    "mirage demo --quick": ["-m", "mirage", "demo", "--quick", "--out"],
    "mirage demo": ["-m", "mirage", "demo", "--out"],
}


def wall(args: list[str], out: Path) -> float:
    """Seconds of one fresh process (`out` is appended where the command takes a folder)."""
    cmd = [sys.executable, *args] + ([str(out)] if args[-1] == "--out" else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(RESULTS / "demo_time_cpu.csv"))
    args = p.parse_args(argv)
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1, got {args.repeats}")

    from mirage.eval.machine import describe_machine, write_rows

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name, cmd in COMMANDS.items():
                s = wall(cmd, Path(tmp) / f"demo-{r}")
                rows.append({"command": name, "repeat": r, "seconds": round(s, 2)})
                print(f"{name:<22} run {r}: {s:6.2f} s", flush=True)
    for name in COMMANDS:
        times = [row["seconds"] for row in rows if row["command"] == name]
        print(f"{name:<22} median {statistics.median(times):6.2f} s  (min {min(times):.2f})")
    machine = describe_machine("cpu")
    machine["command"] = " ".join(["python benchmarks/demo_time.py", *(argv or sys.argv[1:])])
    machine["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")
    write_rows(rows, Path(args.out), machine)


if __name__ == "__main__":
    main()
