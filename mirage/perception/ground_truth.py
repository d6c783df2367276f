"""Ground-truth perception from the synthetic world: exact depth and dynamic/sky masks.

`GroundTruthDepth(scene)` and `GroundTruthMasks(scene)` ray-cast the scene for the given
cameras at time `frame_indices` (the frames themselves are not looked at), and `NoMasks()`
excludes nothing. Depth and masks of one call come from one render: the last render is
kept (depth and masks only, keyed by the scene's content, cameras and times) so a depth call
followed by a mask call on the same views ray-casts once.
"""

from __future__ import annotations

import torch

from mirage.geometry import Cameras
from mirage.perception.base import check_frames

_last: dict = {}  # one entry: key -> (depth [T,H,W], dynamic [T,H,W], sky [T,H,W]) on CPU


def _scene_fingerprint(scene) -> tuple:
    """Cheap identity of the scene's content, so an edited scene is rendered again."""
    parts = [len(getattr(scene, "materials", ()))]
    for name in ("boxes", "spheres", "cylinders"):
        value = getattr(scene, name, None)
        parts.append(value.cpu().numpy().tobytes() if isinstance(value, torch.Tensor) else None)
    parts.append(repr(getattr(scene, "dynamic", None)))
    return tuple(parts)


def _render_key(scene, cameras: Cameras, times: torch.Tensor) -> tuple:
    return (
        id(scene),
        _scene_fingerprint(scene),
        cameras.height,
        cameras.width,
        cameras.K.cpu().numpy().tobytes(),
        cameras.c2w.cpu().numpy().tobytes(),
        times.cpu().numpy().tobytes(),
    )


def _render(scene, cameras: Cameras, frame_indices: torch.Tensor):
    """Depth, dynamic and sky masks of `scene` for `cameras` at times `frame_indices` (cached)."""
    times = frame_indices.detach().to("cpu", torch.float64)
    key = _render_key(scene, cameras, times)
    hit = _last.get("key") == key and _last.get("scene") is scene
    if not hit:
        r = scene.render(cameras.to("cpu"), times=times)
        _last.clear()
        _last.update(key=key, scene=scene, value=(r.depth, r.dynamic_mask, r.sky_mask))
    return _last["value"]


def _check_scene(scene) -> None:
    if scene is None or not callable(getattr(scene, "render", None)):
        raise ValueError(
            f"`scene` must be a mirage.synthetic.Scene (with .render), got {type(scene).__name__}"
        )


class GroundTruthDepth:
    """Exact z-depth of the synthetic world (+inf for sky); metric, so no scale alignment."""

    metric = True

    def __init__(self, scene):
        _check_scene(scene)
        self.scene = scene

    def __repr__(self) -> str:
        return f"GroundTruthDepth(scene={self.scene.kind}-{self.scene.seed})"

    def __call__(
        self, frames: torch.Tensor, cameras: Cameras, frame_indices: torch.Tensor
    ) -> torch.Tensor:  # [T,3,H,W], T cameras, [T] int64 -> depth [T,H,W]
        check_frames(frames, cameras, frame_indices)
        depth, _, _ = _render(self.scene, cameras, frame_indices)
        return depth.to(device=frames.device, dtype=torch.float32)


class GroundTruthMasks:
    """Exclude the pixels where the synthetic world shows a moving object and/or the sky."""

    def __init__(self, scene, dynamic: bool = True, sky: bool = True):
        _check_scene(scene)
        self.scene, self.dynamic, self.sky = scene, bool(dynamic), bool(sky)

    def __repr__(self) -> str:
        return (
            f"GroundTruthMasks(scene={self.scene.kind}-{self.scene.seed}, "
            f"dynamic={self.dynamic}, sky={self.sky})"
        )

    def __call__(
        self, frames: torch.Tensor, cameras: Cameras, frame_indices: torch.Tensor
    ) -> torch.Tensor:  # [T,3,H,W], T cameras, [T] int64 -> exclude [T,H,W] bool
        check_frames(frames, cameras, frame_indices)
        T, _, H, W = frames.shape
        if not (self.dynamic or self.sky):
            return torch.zeros(T, H, W, dtype=torch.bool, device=frames.device)
        _, dynamic, sky = _render(self.scene, cameras, frame_indices)
        exclude = torch.zeros(T, H, W, dtype=torch.bool)
        if self.dynamic:
            exclude |= dynamic
        if self.sky:
            exclude |= sky
        return exclude.to(frames.device)


class NoMasks:
    """Exclude nothing (every pixel with depth may enter the memory)."""

    def __repr__(self) -> str:
        return "NoMasks()"

    def __call__(
        self, frames: torch.Tensor, cameras: Cameras, frame_indices: torch.Tensor
    ) -> torch.Tensor:  # [T,3,H,W], T cameras, [T] int64 -> exclude [T,H,W] bool (all False)
        check_frames(frames, cameras, frame_indices)
        T, _, H, W = frames.shape
        return torch.zeros(T, H, W, dtype=torch.bool, device=frames.device)


class FileDepth:
    """Depth given with the input (an official `geometry.npz`): frame i gets `depths[i]`.

    # depths [N,H,W] z-depth (0 = none), metric as the file's poses are
    """

    metric = True

    def __init__(self, depths: torch.Tensor):
        self.depths = depths

    def __call__(self, frames, cameras, frame_indices):
        check_frames(frames, cameras, frame_indices)
        return _rows(self.depths, frame_indices, "depth").to(frames.device)


class FileMasks:
    """Exclusion from the input's `masks` (True = keep): frame i excludes `~keep[i]`."""

    def __init__(self, keep: torch.Tensor):
        self.keep = keep

    def __call__(self, frames, cameras, frame_indices):
        check_frames(frames, cameras, frame_indices)
        return ~_rows(self.keep, frame_indices, "masks").to(frames.device)


def _rows(values: torch.Tensor, frame_indices: torch.Tensor, what: str) -> torch.Tensor:
    idx = frame_indices.cpu().long()
    if idx.max() >= len(values):
        raise ValueError(
            f"the input file has {what} for {len(values)} frames, frame {int(idx.max())} asked"
        )
    return values[idx]
