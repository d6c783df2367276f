"""Time the synthetic world's ray-caster: ms per frame at 128x128 and 480x832, indoor/outdoor.

    python benchmarks/synthetic_render.py [--repeats 5] [--threads 1,2]

Renders an orbit of T frames in one call (2 moving objects), takes the median over repeats
and scenes for each torch thread count (a busy 2-core machine often renders faster on one
thread than on two: the load average is in each row; the CPU time of the process per frame
is less sensitive to other processes than the wall time), and writes
benchmarks/results/synthetic_render.csv with the machine description beside it.
Goals on a 2-core CPU: <= 20 ms per 128x128 frame, <= 300 ms per 480x832 frame.
"""

import argparse
import os
import time
from pathlib import Path

import torch

from mirage.data import make_trajectory
from mirage.eval.machine import describe_machine, write_rows
from mirage.synthetic import make_scene

CASES = [(128, 128, 16, 20.0), (480, 832, 4, 300.0)]  # height, width, frames per call, goal ms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", default="1,2", help="torch thread counts to time, e.g. 1,2")
    parser.add_argument("--seeds", type=int, default=3, help="scenes per kind")
    args = parser.parse_args()
    rows = []
    for threads, kind in [
        (int(n), k) for n in args.threads.split(",") for k in ("indoor", "outdoor")
    ]:
        torch.set_num_threads(threads)
        for H, W, T, goal in CASES:
            per_frame, cpu = [], []  # wall ms, and CPU ms of this process (all its threads)
            for seed in range(args.seeds):
                scene = make_scene(seed, kind, num_dynamic=2)
                start = scene.start_camera(H, W)
                cams = make_trajectory("orbit", start, T, degrees=90, up=(0.0, 1.0, 0.0))
                scene.render(cams[:1])  # warm-up
                for _ in range(args.repeats):
                    t0, c0 = time.perf_counter(), time.process_time()
                    scene.render(cams)
                    per_frame.append((time.perf_counter() - t0) / T * 1000)
                    cpu.append((time.process_time() - c0) / T * 1000)
            per_frame.sort()
            cpu.sort()
            row = {
                "kind": kind,
                "height": H,
                "width": W,
                "frames_per_call": T,
                "ms_per_frame_median": round(per_frame[len(per_frame) // 2], 2),
                "ms_per_frame_min": round(per_frame[0], 2),
                "cpu_ms_per_frame_median": round(cpu[len(cpu) // 2], 2),
                "goal_ms": goal,
                "threads": torch.get_num_threads(),
                "load_avg_1min": round(os.getloadavg()[0], 2),
            }
            rows.append(row)
            print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    out = Path(__file__).parent / "results" / "synthetic_render.csv"
    write_rows(rows, out, describe_machine("cpu"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
