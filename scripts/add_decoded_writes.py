"""Give an existing shard folder its decoded writes (`mirage train --memory-frames decoded`).

    OMP_NUM_THREADS=1 python scripts/add_decoded_writes.py --shards out/tiny-v2/shards \
        --vae mirage/assets/mirage-tiny/vae

Runs `mirage preprocess` again with the folder's own configuration (its `index.json`) and
`decoded_writes`: every shard that lacks them gets `decoded_latents` (and `decoded_frames`
where it keeps its frames), nothing is rendered again, each file is rewritten atomically and
an interrupted run resumes. `--vae` is the VAE generation decodes with (for mirage-tiny, the
shipped one: its encoder is the one that wrote the shards, its decoder the fine-tuned one).

With `--out NEW`, every shard is copied into the folder NEW with decoded writes made by `--vae`
(ones it already has are made again: the VAE or its decode rule changed), the source folder
left as it is; an interrupted run resumes with the shards not yet in NEW.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", required=True, help="a shard folder written by mirage preprocess")
    p.add_argument("--vae", required=True, help="the AutoencoderKLWan folder generation uses")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write fresh copies here instead of in place")
    args = p.parse_args(argv)
    from mirage.training.preprocess import PreprocessConfig, preprocess

    index = Path(args.shards) / "index.json"
    if not index.is_file():
        raise SystemExit(f"{index} not found: --shards must be a folder mirage preprocess wrote")
    if args.out is not None:
        return copy_with_writes(Path(args.shards), Path(args.out), args.vae, args.threads)
    cfg = json.loads(index.read_text())["config"]
    cfg.update(out=args.shards, vae=args.vae, model=None, decoded_writes=True,
               threads=args.threads, trajectories=tuple(cfg["trajectories"]))  # fmt: skip
    print(f"decoded writes added to {preprocess(PreprocessConfig(**cfg))}")


def copy_with_writes(src: Path, out: Path, vae_folder: str, threads: int) -> None:
    """Every shard of `src` into `out` with decoded writes made again by `vae_folder`."""
    import shutil

    import torch
    from tqdm.auto import tqdm

    from mirage.data.shards import check_shard_dir, load_shard, read_shard_header, write_shard
    from mirage.models.vae import VideoVAE, load_autoencoder
    from mirage.training.preprocess import add_decoded_writes

    if out.resolve() == src.resolve():
        raise SystemExit("--out must be a new folder (without it the shards are updated in place)")
    torch.set_num_threads(threads)
    names = [Path(h["path"]).name for h in check_shard_dir(src)]
    vae = VideoVAE(load_autoencoder(vae_folder))
    out.mkdir(parents=True, exist_ok=True)
    for name in tqdm(names, desc="decoded writes"):
        if (out / name).is_file():
            try:
                if "decoded_latents" in read_shard_header(out / name)["shapes"]:
                    continue  # done before an interruption
            except ValueError:
                pass  # unreadable: write it again
        tensors, meta = load_shard(src / name)
        kept = {k: v for k, v in tensors.items() if not k.startswith("decoded_")}
        write_shard(out / name, add_decoded_writes(kept, vae), meta)
    shutil.copyfile(src / "index.json", out / "index.json.tmp")
    (out / "index.json.tmp").replace(out / "index.json")  # the folder is complete
    print(f"decoded writes made again by {vae_folder}: {out}")


if __name__ == "__main__":
    main()
