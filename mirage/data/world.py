"""Render a synthetic clip to a folder a person can look at: video, depth, masks, cameras."""

from __future__ import annotations

from pathlib import Path

import torch

from mirage.atomic import atomic_path, write_json
from mirage.data.re10k import write_re10k_cameras
from mirage.data.trajectories import PRESETS, load_trajectory, make_trajectory, save_trajectory
from mirage.data.video import colorize_depth, write_png, write_video
from mirage.synthetic import KINDS, make_scene


def parse_size(size: str) -> tuple[int, int]:
    """'HxW' -> (H, W), both positive integers."""
    parts = str(size).lower().split("x")
    if (
        len(parts) != 2
        or not all(p.strip().isdigit() for p in parts)
        or min(int(p) for p in parts) < 1
    ):
        raise ValueError(
            f"`size` must be HEIGHTxWIDTH with positive integers, e.g. 128x192, got {size!r}"
        )
    return int(parts[0]), int(parts[1])


def _save_tensors(path: Path, tensors: dict, metadata: dict) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)


def render_world(
    out_dir: str | Path,
    seed: int = 0,
    kind: str = "indoor",
    num_dynamic: int = 0,
    trajectory: str = "orbit",
    num_frames: int = 33,
    height: int = 128,
    width: int = 192,
    fps: float = 16.0,
    fov_deg: float = 60.0,
    progress: bool = True,
) -> dict:
    """Render a clip of the procedural world and write it under `out_dir`:

    video.mp4 (RGB), depth.safetensors (`depth` [T,H,W] z-depth, +inf sky), depth.mp4 and
    depth.png (coloured previews, first frame), masks.safetensors (`dynamic`, `sky` [T,H,W]
    uint8), cameras.txt (RealEstate10K format, timestamps at `fps`), trajectory.json, and
    world.json (the arguments). `trajectory` is a preset name or a trajectory JSON file (its
    cameras are used as they are, `num_frames` and the size are then taken from it).
    Returns a dict of the written paths.
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}")
    if fps <= 0:
        raise ValueError(f"`fps` must be positive, got {fps}")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ValueError(f"`out_dir` must be a folder, but {out_dir} is a file")
    scene = make_scene(seed, kind, num_dynamic)
    if trajectory in PRESETS:
        start = scene.start_camera(height, width, fov_deg)
        kwargs = {"bounds": scene.bounds, "seed": seed} if trajectory == "random_walk" else {}
        if trajectory == "orbit":
            kwargs["up"] = (0.0, 1.0, 0.0)
        cams = make_trajectory(trajectory, start, num_frames, **kwargs)
    elif Path(trajectory).is_file():
        cams = load_trajectory(trajectory)
    else:
        raise ValueError(
            f"`trajectory` must be one of {PRESETS} or an existing JSON file, got {trajectory!r}"
        )
    out = scene.render(cams, progress=progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / v for k, v in {
        "video": "video.mp4", "depth": "depth.safetensors", "depth_video": "depth.mp4",
        "depth_png": "depth.png", "masks": "masks.safetensors", "cameras": "cameras.txt",
        "trajectory": "trajectory.json", "world": "world.json",
    }.items()}  # fmt: skip
    write_video(paths["video"], out.rgb, fps)
    meta = {"seed": str(seed), "kind": kind, "convention": "camera z-depth in metres, inf = sky"}
    _save_tensors(paths["depth"], {"depth": out.depth}, meta)
    preview = colorize_depth(out.depth)
    write_video(paths["depth_video"], preview, fps)
    write_png(paths["depth_png"], preview[0])
    masks = {"dynamic": out.dynamic_mask.to(torch.uint8), "sky": out.sky_mask.to(torch.uint8)}
    _save_tensors(paths["masks"], masks, {"seed": str(seed), "kind": kind})
    stamps = (torch.arange(len(cams), dtype=torch.float64) * 1e6 / fps).round().to(torch.int64)
    write_re10k_cameras(paths["cameras"], f"mirage-synthetic://{kind}/{seed}", stamps, cams)
    save_trajectory(paths["trajectory"], cams)
    info = {
        "seed": seed, "kind": kind, "num_dynamic": num_dynamic, "trajectory": str(trajectory),
        "num_frames": len(cams), "height": cams.height, "width": cams.width, "fps": fps,
        "fov_deg": fov_deg,
    }  # fmt: skip
    write_json(paths["world"], info)
    return paths
