"""mirage-tiny on held-out synthetic scenes: PSNR vs ground truth and closed-loop PSNR per memory.

    OMP_NUM_THREADS=1 python benchmarks/tiny_quality.py [--scenes 20] [--frames 33] [--steps 10]
        [--model mirage/assets/mirage-tiny] [--shards out/tiny/shards]

Each scene (seeds HELDOUT_SEEDS from 900100, indoor and outdoor alternating) is flown along the
demo's loop (out along a pan, back along the same poses) with latent, rgb and no memory, from
the same first frame and noise. With `--shards`, the scene seeds are checked against the
training shards' scene seeds first (none may be shared). Writes
benchmarks/results/tiny_quality.csv (one row per scene and memory), tiny_quality.json (means
and the machine) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def training_scene_seeds(shards: Path) -> set[tuple[str, int]]:
    """(kind, scene seed) of every clip in a shard folder (from the shard headers)."""
    from mirage.data.shards import check_shard_dir

    return {(h["source"]["kind"], int(h["source"]["scene_seed"])) for h in check_shard_dir(shards)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--scenes", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=900_100)
    p.add_argument("--frames", type=int, default=33)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--shards", default=None)
    p.add_argument("--out", default=str(RESULTS / "tiny_quality"))
    args = p.parse_args(argv)

    import torch

    from mirage.atomic import write_json
    from mirage.eval.loops import HELDOUT_SEEDS, MODES, loop_cameras, run_loop
    from mirage.eval.machine import describe_machine
    from mirage.eval.report import write_csv
    from mirage.models.loading import TINY_MODEL_DIR as DEFAULT_MODEL
    from mirage.perception import GroundTruthDepth
    from mirage.pipeline.loading import build_pipeline
    from mirage.synthetic import make_scene

    model = Path(args.model) if args.model else DEFAULT_MODEL
    scenes = [
        (args.first_seed + i, "indoor" if i % 2 == 0 else "outdoor") for i in range(args.scenes)
    ]
    for seed, _ in scenes:
        if seed not in HELDOUT_SEEDS:
            raise SystemExit(f"scene seed {seed} is outside the held-out range {HELDOUT_SEEDS}")
    if args.shards:
        seen = training_scene_seeds(Path(args.shards))
        shared = [s for s in scenes if s in seen]
        if shared:
            raise SystemExit(f"scenes {shared} appear in the training shards")
        print(f"checked: none of the {len(scenes)} scenes is among {len(seen)} training scenes")

    pipe = None
    rows, t0 = [], time.perf_counter()
    for seed, kind in scenes:
        scene = make_scene(seed, kind)
        if pipe is None:
            pipe = build_pipeline(model, depth="gt", masks="none", scene=scene)
        else:
            pipe.depth = GroundTruthDepth(scene)
        cams = loop_cameras(scene, 64, 64, args.frames, "pan_right", 50.0)
        gt = scene.render(cams).rgb
        runs = run_loop(pipe, cams, gt, args.steps, 9, seed=0, progress=False)
        for mode in MODES:
            m = runs[mode]["metrics"]
            rows.append({
                "scene": seed, "kind": kind, "memory": mode, "psnr": m["psnr_mean"],
                "psnr_return": m["psnr_return_mean"], "ssim": m["ssim_mean"],
                "closed_loop_psnr": m["closed_loop_psnr_mean"], "seconds": m["seconds_total"],
                "cache_mib": m["cache_mib_per_chunk"][-1],
            })  # fmt: skip
        line = "  ".join(f"{r['memory']} {r['psnr']:.2f}/{r['closed_loop_psnr']:.2f}"
                         for r in rows[-3:])  # fmt: skip
        print(f"scene {seed} {kind}: {line}", flush=True)

    keys = ("psnr", "psnr_return", "ssim", "closed_loop_psnr", "seconds", "cache_mib")
    means = {
        mode: {k: sum(r[k] for r in rows if r["memory"] == mode) / len(scenes) for k in keys}
        for mode in MODES
    }
    psnr = {(r["scene"], r["memory"]): r["psnr"] for r in rows}
    wins = sum(psnr[seed, "latent"] > psnr[seed, "none"] for seed, _ in scenes)
    summary = {
        "command": "python benchmarks/tiny_quality.py " + " ".join(argv or []),
        "model": str(model),
        "scenes": [list(s) for s in scenes],
        "frames": args.frames,
        "steps": args.steps,
        "trajectory": "loop, out along pan_right 50 degrees and back, 64x64, chunks of 9",
        "means": means,
        "latent_beats_none_psnr_scenes": wins,
        "latent_minus_none_db": {
            k: means["latent"][k] - means["none"][k] for k in ("psnr", "closed_loop_psnr")
        },
        "latent_minus_rgb_db": {
            k: means["latent"][k] - means["rgb"][k] for k in ("psnr", "closed_loop_psnr")
        },
        "wall_seconds": time.perf_counter() - t0,
        "machine": describe_machine("cpu"),
        "torch_threads": torch.get_num_threads(),
    }
    out = Path(args.out)
    write_csv(out.with_suffix(".csv"), rows, list(rows[0]))
    write_json(out.with_suffix(".json"), summary)
    print(f"{'memory':<8}{'PSNR':>8}{'PSNR ret':>10}{'SSIM':>8}{'closed-loop':>13}")
    for mode in MODES:
        m = means[mode]
        print(
            f"{mode:<8}{m['psnr']:>8.2f}{m['psnr_return']:>10.2f}{m['ssim']:>8.3f}"
            f"{m['closed_loop_psnr']:>13.2f}"
        )
    print(json.dumps(summary["latent_minus_none_db"]), json.dumps(summary["latent_minus_rgb_db"]))


if __name__ == "__main__":
    main()
