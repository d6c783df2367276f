"""One `mirage generate` run: resolve inputs, build the pipeline, generate, write the outputs."""

from __future__ import annotations

import json
import math
import sys
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from mirage.atomic import atomic_dir, write_json
from mirage.geometry import Cameras
from mirage.machine import describe_machine
from mirage.pipeline.config import GenerationConfig
from mirage.pipeline.model_info import model_defaults, synthetic_supersample
from mirage.pipeline.world_model import GenerationResult


@dataclass(frozen=True)
class GenerateJob:
    model: Path  # Wan-layout model folder (transformer/, vae/, scheduler/, [text_encoder/])
    out: Path  # output folder (written complete through a temporary folder, or not at all)
    trajectory: str = "orbit"  # a preset of mirage.data.trajectories or a trajectory JSON file
    frames: int = 33  # trajectory length for presets
    size: tuple[int, int] | None = None  # (H, W) for presets; default: the image's size
    image: Path | None = None  # first frame; default: rendered from the synthetic scene
    scene_seed: int | None = None  # a synthetic scene (ground-truth depth/masks, first frame)
    scene_kind: str = "indoor"
    fov: float = 60.0  # horizontal field of view (degrees) of the first camera of a preset
    geometry: Path | None = None  # an official geometry.npz: cameras, depth, masks, frame 0
    num_dynamic: int = 0
    prompt: str | None = None
    branch: Path | None = None
    lora: Path | None = None
    depth: str = "gt"  # "gt" or a depth model folder
    masks: str = "none"  # "none", "gt" or a SAM3 folder
    device: str = "cpu"
    dtype: str = "float32"
    offload: bool = False
    overwrite: bool = False  # replace a non-empty `out`
    ulysses: int = 1  # context parallelism: processes that split each chunk's tokens (torchrun)
    ring: int = 1  # ring-attention degree (GPU attention kernels only)
    config: GenerationConfig = field(default_factory=GenerationConfig)


def resolve_model(model: str | Path | None) -> Path:
    """The model folder: None or "tiny" is the embedded mirage-tiny."""
    from mirage.models.loading import TINY_MODEL_DIR

    return TINY_MODEL_DIR if model is None or str(model) == "tiny" else Path(model)


def check_job(job: GenerateJob, cameras, image) -> None:
    """Everything that can be refused before a model loads (all raise ValueError / FNF)."""
    from mirage.atomic import check_out_dir
    from mirage.pipeline.chunks import plan_chunks
    from mirage.pipeline.loading import SIDE_BRANCH_FILE

    check_out_dir(job.out, job.overwrite)
    root = Path(job.model)
    if not root.is_dir():
        raise FileNotFoundError(f"model folder not found: {root}")
    check_device(job.device)
    if not 1.0 <= job.fov <= 170.0:
        raise ValueError(
            f"`fov` must be a horizontal field of view in degrees (1..170), got {job.fov}"
        )
    if job.dtype not in DTYPES:
        raise ValueError(f"`dtype` must be one of {DTYPES}, got {job.dtype!r}")
    has_branch = job.branch is not None or (root / SIDE_BRANCH_FILE).is_file()
    if job.config.memory != "none" and not has_branch:
        raise ValueError(
            f"`--memory {job.config.memory}` needs a side branch ({SIDE_BRANCH_FILE} in the "
            "model folder, or --branch); without one the memory changes nothing: pass "
            "--memory none"
        )
    for name, given in (("branch", job.branch), ("lora", job.lora)):
        if given is not None and not Path(given).is_file():
            raise FileNotFoundError(f"`{name}` file not found: {given}")
    check_parallel(job)
    has_text = (root / "text_encoder").is_dir()
    if job.prompt and not has_text:
        raise ValueError("`--prompt` needs a text encoder (text_encoder/ in the model folder)")
    if job.config.guidance_scale > 1 and not (has_text and job.prompt):
        raise ValueError("`--guidance` > 1 needs a prompt and a text encoder to guide with")
    plan_chunks(len(cameras), job.config.chunk_frames)  # the length fits the chunk plan
    _warn_if_not_native(root, (cameras.height, cameras.width), job.config.chunk_frames)
    factor = _spatial_factor(root)
    H, W = image.shape[1:]
    if factor and (H % (2 * factor) or W % (2 * factor)):
        raise ValueError(
            f"the frame size {H}x{W} must be a multiple of {2 * factor} in both axes for this "
            f"model (its VAE's spatial factor {factor} x the 2x2 patch)"
        )


DTYPES = ("float32", "bfloat16", "float16")


