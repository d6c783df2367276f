"""`mirage worldscore`: generate one WorldScore instance with the pipeline, write its frames.

Steps: read the instance (`read_worldscore_instance`: Blender -> OpenCV cameras), centre-crop
the start image to the model's aspect ratio and resize it to `size` (the intrinsics follow the
crop and the resize exactly), fit the trajectory to the chunk plan, generate, and write
exactly `total_frames` frames where WorldScore's evaluator reads them.

Trajectory length: the pipeline makes 1 + n (chunk_frames - 1) frames. When WorldScore's
`total_frames` is not such a length, the nearest longer one is generated, the extra cameras
holding the last pose, and only the first `total_frames` frames are written (the evaluator
rejects any other count). The extra frames are never shown to the evaluator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from mirage.geometry import Cameras
from mirage.pipeline.config import GenerationConfig


@dataclass(frozen=True)
class WorldScoreJob:
    instance: Path  # a WorldScore instance folder (image_data.json, camera_data.json, image)
    model: Path  # Wan-layout model folder
    out: Path | None = None  # default: the instance folder (where the evaluator reads)
    size: tuple[int, int] = (512, 512)  # (H, W) generated; multiples of 32 for Wan2.2
    depth: str = ""  # a depth model folder (WorldScore has no ground truth)
    masks: str = "none"  # "none" or a SAM3 folder
    branch: Path | None = None
    lora: Path | None = None
    prompt: str | None = None  # default: the instance's first prompt
    dataset_root: Path | None = None  # where the start image lives if not in the folder
    device: str = "cpu"
    dtype: str = "float32"
    offload: bool = False
    fps: int = 10  # of videos/output.mp4
    config: GenerationConfig = field(default_factory=GenerationConfig)


def fitting_length(total_frames: int, chunk_frames: int) -> int:
    """The shortest length 1 + n (chunk_frames - 1), n >= 1, holding `total_frames` frames."""
    if total_frames < 1:
        raise ValueError(f"`total_frames` must be >= 1, got {total_frames}")
    step = chunk_frames - 1
    n = max(1, -(-(total_frames - 1) // step))  # ceil
    return 1 + n * step


def fit_image(image: torch.Tensor, cameras: Cameras, height: int, width: int):
    """Centre-crop image [3,h,w] to the aspect of `height x width`, resize; cameras follow.

    The crop moves the principal point by the crop offset, the resize scales K; returns the
    image [3,height,width] and the cameras for that size.
    """
    from mirage.data.re10k import resize_frames

    _, h0, w0 = image.shape
    if (cameras.height, cameras.width) != (h0, w0):
        raise ValueError(f"`cameras` are for {cameras.height}x{cameras.width}, image {h0}x{w0}")
    if h0 * width > w0 * height:  # taller than the target: crop rows
        hc, wc = round(w0 * height / width), w0
    else:
        hc, wc = h0, round(h0 * width / height)
    top, left = (h0 - hc) // 2, (w0 - wc) // 2
    K = cameras.K.clone()
    K[:, 0, 2] -= left
    K[:, 1, 2] -= top
    cropped = Cameras(K, cameras.c2w, hc, wc)
    crop = image[:, top : top + hc, left : left + wc]
    return resize_frames(crop[None], height, width)[0], cropped.resized(height, width)


def _read_image(path: Path) -> torch.Tensor:  # -> [3,H,W] in [0,1]
    import imageio.v3 as iio

    arr = iio.imread(path)
    if arr.ndim == 2:
        arr = arr[..., None].repeat(3, axis=-1)
    return torch.from_numpy(arr[..., :3].copy()).permute(2, 0, 1).float() / 255


def run_worldscore(job: WorldScoreJob, progress: bool = True) -> list[Path]:
    """Generate the instance and write `frames/000.png ...` and `videos/output.mp4`.

    Returns the written frame paths (exactly `total_frames` of them).
    """
    from mirage.atomic import write_json
    from mirage.eval.worldscore import read_worldscore_instance, write_worldscore_frames
    from mirage.pipeline.loading import build_pipeline

    if not job.depth:
        raise ValueError("`depth` must be a depth model folder (WorldScore has no ground truth)")
    H, W = job.size
    inst = read_worldscore_instance(job.instance, dataset_root=job.dataset_root)
    image = _read_image(inst.image_path)
    inst = read_worldscore_instance(job.instance, *image.shape[1:], dataset_root=job.dataset_root)
    image, cameras = fit_image(image, inst.cameras, H, W)
    total = inst.total_frames
    n = fitting_length(total, job.config.chunk_frames)
    hold = torch.full((n - total,), total - 1, dtype=torch.long)
    cameras = cameras[torch.cat([torch.arange(total), hold])]  # extra frames hold the last pose
    prompt = job.prompt if job.prompt is not None else (inst.prompts[0] if inst.prompts else None)
    pipe = build_pipeline(
        job.model, job.branch, job.lora, depth=job.depth, masks=job.masks, device=job.device,
        dtype=getattr(torch, job.dtype), offload=job.offload,
    )  # fmt: skip
    result = pipe.generate(image, cameras, prompt=prompt, config=job.config, progress=progress)
    out = Path(job.out) if job.out is not None else Path(job.instance)
    frames = result.frames[:total]  # exactly total_frames: the extra held-pose frames go
    paths = write_worldscore_frames(out, frames, instance_dir=job.instance, fps=job.fps)
    record = {k: v for k, v in asdict(job).items() if k != "config"}
    write_json(
        out / "mirage_generation.json",
        {"job": record, "config": asdict(job.config), "prompt": prompt, "total_frames": total,
         "generated_frames": n, "size": [H, W], "K": cameras.K[0]},
    )  # fmt: skip
    return paths
