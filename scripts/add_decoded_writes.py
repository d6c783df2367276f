"""Give an existing shard folder its decoded writes (`mirage train --memory-frames decoded`).

    OMP_NUM_THREADS=1 python scripts/add_decoded_writes.py --shards out/tiny-v2/shards \
        --vae mirage/assets/mirage-tiny/vae

Runs `mirage preprocess` again with the folder's own configuration (its `index.json`) and
`decoded_writes`: every shard that lacks them gets `decoded_latents` (and `decoded_frames`
where it keeps its frames), nothing is rendered again, each file is rewritten atomically and
an interrupted run resumes. `--vae` is the VAE generation decodes with (for mirage-tiny, the
shipped one: its encoder is the one that wrote the shards, its decoder the fine-tuned one).
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
    args = p.parse_args(argv)
    from mirage.training.preprocess import PreprocessConfig, preprocess

    index = Path(args.shards) / "index.json"
    if not index.is_file():
        raise SystemExit(f"{index} not found: --shards must be a folder mirage preprocess wrote")
    cfg = json.loads(index.read_text())["config"]
    cfg.update(out=args.shards, vae=args.vae, model=None, decoded_writes=True,
               threads=args.threads, trajectories=tuple(cfg["trajectories"]))  # fmt: skip
    print(f"decoded writes added to {preprocess(PreprocessConfig(**cfg))}")


if __name__ == "__main__":
    main()
