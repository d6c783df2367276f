"""Training shards: one safetensors file per clip with everything training needs, and its checks.

A shard folder holds `index.json` (format, version, shard names, the preprocessing config) and
one `clip-XXXXXX.safetensors` per clip. A clip has N = 1 + n (chunk_frames - 1) frames cut
into n chunks of `chunk_frames` = 4k + 1 frames (chunk c starts at frame c (chunk_frames - 1),
as `mirage.pipeline.plan_chunks` cuts a video); its L = (N - 1) / 4 + 1 **latent-aligned**
frames are 0, 4, 8, ..., N - 1. Tensors (C latent channels, h x w latent grid, H x W frames):

    chunk_latents [n,k+1,C,h,w] float32  video latents of each chunk window (VAE of the window)
    image_latents [L,C,h,w]     float32  image latents of each latent-aligned frame
    depth         [L,H,W]       float32  z-depth of the aligned frames; 0 / +inf = none (sky)
    exclude       [L,H,W]       bool     pixels kept out of the memory (dynamic | sky)
    K             [L,3,3]       float32  intrinsics of the aligned frames (pixels of H x W)
    c2w           [L,4,4]       float32  camera-to-world of the aligned frames (OpenCV)
    text          [Lt,D]        float32  prompt embedding (absent: the null embedding)
    frames        [L,3,H,W]     uint8    optional: the aligned RGB frames (an RGB memory's input)
    decoded_latents [L,C,h,w]   float32  optional: what generation writes into a latent memory
                                         for each aligned frame if it reproduced the chunk
                                         latents exactly (decoded as video, re-encoded alone)
    decoded_frames  [L,3,H,W]   uint8    optional: the same frames as pixels (an RGB memory's)

The header's metadata key `mirage_shard` holds JSON: format, version, num_frames,
chunk_frames, height, width, channels, latent_hw, text ("embedding" or "null") and source
(where the clip came from). Readers check every shape against the header before training
starts and name the file that does not fit. Only torch and safetensors are used here.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mirage.atomic import atomic_path, write_json

SHARD_FORMAT = "mirage.shard"
SHARD_VERSION = 1
META_KEY = "mirage_shard"
INDEX_NAME = "index.json"
REQUIRED = ("chunk_latents", "image_latents", "depth", "exclude", "K", "c2w")
# frames: the RGB memory's input (`keep_frames`); decoded_latents / decoded_frames: what
# generation writes into the memory for each aligned frame (`decoded_writes`)
OPTIONAL = ("text", "frames", "decoded_latents", "decoded_frames")


def shard_name(index: int) -> str:
    return f"clip-{index:06d}.safetensors"


def expected_shapes(meta: dict) -> dict[str, tuple[int, ...]]:
    """Shape of every required tensor from the header fields."""
    N, F, C = meta["num_frames"], meta["chunk_frames"], meta["channels"]
    H, W = meta["height"], meta["width"]
    h, w = meta["latent_hw"]
    n, k, L = (N - 1) // (F - 1), (F - 1) // 4, (N - 1) // 4 + 1
    return {
        "chunk_latents": (n, k + 1, C, h, w),
        "image_latents": (L, C, h, w),
        "depth": (L, H, W),
        "exclude": (L, H, W),
        "K": (L, 3, 3),
        "c2w": (L, 4, 4),
    }


def check_meta(meta: dict, where: str) -> None:
    """Raise ValueError naming `where` unless the header fields are complete and consistent."""
    keys = ("num_frames", "chunk_frames", "height", "width", "channels", "latent_hw", "text")
    missing = [k for k in keys if k not in meta]
    if meta.get("format") != SHARD_FORMAT or missing:
        raise ValueError(f"{where}: not a {SHARD_FORMAT} file (missing header fields {missing})")
    if meta.get("version") != SHARD_VERSION:
        raise ValueError(f"{where}: shard version {meta.get('version')}, expected {SHARD_VERSION}")
    N, F = meta["num_frames"], meta["chunk_frames"]
    if F < 5 or (F - 1) % 4 or N < F or (N - 1) % (F - 1):
        raise ValueError(
            f"{where}: num_frames {N} must be 1 + n (chunk_frames - 1) with chunk_frames "
            f"4k + 1 >= 5, got chunk_frames {F}"
        )
    h, w = meta["latent_hw"]
    if meta["height"] % h or meta["width"] % w or meta["height"] // h != meta["width"] // w:
        raise ValueError(
            f"{where}: frames {meta['height']}x{meta['width']} are not one integer factor of the "
            f"latent grid {h}x{w}"
        )
    if meta["text"] not in ("embedding", "null"):
        raise ValueError(f"{where}: header text must be 'embedding' or 'null', got {meta['text']}")


def write_shard(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write one clip's shard atomically after checking every shape against `meta`."""
    path = Path(path)
    meta = {"format": SHARD_FORMAT, "version": SHARD_VERSION, **meta}
    meta["text"] = "embedding" if "text" in tensors else "null"
    check_meta(meta, str(path))
    _check_shapes({k: tuple(v.shape) for k, v in tensors.items()}, meta, str(path))
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={META_KEY: json.dumps(meta, sort_keys=True)})


