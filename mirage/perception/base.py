"""The provider protocols (depth, exclusion masks) and the input check every provider shares.

A provider is any callable with the signature below; the pipeline calls it on the decoded
frames it is about to insert into the memory.

- `DepthProvider(frames, cameras, frame_indices) -> depth [T,H,W]`: camera z-depth, float32,
  on `frames.device`; 0 or +inf where there is no depth (sky). `metric` says whether the
  depth is in metres (True) or only up to an unknown scale (False: the pipeline aligns its
  scale to the depth the memory renders, see `align_depth_scale`).
- `MaskProvider(frames, cameras, frame_indices) -> exclude [T,H,W] bool`: True on pixels that
  must not enter the memory (dynamic objects, sky).

`frames` are [T,3,H,W] in [0, 1]; `cameras` the `mirage.geometry.Cameras` of those frames
(size H x W); `frame_indices` [T] int64 the index of each frame in the generated video (its
time, for dynamic scenes).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from mirage.geometry import Cameras


@runtime_checkable
class DepthProvider(Protocol):
    metric: bool  # True: metric z-depth (no scale alignment needed); False: only up to scale

    def __call__(
        self, frames: torch.Tensor, cameras: Cameras, frame_indices: torch.Tensor
    ) -> torch.Tensor:  # [T,3,H,W], T cameras, [T] int64 -> depth [T,H,W] float32
        ...


@runtime_checkable
class MaskProvider(Protocol):
    def __call__(
        self, frames: torch.Tensor, cameras: Cameras, frame_indices: torch.Tensor
    ) -> torch.Tensor:  # [T,3,H,W], T cameras, [T] int64 -> exclude [T,H,W] bool
        ...


def check_frames(frames: torch.Tensor, cameras: Cameras, frame_indices: torch.Tensor) -> None:
    """Validate a provider call before any work.  # [T,3,H,W], T cameras, [T] int64"""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"`frames` must be a tensor of shape [T,3,H,W], got {shape}")
    T, _, H, W = frames.shape
    if not frames.is_floating_point():
        raise ValueError(f"`frames` must be floating point in [0, 1], got {frames.dtype}")
    if not isinstance(cameras, Cameras):
        raise ValueError(
            f"`cameras` must be a mirage.geometry.Cameras, got {type(cameras).__name__}"
        )
    if len(cameras) != T:
        raise ValueError(f"`cameras` must hold one camera per frame ({T}), got {len(cameras)}")
    if (cameras.height, cameras.width) != (H, W):
        raise ValueError(
            f"`cameras` belong to {cameras.height}x{cameras.width} images but `frames` are {H}x{W}"
        )
    if (
        not isinstance(frame_indices, torch.Tensor)
        or frame_indices.shape != (T,)
        or frame_indices.is_floating_point()
        or frame_indices.is_complex()
    ):
        got = (
            f"{tuple(frame_indices.shape)} {frame_indices.dtype}"
            if isinstance(frame_indices, torch.Tensor)
            else type(frame_indices).__name__
        )
        raise ValueError(f"`frame_indices` must be an integer tensor of shape [{T}], got {got}")


# --- local model folders -----------------------------------------------------------------

WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PREPROCESSOR = ("preprocessor_config.json", "processor_config.json")


def check_model_folder(
    model_dir,
    what: str,
    extra: tuple = (),
    required: tuple = ("config.json", WEIGHTS, PREPROCESSOR),
) -> Path:
    """The folder as a Path, or FileNotFoundError listing every expected file that is missing.

    A model folder must hold `config.json`, `model.safetensors` (or its index
    `model.safetensors.index.json` with every shard it names) and `preprocessor_config.json`
    (or a newer unified `processor_config.json`); `extra` adds files, each a name or a tuple
    of alternatives. `required` replaces those defaults for models that are not transformers
    folders (Depth Anything 3: `("config.json", "model.safetensors")`). Pickle weights
    (`pytorch_model.bin`) are never loaded.
    """
    names = [n if isinstance(n, str) else n[0] for n in (*required, *extra)]
    folder = Path(model_dir).expanduser()
    if not folder.is_dir():
        hint = ""
        if isinstance(model_dir, str) and model_dir.count("/") == 1 and not folder.exists():
            hint = f"; download it first, e.g. `hf download {model_dir} --local-dir DIR`"
        raise FileNotFoundError(
            f"{what} model folder {str(folder)!r} does not exist (expected a local folder with "
            f"{', '.join(names[:-1])} and {names[-1]}){hint}"
        )
    missing = []
    for names in (*required, *extra):
        names = (names,) if isinstance(names, str) else tuple(names)
        if not any((folder / n).is_file() for n in names):
            missing.append(" or ".join(names))
    index = folder / "model.safetensors.index.json"
    if WEIGHTS in required and not (folder / "model.safetensors").is_file() and index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        missing += [f"{s} (named in model.safetensors.index.json)" for s in shards
                    if not (folder / s).is_file()]  # fmt: skip
    if missing:
        pickled = " (pickle weights such as pytorch_model.bin are not loaded: use safetensors)"
        note = pickled if (folder / "pytorch_model.bin").is_file() else ""
        raise FileNotFoundError(
            f"{what} model folder {str(folder)!r} is incomplete: missing {', '.join(missing)}{note}"
        )
    return folder


