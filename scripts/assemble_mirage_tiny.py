"""Assemble the mirage-tiny model folder (Wan layout) from a trained VAE and a trained transformer.

    python scripts/assemble_mirage_tiny.py --vae out/tiny/vae_run/vae \
        --transformer out/tiny/train/stage1 --out mirage/assets/mirage-tiny

`--vae` is a `save_pretrained` AutoencoderKLWan folder (mirage.training.autoencoder);
`--transformer` a `mirage train` export folder (transformer/ + side_branch.safetensors).
Either may be "random" (seeded tiny weights, for wiring tests before training finishes).
Writes transformer/, vae/, scheduler/, side_branch.safetensors and mirage.json (facts for the
model card: the source folders and their metadata).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

GENERATION = {"height": 64, "width": 64, "chunk_frames": 9, "num_inference_steps": 10}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vae", required=True)
    p.add_argument("--transformer", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shift", type=float, default=5.0)
    p.add_argument(
        "--supersample",
        type=int,
        default=1,
        help="rays per pixel side of the synthetic training frames (mirage.json)",
    )
    args = p.parse_args(argv)

    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from mirage.models.loading import make_scheduler, tiny_transformer_config, tiny_vae_config
    from mirage.models.transformer import MirageTransformer
    from mirage.models.vae import load_autoencoder
    from mirage.training.checkpoint import replace_dir

    out = Path(args.out)
    tmp = out.parent / f".tmp_{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # `generation`: the size, chunk length and steps the model was trained for; every command
    # that takes the model folder reads its defaults from here
    facts: dict = {"name": "mirage-tiny", "generation": dict(GENERATION)}
    # synthetic first frames and ground truth are rendered as the training frames were
    facts["synthetic"] = {"supersample": args.supersample}

    if args.vae == "random":
        torch.manual_seed(args.seed)
        vae = AutoencoderKLWan(**tiny_vae_config(base_dim=8))
        facts["vae"] = "random"
    else:
        vae = load_autoencoder(args.vae)
        ev = [Path(args.vae) / "heldout.json", Path(args.vae).parent / "heldout.json",
              Path(args.vae).parent / "eval.json"]  # fmt: skip
        ev = [f for f in ev if f.is_file()]
        facts["vae"] = json.loads(ev[0].read_text()) if ev else str(args.vae)
    vae.save_pretrained(tmp / "vae", safe_serialization=True)

    if args.transformer == "random":
        torch.manual_seed(args.seed)
        base = WanTransformer3DModel(
            **tiny_transformer_config(in_channels=vae.config.z_dim, out_channels=vae.config.z_dim)
        )
        model = MirageTransformer.from_base(base)
        base.save_pretrained(tmp / "transformer", safe_serialization=True)
        model.save_side_branch(tmp / "side_branch.safetensors")
        facts["transformer"] = "random"
    else:
        src = Path(args.transformer)
        tr = src / "transformer" if (src / "transformer").is_dir() else None
        if tr is None:  # stage 1 exports may leave the base in the stage 0 folder
            meta = json.loads((src / "metadata.json").read_text())
            tr = Path(meta["config"]["transformer"]) / "transformer"
        shutil.copytree(tr, tmp / "transformer")
        shutil.copy(src / "side_branch.safetensors", tmp / "side_branch.safetensors")
        meta = src / "metadata.json"
        facts["transformer"] = json.loads(meta.read_text()) if meta.is_file() else str(src)
    make_scheduler(args.shift).save_pretrained(tmp / "scheduler")
    (tmp / "mirage.json").write_text(json.dumps(facts, indent=2) + "\n")
    card = out / "MODEL_CARD.md"
    if card.is_file():
        shutil.copy(card, tmp / "MODEL_CARD.md")
    replace_dir(tmp, out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 2**20:.1f} MiB)")
    if size > 30 * 2**20:
        sys.exit("mirage-tiny must stay under 30 MB")


if __name__ == "__main__":
    main()