def _warn_if_not_native(model: Path, size: tuple[int, int], chunk_frames: int) -> None:
    """Say so when a model is asked for a size or chunk length it was not trained for."""
    native = model_defaults(model)
    trained = (native.get("height"), native.get("width"), native.get("chunk_frames"))
    if None not in trained and trained != (*size, chunk_frames):
        warnings.warn(
            f"{model.name} was trained for {trained[0]}x{trained[1]} frames in chunks of "
            f"{trained[2]}; asked for {size[0]}x{size[1]} in chunks of {chunk_frames}: expect "
            "worse pictures",
            stacklevel=3,
        )


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, before anything loads."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"`device` must be cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"`device` {device}: this machine has no CUDA device; use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"`device` {device}: only {torch.cuda.device_count()} CUDA device(s) here"
            )


def _spatial_factor(model: Path) -> int | None:
    """The VAE's spatial factor from vae/config.json (without loading weights)."""
    cfg = model / "vae" / "config.json"
    if not cfg.is_file():
        return None
    data = json.loads(cfg.read_text())
    return int(data.get("scale_factor_spatial") or 8)


def _start_camera(height: int, width: int, fov_deg: float = 60.0) -> Cameras:
    """A camera at the origin looking down +z with a horizontal field of view of `fov_deg`."""
    f = width / (2 * math.tan(math.radians(fov_deg) / 2))
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    return Cameras(K, torch.eye(4), height, width)


def resolve_inputs(job: GenerateJob):
    """Scene, cameras, first frame and geometry file (or None) of a job, checked before any
    model loads."""
    if job.geometry is not None:
        return _geometry_inputs(job)
    from mirage.data.trajectories import PRESETS, load_trajectory, make_trajectory

    if job.scene_seed is not None and job.image is not None:
        raise ValueError(
            "give `--scene` (renders the first frame, with ground-truth depth) or `--image`, "
            "not both: ground-truth depth would not belong to the picture"
        )
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
        cameras = load_trajectory(path)  # its K and size rule: the image is brought to them
        if image is not None:
            image = _fit(image, (cameras.height, cameras.width))
    elif job.trajectory in PRESETS:
        if job.size is not None:
            H, W = job.size
        elif image is not None:
            H, W = image.shape[1:]
        else:
            H, W = 128, 128
        start = (
            scene.start_camera(H, W, job.fov) if scene is not None else _start_camera(H, W, job.fov)
        )
        cameras = make_trajectory(job.trajectory, start, job.frames)
    else:
        raise ValueError(
            f"`trajectory` must be a JSON file or one of {PRESETS}, got {job.trajectory!r}"
        )
    if image is None:
        if scene is None:
            raise ValueError("give an `image`, or a synthetic `scene_seed` to render one from")
        ss = synthetic_supersample(Path(job.model))
        image = scene.render(cameras[0], supersample=ss).rgb[0]
    return scene, cameras, image, None


def _geometry_inputs(job: GenerateJob):
    """(None, cameras, first frame, the file) from an official geometry.npz (`job.image`
    overrides the file's first frame)."""
    from mirage.data.geometry_file import load_geometry

    if job.scene_seed is not None:
        raise ValueError("give `--geometry` or `--scene`, not both")
    geo = load_geometry(job.geometry)
    image = geo.first_frame
    if job.image is not None:
        if not Path(job.image).is_file():
            raise FileNotFoundError(f"`image` not found: {job.image}")
        image = _load_image(job.image, (geo.cameras.height, geo.cameras.width))
    if image is None:
        raise ValueError(
            f"{job.geometry} has no `frames` and no first_frame.png or clip.mp4 beside it: "
            "pass --image"
        )
    return None, geo.cameras, image, geo


def _load_image(path, size: tuple[int, int] | None) -> torch.Tensor:  # -> [3,H,W] in [0,1]
    """Read an image once (grey becomes RGB); crop and resize it to `size` (H, W) if given."""
    import imageio.v3 as iio
    import numpy as np

    try:
        with warnings.catch_warnings():  # imageio's plugin probing warns on non-images
            warnings.simplefilter("ignore")
            arr = np.asarray(iio.imread(path))
    except Exception as err:  # imageio raises many kinds for a file that is not an image
        raise ValueError(f"`image` {path} is not a readable image ({type(err).__name__})") from None
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4) or arr.dtype != np.uint8:
        raise ValueError(f"`image` {path} must be an 8-bit grey, RGB or RGBA picture")
    arr = np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr[..., :3]
    img = torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255
    return img if size is None else _fit(img, size)


