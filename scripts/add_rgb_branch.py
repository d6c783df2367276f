"""Put an RGB-memory side branch into a model folder and record every weight file's SHA-256.

    python scripts/add_rgb_branch.py --model mirage/assets/mirage-tiny \
        --branch out/tiny-v2-rgb/stage1

`--branch` is a `mirage train --memory rgb` export folder (side_branch.safetensors +
metadata.json) trained on RGB-cache readouts; it must have the configuration of the folder's
own side branch. It is copied to `side_branch_rgb.safetensors`, which `build_pipeline` swaps in
for generations with memory "rgb". mirage.json gains `side_branch_rgb` (the training metadata)
and `sha256` (every .safetensors file of the folder; the model card quotes them and a test
checks them). Without `--branch` only the hashes are refreshed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path


def weight_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every .safetensors file under `folder`, by relative path."""
    out = {}
    for f in sorted(folder.rglob("*.safetensors")):
        out[f.relative_to(folder).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model folder (mirage.json, side branch)")
    p.add_argument("--branch", default=None, help="`mirage train --memory rgb` export folder")
    args = p.parse_args(argv)

    from mirage.atomic import atomic_path, write_json
    from mirage.models.transformer import read_side_config
    from mirage.pipeline.loading import RGB_SIDE_BRANCH_FILE, SIDE_BRANCH_FILE

    model = Path(args.model)
    info = json.loads((model / "mirage.json").read_text())
    if args.branch is not None:
        src = Path(args.branch)
        meta = json.loads((src / "metadata.json").read_text())
        if meta["config"].get("memory") != "rgb":
            raise SystemExit(f"{src} was trained with memory {meta['config'].get('memory')!r}")
        new, own = (
            read_side_config(src / SIDE_BRANCH_FILE),
            read_side_config(model / SIDE_BRANCH_FILE),
        )
        if new != own:
            raise SystemExit(f"{src} has another side-branch configuration than {model}")
        with atomic_path(model / RGB_SIDE_BRANCH_FILE) as tmp:
            shutil.copy(src / SIDE_BRANCH_FILE, tmp)
        info["side_branch_rgb"] = meta
    info["sha256"] = weight_hashes(model)
    write_json(model / "mirage.json", info)
    for name, digest in info["sha256"].items():
        print(f"{digest}  {name}")


if __name__ == "__main__":
    main()
