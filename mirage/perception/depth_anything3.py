"""Depth Anything 3 (the paper's default depth) as a `DepthProvider`, via `depth-anything-3`.

The package (`pip install "mirage-world[da3]"`, imported inside the constructor) is
multi-view: the frames of one `inference` call see each other, so a call sends up to
`batch_size` frames at once. What we hand it and what we take back:

- Images: uint8 H x W x 3 (our [0, 1] frames, rounded). The package resizes them so the
  longest side is `process_res`, each side then rounded to a multiple of 14, and returns
  depth at *that* size; we resize it bilinearly to the frames' H x W (z-depth is unchanged
  by resizing an image, only the pixel grid moves).
- Cameras: the package takes world-to-camera OpenCV poses (it inverts them to c2w for its
  camera encoder) and intrinsics in pixels of the input image (it scales row 0 of K by the
  width ratio and row 1 by the height ratio, which is exact in our continuous pixel
  convention). Only any-view checkpoints (da3-small/base/large/giant) have a camera encoder.
  Given poses, the package also fits a Sim(3) from its predicted poses to ours and divides
  the depth by that scale, so the depth comes back in the units of our cameras. That fit
  needs at least 3 cameras whose centres do not lie on one line (it raises otherwise), so a
  batch with fewer or collinear centres (a single frame, a static or straight dolly) runs
  without poses, as does every batch of a metric or monocular checkpoint.

Metric vs up to scale (`metric`), by the folder's `model_name`:

- `da3-*` (any-view) and `da3mono-*`: `metric = False`. Without poses the scale is the
  model's own; with poses it follows our cameras, which are not metres in general. The loop
  aligns either to the memory per frame.
- `da3metric-*`: `metric = True`. The network predicts a canonical depth; metres are that
  times the mean focal length (fx, fy in pixels of the processed image) / 300, the
  conversion the package's authors give for this checkpoint (the package does not apply it
  itself). We use the cameras' intrinsics for the focal length.
- `da3nested-*`: `metric = True`: the package scales the any-view depth to metres with its
  metric branch and reports `is_metric` = 1. We give it no poses: with poses the package
  would rescale the depth to our cameras' units, which are not metres in general.

`Prediction.is_metric` is 1 only for nested checkpoints; for the others the package leaves
it unset (an empty, falsy value), including da3metric, whose raw output still needs the
focal-length conversion. Where a checkpoint has a sky head (metric and monocular ones), its
sky pixels are returned as +inf; any-view and nested checkpoints give the sky a finite far
depth (use a sky mask provider to keep it out of the memory).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from mirage.geometry import Cameras
from mirage.perception.base import (
    check_batch_size,
    check_frames,
    check_model_folder,
    frame_batches,
    read_json,
)

INSTALL_HINT = 'pip install "mirage-world[da3]"'
_KINDS = {"da3-": "anyview", "da3mono-": "mono", "da3metric-": "metric", "da3nested-": "nested"}
_METRIC_FOCAL = 300.0  # da3metric: metres = canonical depth * focal (pixels) / 300
_COLLINEAR_TOLERANCE = 1e-3  # 2nd / 1st singular value of the centred camera centres
_MIN_RES = 14  # the package rounds each processed side to a multiple of its 14-pixel patch


def model_kind(model_name: str) -> str:
    """The kind of a DA3 `model_name` ("da3-large", ...): anyview, mono, metric or nested."""
    for prefix in _KINDS:
        if isinstance(model_name, str) and model_name.startswith(prefix):
            return _KINDS[prefix]
    raise ValueError(
        f"config.json `model_name` must name a Depth Anything 3 model (da3-small, da3-base, "
        f"da3-large, da3-giant, da3mono-large, da3metric-large, da3nested-giant-large), "
        f"got {model_name!r}"
    )


def is_da3_folder(path) -> bool:
    """True when `path` has a config.json with a DA3 `model_name` and no transformers
    `model_type` (the hub mixin of `depth-anything-3` stores only the constructor's kwargs)."""
    config = os.path.join(os.path.expanduser(str(path)), "config.json")
    if not os.path.isfile(config):
        return False
    data = read_json(config)
    name = data.get("model_name")
    return "model_type" not in data and isinstance(name, str) and name.startswith("da3")


def poses_usable(c2w: torch.Tensor) -> bool:  # [B,4,4]
    """Whether the package's Sim(3) fit to these poses is defined: >= 3 camera centres that
    do not lie on one line (nor on one point)."""
    if len(c2w) < 3:
        return False
    centres = c2w[:, :3, 3].double()
    s = torch.linalg.svdvals(centres - centres.mean(0))  # [3], descending
    return bool(s[0] > 0 and s[1] > _COLLINEAR_TOLERANCE * s[0])


def _import_api():
    try:
        from depth_anything_3.api import DepthAnything3
    except ImportError as e:
        raise ImportError(
            f"DepthAnything3Depth needs the `depth-anything-3` package ({e}); install it with "
            f"`{INSTALL_HINT}` (kept out of the `all` extra: it pins numpy<2 and pulls "
            f"xformers and open3d)"
        ) from e
    try:  # the package prints an INFO line per step of every call unless told otherwise
        from depth_anything_3.utils.logger import LOG_LEVELS, logger

        if "DA3_LOG_LEVEL" not in os.environ:
            logger.level = LOG_LEVELS["WARN"]
    except (ImportError, AttributeError, KeyError):
        pass
    return DepthAnything3


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:  # [B,h,w] -> [B,*size]
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


class DepthAnything3Depth:
    """Depth Anything 3 from a local folder (`hf download depth-anything/DA3-LARGE ...`).

    Args:
        model_dir: folder with config.json (`model_name`, e.g. "da3-large") and
            model.safetensors, as `DepthAnything3.save_pretrained` writes them.
        device: where the network runs (its forward picks its own autocast precision).
        dtype: must be float32 (weights stay float32; the package's forward autocasts the
            backbone to bfloat16 where CUDA supports it, else float16); kept for the
            `load_depth_provider` signature.
        batch_size: frames per `inference` call; the frames of one call are seen together
            (multi-view), so results depend on how frames are grouped.
        process_res: longest side of the processed image (the package's default 504).
        use_poses: hand the cameras' poses and intrinsics to any-view checkpoints when a
            batch's camera centres allow it (see the module docstring).
        sky: return the sky head's pixels (probability >= 0.5) as +inf, where there is one.
        strict: refuse a checkpoint whose weights do not all match the model (False: the
            package's default, which leaves unmatched layers random).
    """

    def __init__(
        self,
        model_dir,
        device="cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 8,
        process_res: int = 504,
        use_poses: bool = True,
        sky: bool = True,
        strict: bool = True,
    ):
        folder = check_model_folder(
            model_dir, "Depth Anything 3", required=("config.json", "model.safetensors")
        )
        name = read_json(folder / "config.json").get("model_name")
        self.kind = model_kind(name)
        check_batch_size(batch_size)
        if dtype != torch.float32:
            raise ValueError(
                f"`dtype` must be torch.float32 for Depth Anything 3 (the package autocasts "
                f"its forward itself), got {dtype}"
            )
        if int(process_res) != process_res or process_res < _MIN_RES:
            raise ValueError(f"`process_res` must be an integer >= {_MIN_RES}, got {process_res!r}")
        DepthAnything3 = _import_api()
        model = DepthAnything3.from_pretrained(str(folder), local_files_only=True, strict=strict)
        self.model = model.to(device).eval().requires_grad_(False)
        self.folder, self.model_name, self.device = folder, name, torch.device(device)
        self.batch_size, self.process_res = int(batch_size), int(process_res)
        self.use_poses, self.sky = bool(use_poses), bool(sky)
        self.metric = self.kind in ("metric", "nested")

    def __repr__(self) -> str:
        kind = "metric" if self.metric else "up to scale"
        return f"DepthAnything3Depth({str(self.folder)!r}, {self.model_name}, {kind})"

    def _infer(self, images: np.ndarray, cameras: Cameras):  # [B,H,W,3] uint8, B cameras
        """One `inference` call -> (z-depth [B,h',w'], sky [B,h',w'] float or None) at the
        processed size h' x w'."""
        kwargs = {}
        if self.use_poses and self.kind == "anyview" and poses_usable(cameras.c2w):
            kwargs = {
                "extrinsics": cameras.w2c.cpu().numpy(),  # [B,4,4] world -> camera, OpenCV
                "intrinsics": cameras.K.cpu().numpy(),  # [B,3,3] pixels of the H x W frames
            }
        pred = self.model.inference(image=list(images), process_res=self.process_res, **kwargs)
        depth = torch.from_numpy(np.asarray(pred.depth, dtype=np.float32))  # [B,h',w']
        if self.kind == "metric":  # canonical -> metres with the focal length at h' x w'
            h, w = depth.shape[-2:]
            K = cameras.K.cpu()
            focal = 0.5 * (K[:, 0, 0] * (w / cameras.width) + K[:, 1, 1] * (h / cameras.height))
            depth = depth * (focal / _METRIC_FOCAL)[:, None, None]
        sky = getattr(pred, "sky", None)
        if self.sky and sky is not None:
            sky = torch.from_numpy(np.asarray(sky, dtype=np.float32))  # [B,h',w'] 1 = sky
        else:
            sky = None
        return depth, sky

    @torch.inference_mode()
    def __call__(
        self, frames: torch.Tensor, cameras: Cameras, frame_indices: torch.Tensor
    ) -> torch.Tensor:  # [T,3,H,W], T cameras, [T] int64 -> depth [T,H,W]
        check_frames(frames, cameras, frame_indices)
        T, _, H, W = frames.shape
        # host sync: the package takes uint8 numpy images
        images = (frames.detach().clamp(0, 1) * 255).round().to(torch.uint8)
        images = images.permute(0, 2, 3, 1).cpu().numpy()  # [T,H,W,3]
        out = torch.empty(T, H, W, dtype=torch.float32, device=frames.device)
        for b in frame_batches(T, self.batch_size):
            depth, sky = self._infer(images[b], cameras[b])
            # 1. pixels without a usable estimate (non-finite, <= 0) -> 0, and so is any
            #    output pixel whose bilinear footprint touches one
            valid = torch.isfinite(depth) & (depth > 0)
            depth = _resize(torch.where(valid, depth, 0.0), (H, W))
            depth = torch.where(_resize(valid.float(), (H, W)) > 1 - 1e-4, depth, 0.0)
            # 2. sky -> +inf (no depth)
            if sky is not None:
                depth = torch.where(_resize(sky, (H, W)) >= 0.5, torch.inf, depth)
            out[b] = depth.to(frames.device)
        return out