def _check_shapes(shapes: dict[str, tuple], meta: dict, where: str) -> None:
    expected = expected_shapes(meta)
    missing = [k for k in REQUIRED if k not in shapes]
    if missing:
        raise ValueError(f"{where}: missing tensors {missing}")
    for k, shape in expected.items():
        if tuple(shapes[k]) != shape:
            raise ValueError(f"{where}: `{k}` has shape {tuple(shapes[k])}, expected {shape}")
    if meta["text"] == "embedding":
        if "text" not in shapes or len(shapes["text"]) != 2:
            raise ValueError(f"{where}: header says text 'embedding' but `text` [Lt,D] is absent")
    L, H, W = expected["depth"]
    optional = {"frames": (L, 3, H, W), "decoded_frames": (L, 3, H, W),
                "decoded_latents": expected["image_latents"]}  # fmt: skip
    for k, shape in optional.items():
        if k in shapes and tuple(shapes[k]) != shape:
            raise ValueError(f"{where}: `{k}` has shape {tuple(shapes[k])}, expected {shape}")
    unexpected = sorted(set(shapes) - set(REQUIRED) - set(OPTIONAL))
    if unexpected:
        raise ValueError(f"{where}: unexpected tensors {unexpected}")


def read_shard_header(path: str | Path) -> dict:
    """The header of one shard (no tensor is read), checked against its tensors' shapes.

    Returns the metadata dict plus `shapes` (name -> shape). Raises FileNotFoundError or
    ValueError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"shard file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types on a corrupt file
        raise ValueError(f"{path}: unreadable safetensors file ({err})") from err
    if raw is None:
        raise ValueError(f"{path}: not a {SHARD_FORMAT} file (no `{META_KEY}` header)")
    meta = json.loads(raw)
    check_meta(meta, str(path))
    _check_shapes(shapes, meta, str(path))
    return {**meta, "shapes": shapes}


def load_shard(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """All tensors of one shard and its header (metadata)."""
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {})[META_KEY])
        return {k: f.get_tensor(k) for k in f.keys()}, meta


def write_index(root: str | Path, names: list[str], config: dict) -> Path:
    """Write `index.json` listing the shard files of a folder (atomic)."""
    path = Path(root) / INDEX_NAME
    index = {"format": SHARD_FORMAT, "version": SHARD_VERSION, "shards": sorted(names)}
    index["config"] = config
    return write_json(path, index)


SAME = ("chunk_frames", "height", "width", "channels", "latent_hw")


def check_shard_dir(root: str | Path) -> list[dict]:
    """Validate a shard folder before training; return every shard's header (with `path`).

    Fails with the offending file named when the folder is missing or empty, has no
    `index.json` (written last: preprocessing did not finish), the index lists a missing
    file, a header or a shape does not fit, or shards disagree on chunk_frames, frame size,
    latent channels or grid (a batch must stack).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"shard folder not found: {root}")
    index_path = root / INDEX_NAME
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text())
            names = list(index["shards"])
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{index_path}: unreadable shard index ({err})") from err
        for name in names:
            if not (root / name).is_file():
                raise FileNotFoundError(
                    f"shard file listed in {index_path} is missing: {root / name}"
                )
    elif any(root.glob("clip-*.safetensors")):
        raise ValueError(
            f"shard folder {root} has shards but no {INDEX_NAME}: preprocessing did not finish "
            "(run `mirage preprocess` into it again; the finished shards are kept)"
        )
    else:
        names = []
    if not names:
        raise ValueError(
            f"shard folder {root} is empty: no {INDEX_NAME} and no clip-*.safetensors "
            "(run `mirage preprocess` first)"
        )
    headers = []
    for name in names:
        header = read_shard_header(root / name)
        header["path"] = str(root / name)
        if headers:
            first = headers[0]
            diff = [k for k in SAME if list_or(header[k]) != list_or(first[k])]
            if diff:
                pairs = ", ".join(f"{k} {header[k]} vs {first[k]}" for k in diff)
                raise ValueError(
                    f"{root / name} does not match {first['path']}: {pairs} (all shards of "
                    "a folder must share chunk_frames, frame size, channels and latent grid)"
                )
        headers.append(header)
    return headers


def list_or(v):
    return list(v) if isinstance(v, (list, tuple)) else v
