"""Clip datasets: seeded synthetic clips with exact ground truth, and RealEstate10K-format clips.

Both yield dicts of tensors for one clip of `num_frames` frames at `height x width`:
`frames [T,3,H,W]` in [0, 1], `K [T,3,3]` (pixels of that size), `c2w [T,4,4]`.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from torch.utils.data import Dataset

from mirage.data.re10k import check_image_size, count_frames, load_frames, read_re10k_cameras
from mirage.data.trajectories import PRESETS, make_trajectory
from mirage.geometry import Cameras
from mirage.synthetic import look_at, make_scene

CLIP_KINDS = ("indoor", "outdoor", "mixed")
MAX_TRIES = 8  # draws of a preset before falling back to a random walk


def check_clip_size(num_frames, height, width, min_frames: int = 1) -> None:
    """Raise ValueError unless `num_frames` is an integer >= `min_frames` and `height`,
    `width` are positive integers (the size arguments every clip dataset takes)."""
    if int(num_frames) != num_frames or num_frames < min_frames:
        raise ValueError(f"`num_frames` must be an integer >= {min_frames}, got {num_frames!r}")
    check_image_size(height, width)


def _preset_kwargs(rng: random.Random, preset: str, scene) -> dict:
    """Seeded, scene-appropriate arguments for a trajectory preset (world up is +y)."""
    if preset == "orbit":
        return {
            "radius": rng.uniform(1.5, 3.0),
            "degrees": rng.choice((-1, 1)) * rng.uniform(20, 60),
            "up": (0.0, 1.0, 0.0),
        }
    if preset in ("push_in", "pull_out", "move_left", "move_right"):
        return {"distance": rng.uniform(0.4, 1.2)}
    if preset in ("pan_left", "pan_right"):
        return {"degrees": rng.uniform(20, 60)}
    if preset == "loop":
        path = rng.choice(("orbit", "move_left", "move_right", "pan_left", "pan_right", "push_in"))
        return {"path": path, **_preset_kwargs(rng, path, scene)}
    return {"seed": rng.randrange(2**31), "bounds": scene.bounds, "step": rng.uniform(0.3, 0.7)}


def _aim_at_mover(scene, start, rng: random.Random):
    """The start camera turned towards where a moving object is at frame 0 (when it is at
    least 1.2 m away horizontally), so clips with movers usually show them."""
    mover = scene.dynamic_positions(torch.zeros(1))[rng.randrange(len(scene.dynamic)), 0]
    eye = start.centers[0].double()
    if (mover - eye)[[0, 2]].norm() < 1.2:
        return start
    return Cameras(start.K, look_at(eye, mover)[None], start.height, start.width)


class SyntheticClipDataset(Dataset):
    """`num_clips` procedural clips, each the same for the same (seed, index).

    Item i: a scene (seed drawn from (seed, i)), a start camera looking at a landmark, a
    trajectory preset from `trajectories` with seeded arguments, rendered with frame times
    0..T-1. With moving objects, half the clips start facing one of them. Keys: frames
    [T,3,H,W], depth [T,H,W] (z-depth, +inf sky), dynamic_mask,
    sky_mask [T,H,W] bool, K [T,3,3], c2w [T,4,4], scene_seed, kind, trajectory (str).
    `kind` "mixed" alternates indoor and outdoor by a seeded draw. `supersample` s renders
    RGB with s x s rays per pixel (anti-aliased, as a camera integrates light); depth and
    masks stay those of the pixel centre.
    """

    def __init__(
        self,
        num_clips: int,
        num_frames: int,
        height: int,
        width: int,
        seed: int = 0,
        kind: str = "indoor",
        num_dynamic: int = 0,
        trajectories=PRESETS,
        fov_deg: float = 60.0,
        supersample: int = 1,
    ):
        check_clip_size(num_frames, height, width)
        if int(supersample) != supersample or supersample < 1:
            raise ValueError(f"`supersample` must be a positive integer, got {supersample!r}")
        if int(num_clips) != num_clips or num_clips < 1:
            raise ValueError(f"`num_clips` must be a positive integer, got {num_clips!r}")
        if kind not in CLIP_KINDS:
            raise ValueError(f"`kind` must be one of {CLIP_KINDS}, got {kind!r}")
        trajectories = tuple(trajectories)
        bad = [t for t in trajectories if t not in PRESETS]
        if not trajectories or bad:
            raise ValueError(
                f"`trajectories` must be a non-empty subset of {PRESETS}, got {trajectories}"
            )
        self.num_clips, self.num_frames = int(num_clips), int(num_frames)
        self.height, self.width, self.seed = int(height), int(width), int(seed)
        self.kind, self.num_dynamic, self.trajectories, self.fov_deg = (
            kind,
            int(num_dynamic),
            trajectories,
            fov_deg,
        )
        self.supersample = int(supersample)

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict:
        if not -self.num_clips <= index < self.num_clips:
            raise IndexError(f"clip index {index} out of range for {self.num_clips} clips")
        index %= self.num_clips
        rng = random.Random(f"mirage-clip-{self.seed}-{index}")
        scene_seed = rng.randrange(2**31)
        kind = rng.choice(("indoor", "outdoor")) if self.kind == "mixed" else self.kind
        scene = make_scene(scene_seed, kind, self.num_dynamic)
        start = scene.start_camera(self.height, self.width, self.fov_deg, seed=rng.randrange(2**31))
        if scene.dynamic and rng.random() < 0.5:
            start = _aim_at_mover(scene, start, rng)
        # a preset that would take the camera through a wall or into furniture is drawn again
        # (seeded, so still deterministic); the bounded random walk is the fallback
        for _ in range(MAX_TRIES):
            preset = rng.choice(self.trajectories)
            cams = make_trajectory(
                preset, start, self.num_frames, **_preset_kwargs(rng, preset, scene)
            )
            if scene.free(cams.centers).all():
                break
        else:
            preset = "random_walk"
            kwargs = _preset_kwargs(rng, preset, scene)
            cams = make_trajectory(preset, start, self.num_frames, **kwargs)
        out = scene.render(cams, supersample=self.supersample)
        return {
            "frames": out.rgb,
            "depth": out.depth,
            "dynamic_mask": out.dynamic_mask,
            "sky_mask": out.sky_mask,
            "K": cams.K,
            "c2w": cams.c2w,
            "scene_seed": scene_seed,
            "kind": kind,
            "trajectory": preset,
        }


class Re10kClipDataset(Dataset):
    """Clips in RealEstate10K layout under `root` (see docs/data.md):

        <root>/<clip>/cameras.txt          the camera file (URL line, then one line per frame)
        <root>/<clip>/frames/*.png|jpg     frame i = i-th image in sorted name order, or
        <root>/<clip>/video.mp4            frame i = i-th decoded frame

    Each clip is cut into non-overlapping windows of `num_frames` frames taken every `stride`
    frames; clips shorter than one window are skipped (`skipped` lists them). Items: frames
    [T,3,H,W] resized to `height x width`, K [T,3,3] for that size, c2w [T,4,4],
    timestamps_us [T], clip (name), start (first frame index).
    """

    def __init__(self, root: str | Path, num_frames: int, height: int, width: int, stride: int = 1):
        check_clip_size(num_frames, height, width)
        if int(stride) != stride or stride < 1:
            raise ValueError(f"`stride` must be a positive integer, got {stride!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root {self.root} is not a directory")
        self.num_frames, self.height, self.width, self.stride = (
            int(num_frames),
            int(height),
            int(width),
            int(stride),
        )
        span = (self.num_frames - 1) * self.stride + 1
        self.items, self.skipped = [], []
        self._clips = {}  # clip -> (frames source, timestamps [N], Cameras at height x width)
        for clip in sorted(p for p in self.root.iterdir() if (p / "cameras.txt").is_file()):
            source = self._source(clip)
            stamps, cams = read_re10k_cameras(clip / "cameras.txt", self.height, self.width)
            n = min(len(stamps), count_frames(source))
            if n < span:
                self.skipped.append(clip.name)
                continue
            self._clips[clip] = (source, stamps, cams)
            for start in range(0, n - span + 1, span):
                self.items.append((clip, start))
        if not self.items:
            raise ValueError(
                f"no clip under {self.root} holds {span} frames "
                "(<clip>/cameras.txt + frames/ or video.mp4)"
            )

    @staticmethod
    def _source(clip: Path) -> Path:
        if (clip / "frames").is_dir():
            return clip / "frames"
        if (clip / "video.mp4").is_file():
            return clip / "video.mp4"
        raise FileNotFoundError(f"clip {clip} has neither frames/ nor video.mp4")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        clip, start = self.items[index]
        idx = list(range(start, start + (self.num_frames - 1) * self.stride + 1, self.stride))
        source, stamps, cams = self._clips[clip]  # parsed once in __init__
        frames = load_frames(source, self.height, self.width, indices=idx)
        sel = torch.tensor(idx)
        return {
            "frames": frames,
            "K": cams.K[sel],
            "c2w": cams.c2w[sel],
            "timestamps_us": stamps[sel],
            "clip": clip.name,
            "start": start,
        }
