"""The VAE's 3D convolutions on the CPU: `F.conv3d` against sums of 2D convolutions.

    OMP_NUM_THREADS=1 python benchmarks/cpu_conv3d.py [--model mirage/assets/mirage-tiny]
        [--repeats 7] [--threads 1]

Times, with `mirage.models.cpu_conv.split_conv3d` off and on alternating in one run (median of
`--repeats`): the mirage-tiny VAE decoding one 9-frame chunk, encoding it as a video and as 9
images, and one whole 17-frame loop of `generate` (latent memory, 4 steps, ground-truth depth).
Checks that both paths give the same frames (to float rounding). Writes
benchmarks/results/cpu_conv3d_tiny_cpu.csv and its .machine.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS / "cpu_conv3d_tiny_cpu.csv"))
    args = p.parse_args(argv)

    import torch

    from mirage.eval.loops import loop_cameras
    from mirage.eval.machine import describe_machine, write_rows
    from mirage.models.cpu_conv import split_conv3d
    from mirage.models.loading import TINY_MODEL_DIR
    from mirage.pipeline import GenerationConfig
    from mirage.pipeline.loading import build_pipeline
    from mirage.synthetic import make_scene

    torch.set_num_threads(args.threads)
    model = Path(args.model) if args.model else TINY_MODEL_DIR
    scene = make_scene(900_100, "indoor")
    cams = loop_cameras(scene, 64, 64, 17, "pan_right", 50.0)
    gt = scene.render(cams, supersample=2).rgb
    pipe = build_pipeline(model, depth="gt", masks="none", scene=scene)
    vae, cfg = pipe.vae, GenerationConfig(chunk_frames=9, num_inference_steps=4, memory="latent")
    clip = gt[:9]
    latents = vae.encode_video(clip)
    tasks = {
        "decode 9-frame chunk": lambda: vae.decode(latents),
        "encode 9-frame video": lambda: vae.encode_video(clip),
        "encode 9 images": lambda: vae.encode_images(clip, batch_size=9),
        "generate 17-frame loop": lambda: (
            pipe.generate(gt[0], cams, config=cfg, progress=False).frames
        ),
    }
    seconds = {(name, split): [] for name in tasks for split in (False, True)}
    outputs = {}
    with torch.no_grad():
        for r in range(args.repeats + 1):  # round 0 warms up, untimed
            for name, fn in tasks.items():
                for split in (False, True):
                    split_conv3d(vae.vae, enabled=split)
                    s, out = timed(fn)
                    outputs[name, split] = out
                    if r:
                        seconds[name, split].append(s)
    rows = []
    for name in tasks:
        conv3d = statistics.median(seconds[name, False])
        conv2d = statistics.median(seconds[name, True])
        diff = (outputs[name, True] - outputs[name, False]).abs().max().item()
        rows.append({
            "task": name, "conv3d_s": round(conv3d, 4), "split_s": round(conv2d, 4),
            "speedup": round(conv3d / conv2d, 2), "max_abs_difference": f"{diff:.1e}",
        })  # fmt: skip
        print("  ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
        if diff > 1e-3:
            raise SystemExit(f"{name}: the two paths differ by {diff:.2e}")
    machine = describe_machine("cpu")
    machine["torch_threads"] = torch.get_num_threads()
    used = sys.argv[1:] if argv is None else argv
    machine["command"] = " ".join(["python benchmarks/cpu_conv3d.py", *used])
    machine["setup"] = f"{model.name}: 64x64, chunks of 9; median of {args.repeats}, alternating"
    write_rows(rows, Path(args.out), machine)


if __name__ == "__main__":
    main()
