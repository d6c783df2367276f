"""Put trained side branches into a model folder and record every weight file's SHA-256.

    python scripts/add_side_branches.py --model mirage/assets/mirage-tiny \
        --latent out/tiny-v2-lat1/stage1 --rgb out/tiny-v2-rgb/stage1

`--latent` / `--rgb` are `mirage train` export folders (side_branch.safetensors +
metadata.json) trained with `--memory latent` / `--memory rgb`, each with the configuration of
the folder's own side branch. The latent one replaces `side_branch.safetensors`; the rgb one
becomes `side_branch_rgb.safetensors`, which `build_pipeline` swaps in for generations with
memory "rgb". mirage.json gains `side_branch` / `side_branch_rgb` (their training metadata)
and `sha256` (every .safetensors file of the folder; the model card quotes them and a test
checks them). With neither, only the hashes are refreshed. The sky dome distance the branches
were trained with (`mirage train --sky-distance`; both must agree) becomes the folder's
generation default ("generation": "sky_distance"), and so does the latent branch's memory
fusion ("fusion"), so generation reads the memory the branches learnt from.
`--readout-copy C` and `--memory-guidance W` set the folder's sampling defaults (what
GenerationConfig's "auto" takes; their "off" value, 0 and 1, removes the key): choices measured
on the finished model, not training ones.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def _check(model: Path, src: Path, memory: str) -> dict:
    """The export's training metadata, after checking what it was trained on and that its
    branch has the configuration of the folder's own."""
    from mirage.models.transformer import read_side_config
    from mirage.pipeline.loading import SIDE_BRANCH_FILE

    meta = json.loads((src / "metadata.json").read_text())
    if meta["config"].get("memory", "latent") != memory:
        raise SystemExit(f"{src} was trained with memory {meta['config'].get('memory')!r}")
    new, own = read_side_config(src / SIDE_BRANCH_FILE), read_side_config(model / SIDE_BRANCH_FILE)
    if new != own:
        raise SystemExit(f"{src} has another side-branch configuration than {model}")
    return meta


def _generation_defaults(info: dict) -> None:
    """How the branches read the memory in training becomes the folder's generation default:
    the sky dome distance (both branches must agree; None: off) and the latent branch's fusion."""
    trained = {k: info[k]["config"].get("sky_distance") for k in ("side_branch", "side_branch_rgb")
               if k in info}  # fmt: skip
    if len(set(trained.values())) > 1:
        raise SystemExit(f"the side branches were trained with different sky distances: {trained}")
    _set(info["generation"], "sky_distance", next(iter(trained.values()), None))
    _set(info["generation"], "fusion", info.get("side_branch", {}).get("config", {}).get("fusion"))


def _set(generation: dict, key: str, value, off=None) -> None:
    """`generation[key] = value`; the value `off` removes the key (generation's own default)."""
    generation.pop(key, None)
    if value != off:
        generation[key] = value


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model folder (mirage.json, side branch)")
    p.add_argument("--latent", default=None, help="`mirage train --memory latent` export")
    p.add_argument("--rgb", default=None, help="`mirage train --memory rgb` export folder")
    p.add_argument(
        "--readout-copy",
        type=float,
        default=None,
        help="the folder's readout copy, in [0, 1] (0: off); unchanged if not given",
    )
    p.add_argument(
        "--memory-guidance",
        type=float,
        default=None,
        help="the folder's memory guidance, >= 0 (1: off); unchanged if not given",
    )
    args = p.parse_args(argv)

    from mirage.atomic import atomic_path, write_json
    from mirage.models.loading import weight_hashes
    from mirage.pipeline.config import SAMPLING_OFF, GenerationConfig
    from mirage.pipeline.loading import RGB_SIDE_BRANCH_FILE, SIDE_BRANCH_FILE

    model = Path(args.model)
    info = json.loads((model / "mirage.json").read_text())
    given = {key: (Path(src), memory, name) for key, src, memory, name in (
        ("side_branch", args.latent, "latent", SIDE_BRANCH_FILE),
        ("side_branch_rgb", args.rgb, "rgb", RGB_SIDE_BRANCH_FILE),
    ) if src is not None}  # fmt: skip
    sampling = {k: getattr(args, k) for k in SAMPLING_OFF if getattr(args, k) is not None}
    try:  # every check before any file changes: generation's own checks of the values
        GenerationConfig(**sampling)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    for key, (src, memory, _) in given.items():
        info[key] = _check(model, src, memory)
    _generation_defaults(info)
    for key, value in sampling.items():
        _set(info["generation"], key, value, SAMPLING_OFF[key])
    for src, _, name in given.values():
        with atomic_path(model / name) as tmp:
            shutil.copy(src / SIDE_BRANCH_FILE, tmp)
    info["sha256"] = weight_hashes(model)
    write_json(model / "mirage.json", info)
    for name, digest in info["sha256"].items():
        print(f"{digest}  {name}")


if __name__ == "__main__":
    main()
