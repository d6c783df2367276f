"""One `mirage generate` run: resolve inputs, build the pipeline, generate, write the outputs."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from mirage.atomic import write_json
from mirage.geometry import Cameras
from mirage.pipeline.config import GenerationConfig
from mirage.pipeline.world_model import GenerationResult


@dataclass(frozen=True)
class GenerateJob:
    model: Path  # Wan-layout model folder (transformer/, vae/, scheduler/, [text_encoder/])
    out: Path  # output folder
    trajectory: str = "orbit"  # a preset of mirage.data.trajectories or a trajectory JSON file
    frames: int = 33  # trajectory length for presets
    size: tuple[int, int] | None = None  # (H, W) for presets; default: the image's size
    image: Path | None = None  # first frame; default: rendered from the synthetic scene
    scene_seed: int | None = None  # a synthetic scene (ground-truth depth/masks, first frame)
    scene_kind: str = "indoor"
    num_dynamic: int = 0
    prompt: str | None = None
    branch: Path | None = None
    lora: Path | None = None
    depth: str = "gt"  # "gt" or a depth model folder
    masks: str = "none"  # "none", "gt" or a SAM3 folder
    device: str = "cpu"
    dtype: str = "float32"
    offload: bool = False
    config: GenerationConfig = field(default_factory=GenerationConfig)


def _start_camera(height: int, width: int, fov_deg: float = 60.0) -> Cameras:
    """A camera at the origin looking down +z with a horizontal field of view of `fov_deg`."""
    f = width / (2 * math.tan(math.radians(fov_deg) / 2))
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    return Cameras(K, torch.eye(4), height, width)


def resolve_inputs(job: GenerateJob):
    """Scene, cameras and first frame of a job, all checked before any model loads."""
    from mirage.data.trajectories import PRESETS, load_trajectory, make_trajectory

    scene = None
    if job.scene_seed is not None:
        from mirage.synthetic import make_scene

        scene = make_scene(job.scene_seed, kind=job.scene_kind, num_dynamic=job.num_dynamic)
    image = None
    if job.image is not None:
        if not Path(job.image).is_file():
            raise FileNotFoundError(f"`image` not found: {job.image}")
        image = _load_image(job.image, job.size)
    path = Path(job.trajectory)
    if path.suffix == ".json" or path.is_file():
        cameras = load_trajectory(path)
    elif job.trajectory in PRESETS:
        if job.size is not None:
            H, W = job.size
        elif image is not None:
            H, W = image.shape[1:]
        else:
            H, W = 128, 128
        start = scene.start_camera(H, W) if scene is not None else _start_camera(H, W)
        cameras = make_trajectory(job.trajectory, start, job.frames)
    else:
        raise ValueError(
            f"`trajectory` must be a JSON file or one of {PRESETS}, got {job.trajectory!r}"
        )
    if image is None:
        if scene is None:
            raise ValueError("give an `image`, or a synthetic `scene_seed` to render one from")
        image = scene.render(cameras[0]).rgb[0]
    return scene, cameras, image


def _load_image(path, size: tuple[int, int] | None) -> torch.Tensor:  # -> [3,H,W] in [0,1]
    """Read an image once; resize it to `size` (H, W) when given."""
    import imageio.v3 as iio

    from mirage.data.re10k import resize_frames

    arr = iio.imread(path)[..., :3]
    img = torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255
    return img if size is None else resize_frames(img[None], *size)[0]


def run_generate(job: GenerateJob, progress: bool = True) -> dict[str, Path]:
    """Generate the video of `job` and write it with its memory and metadata into `job.out`."""
    from mirage.pipeline.loading import build_pipeline

    scene, cameras, image = resolve_inputs(job)
    pipe = build_pipeline(
        job.model, job.branch, job.lora, depth=job.depth, masks=job.masks, scene=scene,
        device=job.device, dtype=getattr(torch, job.dtype), offload=job.offload,
    )  # fmt: skip
    result = pipe.generate(image, cameras, prompt=job.prompt, config=job.config, progress=progress)
    result.metadata["job"] = {k: str(v) for k, v in asdict(job).items() if k != "config"}
    return write_outputs(result, Path(job.out), fps=job.config.fps)


def write_outputs(result: GenerationResult, out: Path, fps: float = 16.0) -> dict[str, Path]:
    """Write video.mp4, frames/NNNN.png, metadata.json and the memory (memory.safetensors and
    memory.ply, for a memory that is on)."""
    from mirage.data.video import write_png, write_video

    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "video": out / "video.mp4",
        "frames": out / "frames",
        "metadata": out / "metadata.json",
    }
    write_video(paths["video"], result.frames, fps=fps)
    paths["frames"].mkdir(exist_ok=True)
    for i, frame in enumerate(result.frames):
        write_png(paths["frames"] / f"{i:04d}.png", frame)
    for key, name, write in (
        ("memory", "memory.safetensors", result.memory.save),
        ("ply", "memory.ply", result.memory.export_ply),
    ):
        write(out / name)
        if (out / name).is_file():  # a memory that is off writes nothing
            paths[key] = out / name
    write_json(paths["metadata"], dict(result.metadata, timings=result.timings))
    return paths