def read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def model_type(folder: Path) -> str:
    """`model_type` of the folder's config.json ('' when absent)."""
    return str(read_json(folder / "config.json").get("model_type", ""))


def quiet_transformers() -> None:
    """Silence transformers' per-load progress bars and info logs (errors still show)."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def image_processor_config(folder: Path) -> dict:
    """The image-processor settings of a model folder (size, mean, std, resample, ...).

    From `preprocessor_config.json`, or from the `image_processor` entry of a unified
    `processor_config.json` (transformers 5 processors save that; facebook/sam3 has one).
    """
    if (folder / "preprocessor_config.json").is_file():
        return read_json(folder / "preprocessor_config.json")
    data = read_json(folder / "processor_config.json")
    sub = data.get("image_processor")
    return sub if isinstance(sub, dict) else data


def load_pretrained(
    cls, folder: Path, what: str, dtype: torch.dtype, strict: bool = True, device="cpu", **kwargs
):
    """`cls.from_pretrained(folder)` offline, refusing a checkpoint that leaves weights random.

    A checkpoint whose tensor names do not match the installed transformers loads "fine" with
    freshly initialised layers (e.g. a SAM3 text encoder that then finds nothing); we raise a
    ValueError naming the folder and the first missing weights instead (`strict=False`: warn).
    Returns the model on `device`, in eval mode, frozen (every provider runs it for inference).
    """
    quiet_transformers()
    model, info = cls.from_pretrained(
        folder, local_files_only=True, dtype=dtype, output_loading_info=True, **kwargs
    )
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        message = (
            f"{what} checkpoint {str(folder)!r} does not match this transformers version's "
            f"{cls.__name__}: {len(missing)} weights are missing ({shown}); they would be random"
        )
        if strict:
            raise ValueError(message + " (pass strict=False to load anyway)")
        warnings.warn(message, stacklevel=3)
    return model.to(device).eval().requires_grad_(False)


def require_model_type(folder: Path, expected: str, what: str) -> None:
    """Raise ValueError unless the folder's config.json `model_type` is `expected`."""
    found = model_type(folder)
    if found != expected:
        raise ValueError(
            f"`model_dir` {str(folder)!r} must hold a {what} model (config.json "
            f"model_type '{expected}'), got {found!r}"
        )


def check_batch_size(batch_size) -> None:
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")


# --- pre-processing in torch, shared by the providers --------------------------------------


def normalize_pixels(x: torch.Tensor, preprocessor: dict) -> torch.Tensor:  # [B,3,H,W] in [0,1]
    """Subtract `image_mean`, divide by `image_std` (when the processor has `do_normalize`)."""
    if not preprocessor.get("do_normalize", True):
        return x
    mean = torch.tensor(preprocessor.get("image_mean", [0.5] * 3), dtype=x.dtype, device=x.device)
    std = torch.tensor(preprocessor.get("image_std", [0.5] * 3), dtype=x.dtype, device=x.device)
    return (x - mean[:, None, None]) / std[:, None, None]


def resize_frames(
    x: torch.Tensor, size: tuple[int, int], mode: str, antialias: bool
) -> torch.Tensor:  # [B,C,H,W] -> [B,C,*size]
    """`F.interpolate` to `size` (a no-op when already that size), as the image processors do."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    kw = {} if mode == "nearest" else {"align_corners": False, "antialias": antialias}
    return F.interpolate(x, size=size, mode=mode, **kw)


def frame_batches(T: int, batch_size: int):
    """Slices of `batch_size` consecutive frames covering range(T)."""
    for start in range(0, T, batch_size):
        yield slice(start, min(start + batch_size, T))
