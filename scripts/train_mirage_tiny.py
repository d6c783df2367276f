"""Reproduce the mirage-tiny v2 DiT + side branch on a CPU: synthetic shards -> stage 0.

    OMP_NUM_THREADS=1 nohup python scripts/train_mirage_tiny.py --work out/tiny-v2 \
        > out/tiny-v2.log 2>&1 &

The VAE is `--vae` (default the packaged mirage/assets/mirage-tiny/vae, whose encoder is the
one the shipped DiT's shards were made with; a decoder fine-tuned later keeps them valid).
Every step resumes or is skipped when its output exists, so the same command continues after
an interruption. The result is assembled with scripts/assemble_mirage_tiny.py.

Data: synthetic scenes (indoor and outdoor, one mover excluded from the memory), 64x64 clips of
33 frames (four 9-frame chunks, as the demo's loop) rendered with 2x2 supersampling, with the
aligned RGB frames kept for an RGB-memory side branch. Half the trajectories are `loop` (out
and back: chunks 2-3 revisit the poses of chunks 0-1, where the memory readout is the right
answer); the rest are the other presets. Training logs the velocity error on cells the readout
covers and on the rest (`<work>/train/stage0/log.jsonl`: `loss_covered`, `loss_uncovered`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

TRAJECTORIES = (
    ("loop",) * 8
    + ("orbit", "pan_left", "pan_right", "move_left", "move_right", "push_in", "pull_out")
    + ("random_walk",)
)  # drawn uniformly per clip: half loops
DEFAULT_VAE = Path(__file__).resolve().parents[1] / "mirage/assets/mirage-tiny/vae"


def main(argv=None) -> None:
    from mirage.memory.latent import FUSION_MODES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="out/tiny-v2")
    p.add_argument("--vae", default=str(DEFAULT_VAE), help="AutoencoderKLWan folder")
    p.add_argument("--clips", type=int, default=500)
    p.add_argument("--frames", type=int, default=33)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--supersample", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=2600)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dim", type=int, default=128, help="transformer width (64 per head)")
    p.add_argument("--layers", type=int, default=6, help="transformer blocks")
    p.add_argument("--ffn", type=int, default=512, help="transformer feed-forward width")
    p.add_argument("--only", choices=("shards", "train"), default=None)
    p.add_argument(
        "--decoded-writes",
        action="store_true",
        help="shards keep what generation writes; memories in training hold it",
    )
    p.add_argument("--from-model", default=None,
                   help="stage 0 continues this model folder's DiT and side branch")  # fmt: skip
    p.add_argument(
        "--sky-distance",
        type=float,
        default=None,
        help="training memories keep the sky this far away (the sky dome)",
    )
    p.add_argument("--readout-dropout", type=float, default=0.0,
                   help="probability of an empty side-branch input (no memory)")  # fmt: skip
    p.add_argument("--fusion", default="mean", choices=FUSION_MODES,
                   help="how the training memories fuse a surface's views")  # fmt: skip
    args = p.parse_args(argv)
    work = Path(args.work)

    from mirage.training.preprocess import PreprocessConfig, preprocess

    shards = work / "shards"
    if args.only in (None, "shards"):
        preprocess(
            PreprocessConfig(
                out=str(shards), source="synthetic", num_clips=args.clips,
                num_frames=args.frames, chunk_frames=9, height=args.size, width=args.size,
                kind="mixed", num_dynamic=1, trajectories=TRAJECTORIES, vae=args.vae,
                supersample=args.supersample, keep_frames=True, threads=args.threads, seed=0,
                decoded_writes=args.decoded_writes, progress=False,
            )
        )  # fmt: skip

    from mirage.training.config import tiny_stages
    from mirage.training.train import train

    if args.only in (None, "train"):
        if args.from_model:
            start = {
                "transformer": args.from_model,
                "side_branch": str(Path(args.from_model) / "side_branch.safetensors"),
            }
        else:
            start = {"transformer": str(_init_transformer(work / "init_transformer", args, 16))}
        cfg = tiny_stages(
            str(shards), str(work / "train"), batch_size=args.batch_size, max_steps=args.steps,
            lr=args.lr, threads=args.threads, num_workers=0, checkpoint_every=100,
            resume="latest", progress=False,
            memory_frames="decoded" if args.decoded_writes else "gt",
            sky_distance=args.sky_distance, readout_dropout=args.readout_dropout,
            fusion=args.fusion, **start,
        )[0]  # fmt: skip
        if not (Path(cfg.out) / "metadata.json").is_file():
            print(f"stage 0: {train(cfg).out}")


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
