"""What bounds mirage-tiny: its VAE's chunk-as-video round trip per frame, and how far the
image latents the memory stores are from the video latents the DiT generates.

    OMP_NUM_THREADS=1 python benchmarks/tiny_latent_gap.py [--model mirage/assets/mirage-tiny]
        [--shards out/tiny-v2/shards] [--clips 60]

1. For held-out scenes 900100-900103 (indoor, outdoor, indoor, outdoor), the demo's 33-frame
   loop rendered at the model's supersampling goes through the VAE chunk by chunk (as
   generation decodes): PSNR of every frame; beside it the same for a camera that stays at
   frame 0's pose (what the 4-frames-per-latent path loses without motion) and the mean of
   single-frame (image latent) round trips of the loop's frames. 2. With `--shards`:
   per-channel correlation between each target slot's video latent and the image latent of
   the frame whose camera the slot takes, and the share of the video latents' variance a
   least-squares linear map (with bias) from image latents explains, and their mean squared
   gap as a share of the image latents' mean square (what copying a readout as it is would
   miss); where the shards hold decoded writes (`scripts/add_decoded_writes.py`), the PSNR of
   what a training memory holds decoded alone, ground-truth image latents against decoded
   writes. Prints the figures and writes them to benchmarks/results/tiny_latent_gap.json.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def round_trip_per_frame(vae, ss: int) -> dict:
    from mirage.eval.loops import loop_cameras, video_round_trip
    from mirage.eval.metrics import psnr
    from mirage.synthetic import make_scene

    out = {}
    for seed, kind in ((900100, "indoor"), (900101, "outdoor"), (900102, "indoor"),
                       (900103, "outdoor")):  # fmt: skip
        scene = make_scene(seed, kind)
        gt = scene.render(loop_cameras(scene, 64, 64, 33, "pan_right", 50.0), supersample=ss).rgb
        still = gt[:1].expand_as(gt).contiguous()  # the camera never leaves frame 0's pose
        images = vae.decode_images(vae.encode_images(gt))
        out[f"{seed} {kind}"] = {
            "loop": psnr(video_round_trip(vae, gt, 9), gt).per_frame.tolist(),
            "static_camera": psnr(video_round_trip(vae, still, 9), still).per_frame.tolist(),
            "single_frames_mean": float(psnr(images, gt).mean),
        }
    return out


def latent_gap(shards: Path, clips: int, vae) -> dict:
    from mirage.data.shards import load_shard
    from mirage.eval.metrics import psnr
    from mirage.training.samples import WRITTEN_FROM

    # the latent a training memory holds for each `--memory-frames` choice
    written = {latents: [] for latents, _ in WRITTEN_FROM.values()}
    video, image, scored = [], [], 0
    for f in sorted(glob.glob(str(shards / "clip-*.safetensors")))[:clips]:
        t, _ = load_shard(f)
        if set(written) <= set(t) and "frames" in t:  # what each memory shows, decoded alone
            frames = t["frames"][1:].float() / 255  # frame 0 is the given image in both
            scored += 1
            for key, scores in written.items():
                scores.append(float(psnr(vae.decode_images(t[key][1:]), frames).mean))
        cl, il = t["chunk_latents"], t["image_latents"]  # [n,k+1,C,h,w], [L,C,h,w]
        k = cl.shape[1] - 1
        for c in range(cl.shape[0]):
            for j in range(1, k + 1):  # slot j of chunk c takes aligned frame c k + j
                video.append(cl[c, j])
                image.append(il[c * k + j])
    V = torch.stack(video).permute(0, 2, 3, 1).reshape(-1, video[0].shape[0]).double()
    X = torch.stack(image).permute(0, 2, 3, 1).reshape(-1, image[0].shape[0]).double()
    corr = [float(torch.corrcoef(torch.stack([V[:, i], X[:, i]]))[0, 1]) for i in range(V.shape[1])]
    X1 = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
    residual = V - X1 @ torch.linalg.lstsq(X1, V).solution
    r2 = 1 - float(residual.var(0).sum() / V.var(0).sum())
    # the copy a memory readout offers as it is: the squared gap as a share of the image
    # latents' mean square (0: identical; ~1 and more: no closer than a zero latent)
    share = float((V - X).pow(2).mean() / X.pow(2).mean())
    out = {"cells": len(V), "channel_correlation": corr, "linear_r2": r2, "gap_share": share}
    if scored:
        out["memory_psnr"] = {k: sum(v) / scored for k, v in written.items()}
        out["memory_psnr_clips"] = scored
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--shards", default=None)
    p.add_argument("--clips", type=int, default=60)
    args = p.parse_args(argv)
    from mirage.atomic import write_json
    from mirage.eval.machine import describe_machine
    from mirage.models.loading import TINY_MODEL_DIR
    from mirage.models.vae import VideoVAE, load_autoencoder
    from mirage.pipeline.model_info import synthetic_supersample

    model = Path(args.model) if args.model else TINY_MODEL_DIR
    vae = VideoVAE(load_autoencoder(model / "vae"))
    res = {"model": str(model), "round_trip_psnr_per_frame": round_trip_per_frame(
        vae, synthetic_supersample(model))}  # fmt: skip
    if args.shards:
        res["latent_gap"] = latent_gap(Path(args.shards), args.clips, vae)
    res["machine"] = describe_machine("cpu")
    write_json(RESULTS / "tiny_latent_gap.json", res)
    for name, r in res["round_trip_psnr_per_frame"].items():
        for path in ("loop", "static_camera"):
            frames = r[path]
            print(f"{name} {path} (mean {sum(frames) / len(frames):.2f}):",
                  " ".join(f"{x:.1f}" for x in frames))  # fmt: skip
        print(f"{name} single frames (image latents): mean {r['single_frames_mean']:.2f}")
    if args.shards:
        g = res["latent_gap"]
        print("channel correlation", " ".join(f"{c:.2f}" for c in g["channel_correlation"]))
        if "memory_psnr" in g:
            held = ", ".join(f"{k} {v:.2f} dB" for k, v in g["memory_psnr"].items())
            print(f"memory contents decoded alone over {g['memory_psnr_clips']} clips: {held}")
        print(f"linear R^2 image -> video latents: {g['linear_r2']:.3f} over {g['cells']} cells")
        print(
            f"squared gap video - image latents, share of their mean square: {g['gap_share']:.3f}"
        )


if __name__ == "__main__":
    main()
