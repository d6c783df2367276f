"""Where an exploration starts: a model folder, then a synthetic scene or an uploaded image.

Everything a user can get wrong (a folder without a side branch, an upload that is not a
picture or is too large) is refused here with a message, before a model loads or a session
changes.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from mirage.geometry import Cameras
from mirage.pipeline.config import GenerationConfig

MAX_UPLOAD_BYTES = 16 * 2**20  # a larger upload is refused before it is decoded
DEFAULT_SCENE = 900_005  # a held-out scene (never trained on), as the demo's


@dataclass(frozen=True)
class ExploreConfig:
    model: Path | None = None  # model folder; None: the embedded mirage-tiny
    out: Path = Path("explore")  # the session's folder: saves go here and nowhere else
    scene_seed: int = DEFAULT_SCENE  # the synthetic scene the session opens with
    scene_kind: str = "indoor"  # indoor | outdoor
    memory: str = "latent"  # latent | rgb | none
    step: float = 0.3  # world units per W/S/A/D/R/F move
    turn: float = 15.0  # degrees per Q/E turn
    steps: int | None = None  # denoising steps per chunk; None: the model's own default
    seed: int = 0  # noise seed
    fov: float = 60.0  # horizontal field of view (degrees) of the start camera
    device: str = "cpu"


STEP_RANGE = (0.05, 2.0)  # world units: the step slider's range
TURN_RANGE = (1.0, 90.0)  # degrees: the turn slider's range


def check_config(cfg: ExploreConfig) -> None:
    """Everything in `cfg` but the model folder, before anything loads (ValueError)."""
    from mirage.pipeline.config import MEMORY_MODES
    from mirage.pipeline.runner import check_device
    from mirage.synthetic import KINDS

    if cfg.memory not in MEMORY_MODES:
        raise ValueError(f"`memory` must be one of {MEMORY_MODES}, got {cfg.memory!r}")
    if cfg.scene_kind not in KINDS:
        raise ValueError(f"`scene_kind` must be one of {KINDS}, got {cfg.scene_kind!r}")
    for name, value, (lo, hi) in (("step", cfg.step, STEP_RANGE), ("turn", cfg.turn, TURN_RANGE)):
        if not lo <= value <= hi:
            raise ValueError(f"`{name}` must be in [{lo}, {hi}], got {value}")
    if cfg.steps is not None and cfg.steps < 1:
        raise ValueError(f"`steps` must be >= 1, got {cfg.steps}")
    check_device(cfg.device)


def check_model(folder: str | Path | None, memory: str) -> Path:
    """The model folder (None or "tiny": the embedded mirage-tiny), checked before it loads."""
    from mirage.models.loading import check_model_dir
    from mirage.pipeline.loading import SIDE_BRANCH_FILE
    from mirage.pipeline.runner import resolve_model

    root = resolve_model(folder)
    check_model_dir(root, load_text_encoder=False)  # lists every missing file
    if memory != "none" and not (root / SIDE_BRANCH_FILE).is_file():
        raise ValueError(
            f"{root} has no side branch ({SIDE_BRANCH_FILE}): the memory would change nothing. "
            "Pick a model folder with one, or switch the memory to none"
        )
    return root


def generation_config(model: Path, memory: str, steps: int | None, seed: int) -> GenerationConfig:
    """The model's own chunk length and steps (`mirage.json`), as `mirage generate` uses."""
    from mirage.pipeline.model_info import model_defaults

    native = model_defaults(model)
    return GenerationConfig(
        chunk_frames=native.get("chunk_frames", 9),
        num_inference_steps=steps or native.get("num_inference_steps", 10),
        memory=memory, seed=seed,
    )  # fmt: skip


def frame_size(model: Path) -> tuple[int, int]:
    """(H, W) the model was trained at; 64 x 64 for a folder that does not say."""
    from mirage.pipeline.model_info import model_defaults

    native = model_defaults(model)
    return int(native.get("height", 64)), int(native.get("width", 64))


def load_model(model: Path, device: str = "cpu"):
    """A MiragePipeline without a depth provider: each start sets the one that fits it."""
    from mirage.pipeline.loading import build_pipeline

    return build_pipeline(model, depth=None, masks="none", device=device)


def scene_start(pipeline, seed: int, kind: str, size: tuple[int, int], fov: float,
                supersample: int = 1):  # fmt: skip
    """First frame [3,H,W] and camera of a synthetic scene; its exact depth feeds the memory.
    The frame is rendered with `supersample` x `supersample` rays per pixel (the model's)."""
    from mirage.perception import load_depth_provider
    from mirage.synthetic import KINDS, make_scene

    if kind not in KINDS:
        raise ValueError(f"`scene_kind` must be one of {KINDS}, got {kind!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"`scene_seed` must be a non-negative integer, got {seed!r}")
    scene = make_scene(int(seed), kind)
    camera = scene.start_camera(*size, fov)
    pipeline.depth = load_depth_provider("gt", scene)
    return scene.render(camera, supersample=supersample).rgb[0], camera


def image_start(pipeline, data: bytes, depth_model: str | Path | None, size, fov: float):
    """First frame and camera of an uploaded picture (cropped and resized to `size`, never
    stretched), with its depth from the depth model folder `depth_model`."""
    from mirage.perception import load_depth_provider
    from mirage.synthetic import intrinsics

    image = read_upload(data, size)
    if depth_model is None or not str(depth_model).strip():
        raise ValueError(
            "an uploaded image needs a depth model folder (Depth Anything V2 or Depth Pro): start "
            "the explorer with --depth-model"
        )
    depth = load_depth_provider(Path(depth_model), device=str(pipeline.device))
    pipeline.depth = depth  # only once everything above has passed
    H, W = size
    return image, Cameras(intrinsics(H, W, fov)[None], torch.eye(4)[None], H, W)


def read_upload(data: bytes, size: tuple[int, int]) -> torch.Tensor:  # -> [3,H,W] in [0,1]
    """Decode an uploaded picture (8-bit grey, RGB or RGBA); refuse other files and any over
    MAX_UPLOAD_BYTES before decoding."""
    from mirage.pipeline.runner import _load_image  # the one image reader of `generate`

    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueError(
            f"the upload is {len(data) / 2**20:.1f} MiB; at most {MAX_UPLOAD_BYTES // 2**20} MiB"
        )
    if not data:
        raise ValueError("the upload is empty")
    # the reader takes a path: a private temporary file, removed at once
    fd, tmp = tempfile.mkstemp(prefix="mirage-upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return _load_image(tmp, size)
    except ValueError:
        raise ValueError("the upload is not a readable picture (PNG, JPEG, ...)") from None
    finally:
        os.unlink(tmp)
