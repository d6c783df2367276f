"""How much a latent-memory read loses, per fusion and sub-cell setting, with no model.

    OMP_NUM_THREADS=1 python benchmarks/readout_quality.py --shards out/tiny-v2/shards
        [--clips 40] [--model mirage/assets/mirage-tiny]

For every `loop` clip among the first `--clips` training shards (33 frames; the shards keep the
latent-aligned frames 0, 4, ..., 32 with their image latents, exact depth and cameras), the
memory is written with the way out (aligned frames 0-16) and read at the way back (frames
20-32, the poses of 12-0). Each readout is decoded by the model's VAE as images and scored
against the shard's frames: the loss of the read itself, beside the exact image latents of
those frames (the ceiling). Writes benchmarks/results/readout_quality_tiny_cpu.csv.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = {  # name -> LatentSpatialMemory keywords
    "one point per cell, latest": dict(voxel_size="footprint", fusion="latest"),
    "one point per cell, mean": dict(voxel_size="footprint", fusion="mean"),
    "one point per cell, appending": dict(voxel_size=None),
    "2x2 sub-cells, mean (default)": dict(voxel_size="footprint", fusion="mean", subcells=2),
    "4x4 sub-cells, mean": dict(voxel_size="footprint", fusion="mean", subcells=4),
}
OUT, BACK = list(range(0, 5)), list(range(5, 9))  # aligned frames of the way out / back


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", required=True)
    p.add_argument("--clips", type=int, default=40)
    p.add_argument("--model", default=None)
    p.add_argument("--out", default=str(RESULTS / "readout_quality_tiny_cpu.csv"))
    args = p.parse_args(argv)

    import torch

    from mirage.data.shards import check_shard_dir, load_shard
    from mirage.eval.machine import describe_machine, write_rows
    from mirage.eval.metrics import psnr
    from mirage.geometry import Cameras
    from mirage.memory import LatentSpatialMemory
    from mirage.models.loading import TINY_MODEL_DIR
    from mirage.models.vae import VideoVAE, load_autoencoder
    from mirage.pipeline.conditioning import observation

    torch.set_num_threads(1)
    model = Path(args.model) if args.model else TINY_MODEL_DIR
    vae = VideoVAE(load_autoencoder(model / "vae"))
    scores: dict[str, list] = {name: [] for name in [*SETTINGS, "exact image latents"]}
    headers = check_shard_dir(Path(args.shards))[: args.clips]
    for header in headers:
        if header["source"]["trajectory"] != "loop":
            continue
        t, meta = load_shard(header["path"])
        cams = Cameras(t["K"], t["c2w"], meta["height"], meta["width"])
        latents, depth, exclude = t["image_latents"], t["depth"], t["exclude"]
        truth = t["frames"][BACK].float() / 255
        with torch.no_grad():
            for name, kw in SETTINGS.items():
                mem = LatentSpatialMemory(meta["channels"], dtype=torch.float32, **kw)
                obs = observation(mem, None, latents[OUT], depth[OUT], cams[OUT], exclude[OUT],
                                  True)  # fmt: skip
                mem.observe(obs)
                read = mem.read(cams[BACK], tuple(meta["latent_hw"]))
                shown = psnr(vae.decode_images(read.latents.float()), truth).mean
                scores[name].append((shown, read.mask.float().mean().item()))
            exact = psnr(vae.decode_images(latents[BACK]), truth).mean
            scores["exact image latents"].append((exact, 1.0))
    rows = [
        {"read": name, "psnr_way_back": round(statistics.mean(s for s, _ in v), 2),
         "coverage": round(statistics.mean(c for _, c in v), 3), "clips": len(v)}
        for name, v in scores.items()
    ]  # fmt: skip
    for r in rows:
        print(f"{r['read']:32s} {r['psnr_way_back']:6.2f} dB  coverage {r['coverage']:.3f}")
    machine = describe_machine("cpu")
    used = sys.argv[1:] if argv is None else argv
    machine["command"] = " ".join(["python benchmarks/readout_quality.py", *used])
    machine["setup"] = f"{model.name} VAE; way back of {rows[0]['clips']} training loops"
    write_rows(rows, Path(args.out), machine)


if __name__ == "__main__":
    main()
