"""Evaluation clips: held-out synthetic scenes along fixed trajectories, or RealEstate10K clips.

Both are lazy sequences: `clips[i]` builds (renders or loads) clip i when asked, so a process
evaluating one shard of the clips builds only its own, and nothing is kept afterwards.

Synthetic clip i (documented in docs/eval.md):

* scene seed `EVAL_SCENE_SEED_START + i`. Training clips (`SyntheticClipDataset`) draw their
  scene seeds from [0, 2**31), so these scenes are never trained on;
* start camera `scene.start_camera(H, W)` (60 degree horizontal field of view);
* path `EVAL_PATHS[i % 6]` with the arguments listed there; the novel-view protocol follows
  the path for `num_frames` frames, the closed-loop protocol goes out along it and comes back
  (`make_trajectory("loop", path=...)`, a palindrome of `num_frames` frames);
* ground truth rendered by the ray-caster at frame times 0 .. T-1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mirage.geometry import Cameras

EVAL_SCENE_SEED_START = 2**31  # synthetic eval scenes: seeds 2**31, 2**31 + 1, ...
EVAL_PATHS = (  # (preset, arguments) of clip i % 6: moderate motions that stay in a room
    ("orbit", {"radius": 2.0, "degrees": 30.0, "up": (0.0, 1.0, 0.0)}),
    ("move_right", {"distance": 0.6}),
    ("pan_left", {"degrees": 30.0}),
    ("push_in", {"distance": 0.6}),
    ("move_left", {"distance": 0.6}),
    ("pan_right", {"degrees": 30.0}),
)
PROTOCOLS = ("nvs", "closed_loop")


@dataclass(frozen=True)
class SceneClip:
    """A synthetic clip with its scene (for ground-truth depth and masks)."""

    name: str
    frames: torch.Tensor  # [T,3,H,W] in [0,1]
    cameras: Cameras
    scene: object  # mirage.synthetic.Scene


def synthetic_clip_cameras(scene, index: int, protocol: str, num_frames: int, height, width):
    """The cameras of synthetic eval clip `index` (see the module docstring)."""
    from mirage.data.trajectories import make_trajectory

    start = scene.start_camera(height, width)
    preset, kwargs = EVAL_PATHS[index % len(EVAL_PATHS)]
    if protocol == "closed_loop":
        return make_trajectory("loop", start, num_frames, path=preset, **kwargs)
    return make_trajectory(preset, start, num_frames, **kwargs)


class SyntheticEvalClips(Sequence):
    """`num_clips` held-out synthetic clips for `protocol` ("nvs" or "closed_loop")."""

    def __init__(
        self,
        num_clips: int,
        num_frames: int,
        height: int,
        width: int,
        protocol: str = "nvs",
        kind: str = "indoor",
        num_dynamic: int = 0,
        seed_start: int = EVAL_SCENE_SEED_START,
        supersample: int = 1,  # s x s rays per pixel, as the model's training frames
    ):
        from mirage.data.datasets import check_clip_size

        if int(num_clips) != num_clips or num_clips < 1:
            raise ValueError(f"`num_clips` must be a positive integer, got {num_clips!r}")
        check_clip_size(num_frames, height, width, min_frames=2)
        if protocol not in PROTOCOLS:
            raise ValueError(f"`protocol` must be one of {PROTOCOLS}, got {protocol!r}")
        if kind not in ("indoor", "outdoor"):
            raise ValueError(f"`kind` must be 'indoor' or 'outdoor', got {kind!r}")
        self.num_clips, self.num_frames = int(num_clips), int(num_frames)
        self.height, self.width, self.protocol = int(height), int(width), protocol
        self.kind, self.num_dynamic, self.seed_start = kind, int(num_dynamic), int(seed_start)
        self.supersample = int(supersample)

    def __len__(self) -> int:
        return self.num_clips

    def scene(self, index: int):
        from mirage.synthetic import make_scene

        return make_scene(self.seed_start + index, kind=self.kind, num_dynamic=self.num_dynamic)

    def __getitem__(self, index: int) -> SceneClip:
        if not 0 <= index < self.num_clips:
            raise IndexError(f"clip index {index} out of range for {self.num_clips} clips")
        scene = self.scene(index)
        cams = synthetic_clip_cameras(
            scene, index, self.protocol, self.num_frames, self.height, self.width
        )
        frames = scene.render(cams, supersample=self.supersample).rgb  # frame times 0 .. T-1
        name = f"{self.kind}{self.seed_start + index}"
        return SceneClip(name, frames, cams, scene)


@dataclass(frozen=True)
class Re10kEvalClip:
    name: str  # <clip folder>_<first frame>
    frames: torch.Tensor  # [T,3,H,W] in [0,1]
    cameras: Cameras


class Re10kEvalClips(Sequence):
    """Clips of a RealEstate10K-layout folder (`mirage.data.datasets.Re10kClipDataset`):
    windows of `num_frames` frames every `stride` source frames, resized to `height x width`;
    at most `max_clips` of them (in the dataset's order) when given."""

    def __init__(self, root, num_frames, height, width, stride=1, max_clips=None):
        from mirage.data.datasets import Re10kClipDataset

        self.dataset = Re10kClipDataset(Path(root), num_frames, height, width, stride)
        n = len(self.dataset)
        self.num_clips = n if max_clips is None else min(n, int(max_clips))

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> Re10kEvalClip:
        if not 0 <= index < self.num_clips:
            raise IndexError(f"clip index {index} out of range for {self.num_clips} clips")
        item = self.dataset[index]
        d = self.dataset
        cams = Cameras(item["K"], item["c2w"], d.height, d.width)
        return Re10kEvalClip(f"{item['clip']}_{item['start']:06d}", item["frames"], cams)
