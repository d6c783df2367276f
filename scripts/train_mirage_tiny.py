"""Reproduce mirage-tiny from scratch on a CPU: tiny VAE -> synthetic shards -> stage 0 -> stage 1.

    OMP_NUM_THREADS=1 python scripts/train_mirage_tiny.py --work out/tiny [--clips 1000]
        [--stage0-steps 1800] [--stage1-steps 500] [--only vae|shards|train]

The defaults are the settings of the shipped weights (mirage/assets/mirage-tiny/mirage.json).

Every step resumes or is skipped when its output exists, so the script can be re-run after an
interruption. The result is assembled with scripts/assemble_mirage_tiny.py. The data: synthetic
scenes (indoor and outdoor, one mover), 64x64 clips of 17 frames (two 9-frame chunks), with
half of the trajectories `loop` (out and back: the second chunk revisits the poses of the
first, where the memory readout is the right answer) and the rest the other presets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

TRAJECTORIES = (
    ("loop",) * 8
    + ("orbit", "pan_left", "pan_right", "move_left", "move_right", "push_in", "pull_out")
    + ("random_walk",)
)  # drawn uniformly per clip: half loops


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="out/tiny")
    p.add_argument("--vae-minutes", type=float, default=None, help="wall-clock cap (none)")
    p.add_argument("--vae-steps", type=int, default=1100)
    p.add_argument("--clips", type=int, default=1000)
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--stage0-steps", type=int, default=1800)
    p.add_argument("--stage1-steps", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dim", type=int, default=192, help="transformer width (64 per head)")
    p.add_argument("--layers", type=int, default=6, help="transformer blocks")
    p.add_argument("--ffn", type=int, default=512, help="transformer feed-forward width")
    p.add_argument("--only", choices=("vae", "shards", "train"), default=None)
    args = p.parse_args(argv)
    work = Path(args.work)

    from mirage.training.autoencoder import AutoencoderConfig, train_autoencoder

    vae_dir = work / "vae_run" / "vae"
    if args.only in (None, "vae") and not vae_dir.is_dir():
        train_autoencoder(
            AutoencoderConfig(
                out=str(work / "vae_run"), height=args.size, width=args.size, base_dim=8,
                clips_per_step=1, singles_per_step=5, max_steps=args.vae_steps,
                max_minutes=args.vae_minutes, lr=5e-4, warmup_steps=30, progress=False,
            )
        )  # fmt: skip

    from mirage.training.preprocess import PreprocessConfig, preprocess

    shards = work / "shards"
    if args.only in (None, "shards"):
        preprocess(
            PreprocessConfig(
                out=str(shards), source="synthetic", num_clips=args.clips,
                num_frames=args.frames, chunk_frames=9, height=args.size, width=args.size,
                kind="mixed", num_dynamic=1, trajectories=TRAJECTORIES, vae=str(vae_dir),
                threads=args.threads, seed=0,
            )
        )  # fmt: skip

    from mirage.training.config import tiny_stages
    from mirage.training.train import train

    if args.only in (None, "train"):
        init = _init_transformer(work / "init_transformer", args, channels=16)
        stages = tiny_stages(
            str(shards), str(work / "train"), transformer=str(init), batch_size=args.batch_size,
            max_steps=args.stage0_steps, stage1_max_steps=args.stage1_steps,
            threads=args.threads, checkpoint_every=100, resume="latest", progress=False,
        )  # fmt: skip
        for cfg in stages:
            if (Path(cfg.out) / "metadata.json").is_file():
                continue  # this stage finished before
            print(f"stage {cfg.stage}: {train(cfg).out}")


def _init_transformer(folder: Path, args, channels: int) -> Path:
    """A seeded random WanTransformer3DModel of the chosen size (stage 0 starts from it)."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from diffusers import WanTransformer3DModel

    from mirage.models.loading import tiny_transformer_config
    from mirage.training.checkpoint import replace_dir

    torch.manual_seed(0)
    base = WanTransformer3DModel(
        **tiny_transformer_config(
            in_channels=channels, out_channels=channels, num_attention_heads=args.dim // 64,
            attention_head_dim=64, num_layers=args.layers, ffn_dim=args.ffn,
        )
    )  # fmt: skip
    tmp = folder.parent / f".tmp-{folder.name}"  # config.json appears only with the weights
    base.save_pretrained(tmp, safe_serialization=True)
    return replace_dir(tmp, folder)


if __name__ == "__main__":
    main()