def _fit(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:  # [3,h,w] -> [3,H,W]
    """Centre-crop to the aspect ratio of `size`, then resize: never stretch the picture."""
    from mirage.data.re10k import resize_frames

    H, W = size
    h, w = image.shape[1:]
    if h * W > w * H:  # too tall for the target: crop rows
        keep = round(w * H / W)
        image = image[:, (h - keep) // 2 : (h - keep) // 2 + keep]
    elif h * W < w * H:  # too wide: crop columns
        keep = round(h * W / H)
        image = image[:, :, (w - keep) // 2 : (w - keep) // 2 + keep]
    return resize_frames(image[None], H, W)[0]


def run_generate(job: GenerateJob, progress: bool = True) -> dict[str, Path]:
    """Generate the video of `job` and write it with its memory and metadata into `job.out`."""
    from mirage.pipeline.loading import build_pipeline

    scene, cameras, image, geo = resolve_inputs(job)
    check_job(job, cameras, image)
    parallel = job.ulysses * job.ring > 1
    if parallel:
        job = replace(job, device=start_processes(job))
    from_file = geo is not None  # depth and masks come with the input
    if progress:  # loading a 5B model takes minutes: say so before the first bar appears
        print(f"loading the model from {job.model} ...", file=sys.stderr, flush=True)
    # with the memory off nothing is ever inserted: no depth or mask model is needed
    geometry = job.config.memory != "none"
    pipe = build_pipeline(
        job.model, job.branch, job.lora, depth=job.depth if geometry and not from_file else None,
        masks=job.masks if geometry and not from_file else "none", scene=scene,
        device=job.device, dtype=getattr(torch, job.dtype), offload=job.offload,
    )  # fmt: skip
    if parallel:  # every process runs the whole loop; the transformer splits its tokens
        from mirage.models.parallel import enable_context_parallel

        enable_context_parallel(pipe.transformer, ulysses=job.ulysses, ring=job.ring)
    if from_file and geometry:
        from mirage.perception import FileDepth, FileMasks

        pipe.depth = FileDepth(geo.depths)
        pipe.masks = FileMasks(geo.keep) if geo.keep is not None else None
    result = pipe.generate(image, cameras, prompt=job.prompt, config=job.config, progress=progress)
    result.metadata["job"] = {k: v for k, v in asdict(job).items() if k != "config"}
    result.metadata["job"].update(branch=pipe.files.get("branch"), lora=pipe.files.get("lora"))
    result.metadata["machine"] = describe_machine(job.device)
    if parallel:
        result.metadata["context_parallel"] = {"ulysses": job.ulysses, "ring": job.ring}
        if torch.distributed.get_rank() != 0:  # the same video on every process: one writes
            return {}
    with atomic_dir(job.out) as tmp:  # complete or absent: never a mix of two runs
        paths = write_outputs(result, tmp, fps=job.config.fps)
    return {k: Path(job.out) / p.relative_to(tmp) for k, p in paths.items()}


def check_parallel(job: GenerateJob) -> None:
    """Context-parallel settings that cannot work, refused before any process waits on another."""
    from mirage.pipeline.profiles import references_on

    if job.ulysses < 1 or job.ring < 1:
        raise ValueError(f"`ulysses` and `ring` must be >= 1, got {job.ulysses}, {job.ring}")
    if job.ring > 1 and not job.device.startswith("cuda"):
        raise ValueError(
            "ring attention needs an attention kernel that returns the log-sum-exp (flash / "
            "cuDNN, on a GPU); on the CPU use `ulysses`"
        )
    if job.ulysses * job.ring > 1 and references_on(job.config.references, _profile(job)):
        raise ValueError(
            "reference slots are not supported under context parallelism (the official "
            "profile retrieves them with `references` auto): pass --references off"
        )


def _profile(job: GenerateJob) -> str:
    """The conditioning profile of the side branch the job will load (`mirage` for none)."""
    from mirage.pipeline.loading import SIDE_BRANCH_FILE, profile_of

    branch = job.branch or Path(job.model) / SIDE_BRANCH_FILE
    return profile_of(branch) if Path(branch).is_file() else "mirage"


def start_processes(job: GenerateJob) -> str:
    """Join the torchrun / accelerate process group for context parallelism; the device of
    this process (cuda:LOCAL_RANK on a GPU job, else the CPU with gloo)."""
    import os

    dist = torch.distributed
    cuda = job.device.startswith("cuda")
    if not dist.is_initialized():
        if "RANK" not in os.environ:
            raise ValueError(
                "`ulysses`/`ring` > 1 needs one process per part: launch with `torchrun "
                f"--nproc_per_node {job.ulysses * job.ring} -m mirage generate ...`"
            )
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
        return device
    return "cpu"


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
