"""WorldScore adapter: read an instance (image, prompts, cameras), write our frames back.

What WorldScore stores (haoyi-duan/WorldScore, `worldscore/benchmark/`; read in a vendored
copy, see docs/eval.md for the file-by-file notes):

* One folder per instance: `<runs_root>/<output_dir>/static/<visual_style>/<scene_type>/
  <category>/<name>/` (dynamic: `dynamic/<visual_style>/<motion_type>/<name>/`).
* `camera_data.json` (static split only), written by `helpers/camera_generator.py`:
  `{"focal_length": 500, "scale": <camera_speed>, "cameras": [K+1 keyframe poses],
  "cameras_interp": [one pose per frame]}`; every pose is a 4x4 **camera-to-world** matrix in
  the Blender/OpenGL camera convention (x right, y up, the camera looks down its -z axis).
  The first pose is diag(-1, 1, -1, 1) (PyTorch3D identity converted to Blender).
* `focal_length` is in pixels of a 512x512 frame: the evaluator's camera metric runs
  DROID-SLAM with calib [500, 500, 256, 256] (`metrics/.../camera_error_metrics.py`).
* `image_data.json`: the dataset entry (`prompt_list` for static, `prompt` for dynamic,
  `style`, `camera_path`, `visual_movement`, ...) plus `num_scenes`, `total_frames` =
  num_scenes * (frames - 1) + 1 and, for static, `anchor_frame_idx`.
* `input_image.png`: the start image, centre-cropped and resized to the model's resolution.
* The evaluator (`helpers/evaluator.py`) reads `frames/*.png|*.jpg` in sorted order and
  requires len(frames) == total_frames == len(cameras_interp). WorldScore's own writer
  (`utils/utils.py: save_frames`) names them `{i:03d}.png`, and `merge_video` writes
  `videos/output.mp4`.

Ours: OpenCV camera frame (x right, y down, z forward). Converting a Blender c2w keeps the
world frame and flips the camera's y and z axes: c2w_cv = c2w_blender @ diag(1, -1, -1, 1).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mirage.data.video import write_png, write_video
from mirage.geometry import Cameras

WORLDSCORE_FOCAL = 500.0  # pixels, the default `focal_length` of camera_data.json
WORLDSCORE_SIZE = (512, 512)  # (height, width) the focal length belongs to
BLENDER_TO_OPENCV = (1.0, -1.0, -1.0, 1.0)  # right-multiplied diagonal (an involution)


def blender_to_opencv_c2w(c2w: torch.Tensor) -> torch.Tensor:  # [T,4,4] -> [T,4,4]
    """Blender/OpenGL camera-to-world poses -> OpenCV camera-to-world poses (same world frame).

    The camera's x axis is kept, its y and z axes are negated (y up -> y down, looking down -z
    -> looking down +z); the camera centre does not move. Applying it twice is the identity.
    """
    c2w = torch.as_tensor(c2w)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise ValueError(f"`c2w` must have shape [T,4,4], got {tuple(c2w.shape)}")
    if not c2w.is_floating_point():
        c2w = c2w.float()
    flip = torch.tensor(BLENDER_TO_OPENCV, dtype=c2w.dtype, device=c2w.device)
    return c2w * flip  # right-multiplying by a diagonal scales the columns


opencv_to_blender_c2w = blender_to_opencv_c2w  # the same flip undoes itself


def worldscore_intrinsics(
    focal_length: float, height: int, width: int, reference: tuple[int, int] = WORLDSCORE_SIZE
) -> torch.Tensor:  # -> [3,3]
    """K for an `height x width` output from WorldScore's focal length (pixels of `reference`).

    The output is taken as a resize of the centre of the reference frame that keeps the field
    of view of its shorter side: f' = f * min(height, width) / min(reference), with the
    principal point at the image centre (continuous pixel convention). For the 512x512 frames
    the evaluator assumes this is exactly K = [[500, 0, 256], [0, 500, 256], [0, 0, 1]].
    """
    if not focal_length > 0:
        raise ValueError(f"`focal_length` must be positive, got {focal_length}")
    if height <= 0 or width <= 0:
        raise ValueError(f"`height` and `width` must be positive, got {height}x{width}")
    f = float(focal_length) * min(height, width) / min(reference)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class WorldScoreInstance:
    """One WorldScore instance. Unpacks as `image_path, prompts, cameras = instance`."""

    image_path: Path
    prompts: list[str]
    cameras: Cameras  # one OpenCV camera per output frame (cameras_interp)
    root: Path
    total_frames: int
    anchor_frame_idx: list[int] = field(default_factory=list)  # frames where a scene starts
    visual_movement: str = "static"
    scale: float = 1.0  # WorldScore's camera speed; their translation error divides by it
    image_data: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.image_path, self.prompts, self.cameras))


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"WorldScore instance is missing {what}: {path}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_worldscore_instance(
    instance_dir: str | Path,
    height: int = WORLDSCORE_SIZE[0],
    width: int = WORLDSCORE_SIZE[1],
    dataset_root: str | Path | None = None,
) -> WorldScoreInstance:
    """Read a WorldScore instance folder into our conventions.

    Args:
        instance_dir: the folder holding `image_data.json`, `camera_data.json` (static) and
            `input_image.png` (or an `image` entry resolved against `dataset_root`).
        height, width: the frame size the returned Cameras belong to (default 512x512, the
            size WorldScore's focal length refers to); see `worldscore_intrinsics`.
        dataset_root: where WorldScore's dataset images live, used only when the folder has
            no `input_image.png`.
    Returns:
        WorldScoreInstance; `prompts` are `prompt_list` (static) or `[prompt]` (dynamic), as
        stored; `cameras` holds len(cameras_interp) OpenCV cameras (dynamic instances, which
        have no camera_data.json, get `total_frames` copies of WorldScore's start pose).
    """
    root = Path(instance_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"`instance_dir` must be a WorldScore instance folder: {root}")
    image_data = _read_json(root / "image_data.json", "image_data.json")
    movement = image_data.get("visual_movement", "static")
    if "prompt_list" in image_data:
        prompts = [str(p) for p in image_data["prompt_list"]]
    elif "prompt" in image_data:
        prompts = [str(image_data["prompt"])]
    else:
        raise ValueError(f"{root / 'image_data.json'} has neither `prompt_list` nor `prompt`")

    image_path = root / "input_image.png"
    if not image_path.is_file():
        if dataset_root is None or "image" not in image_data:
            raise FileNotFoundError(
                f"WorldScore instance {root} has no input_image.png; pass `dataset_root` so "
                "its `image` entry can be found"
            )
        image_path = Path(dataset_root) / image_data["image"]
        if not image_path.is_file():
            raise FileNotFoundError(f"start image of {root} not found at {image_path}")

    camera_file = root / "camera_data.json"
    if camera_file.is_file():
        camera_data = _read_json(camera_file, "camera_data.json")
        if "cameras_interp" not in camera_data:
            raise ValueError(f"{camera_file} must hold `cameras_interp` (one 4x4 c2w per frame)")
        c2w = torch.tensor(camera_data["cameras_interp"], dtype=torch.float64)
        if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or len(c2w) == 0:
            raise ValueError(
                f"{camera_file}: `cameras_interp` must be a non-empty list of 4x4 matrices, "
                f"got shape {tuple(c2w.shape)}"
            )
        focal = float(camera_data.get("focal_length", WORLDSCORE_FOCAL))
        scale = float(camera_data.get("scale", 1.0))
    elif movement == "dynamic":
        n = int(image_data.get("total_frames", 0))
        if n <= 0:
            raise ValueError(f"{root}: a dynamic instance needs `total_frames` in image_data.json")
        start = torch.diag(torch.tensor([-1.0, 1.0, -1.0, 1.0], dtype=torch.float64))
        c2w, focal, scale = start.expand(n, 4, 4), WORLDSCORE_FOCAL, 1.0
    else:
        raise FileNotFoundError(f"static WorldScore instance is missing camera_data.json: {root}")

    total = int(image_data.get("total_frames", len(c2w)))
    if total != len(c2w):
        raise ValueError(
            f"{root}: image_data.json says total_frames = {total} but camera_data.json has "
            f"{len(c2w)} cameras_interp poses"
        )
    K = worldscore_intrinsics(focal, height, width)
    cameras = Cameras(K, blender_to_opencv_c2w(c2w).float(), height, width)
    return WorldScoreInstance(
        image_path=image_path,
        prompts=prompts,
        cameras=cameras,
        root=root,
        total_frames=total,
        anchor_frame_idx=[int(i) for i in image_data.get("anchor_frame_idx", [0])],
        visual_movement=str(movement),
        scale=scale,
        image_data=image_data,
    )


def write_worldscore_frames(
    out_dir: str | Path,
    frames: torch.Tensor,
    instance_dir: str | Path | None = None,
    fps: int = 10,
    video: bool = True,
) -> list[Path]:
    """Write generated frames [T,3,H,W] in [0, 1] where WorldScore's evaluator reads them.

    Writes `out_dir/frames/000.png, 001.png, ...` (zero-padded to at least 3 digits so sorted
    order is frame order) and, with `video`, `out_dir/videos/output.mp4`. With `instance_dir`,
    T must equal the instance's `total_frames`, and its `image_data.json`, `camera_data.json`
    and `input_image.png` are copied into `out_dir` when that is another folder (the evaluator
    reads them beside the frames). Existing PNGs in `out_dir/frames` are removed first so a
    shorter re-run cannot leave stale frames behind.

    Returns:
        the written frame paths, in order.
    """
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"`frames` must be a tensor [T,3,H,W] in [0, 1], got {shape}")
    if len(frames) == 0 or not torch.isfinite(frames).all():
        raise ValueError("`frames` must hold at least one frame of finite values")
    out = Path(out_dir)
    if instance_dir is not None:
        inst = Path(instance_dir)
        total = _read_json(inst / "image_data.json", "image_data.json").get("total_frames")
        if total is not None and int(total) != len(frames):
            raise ValueError(
                f"`frames` must hold the instance's total_frames = {total} frames (the evaluator "
                f"rejects any other count), got {len(frames)}"
            )
    out.mkdir(parents=True, exist_ok=True)
    if instance_dir is not None and Path(instance_dir).resolve() != out.resolve():
        for name in ("image_data.json", "camera_data.json", "input_image.png"):
            src = Path(instance_dir) / name
            if src.is_file():
                shutil.copyfile(src, out / name)
    frames_dir = out / "frames"
    frames_dir.mkdir(exist_ok=True)
    for old in list(frames_dir.glob("*.png")) + list(frames_dir.glob("*.jpg")):
        old.unlink()
    digits = max(3, len(str(len(frames) - 1)))
    paths = [frames_dir / f"{i:0{digits}d}.png" for i in range(len(frames))]
    for path, frame in zip(paths, frames, strict=True):
        write_png(path, frame)
    if video:
        write_video(out / "videos" / "output.mp4", frames, fps=fps)
    return paths
