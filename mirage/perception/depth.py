"""Estimated depth (DepthAnything V2, DepthPro via transformers) and `load_depth_provider`.

Both load from a local folder only (`from_pretrained(folder, local_files_only=True)`) and run
batched on `device`. Pre-processing is done in torch on the device from the folder's
`preprocessor_config.json` (the same resize and normalisation as the transformers image
processors; a test checks it against `AutoImageProcessor`), so frames never go through PIL
and torchvision is not needed. transformers is imported inside the constructors.

- `DepthAnythingV2Depth`: relative checkpoints predict affine-invariant inverse depth
  (disparity); we return 1 / disparity, i.e. depth up to an unknown scale and, because the
  disparity also has an unknown shift, only approximately so (`metric = False`: the pipeline
  aligns the scale to the memory). Metric checkpoints (`depth_estimation_type == "metric"`)
  predict depth in metres (`metric = True`).
- `DepthProDepth`: metric depth. DepthPro predicts canonical inverse depth; metric inverse
  depth is that times W / f_x. We take f_x from the cameras (known intrinsics beat an
  estimate); with `use_camera_focal=False` the model's field-of-view head is used.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from mirage.geometry import Cameras
from mirage.perception.base import (
    DepthProvider,
    check_batch_size,
    check_frames,
    check_model_folder,
    frame_batches,
    image_processor_config,
    load_pretrained,
    model_type,
    normalize_pixels,
    read_json,
    require_model_type,
    resize_frames,
)
from mirage.perception.depth_anything3 import DepthAnything3Depth, is_da3_folder
from mirage.perception.ground_truth import GroundTruthDepth

_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL resampling ids -> torch modes
_MAX_INV_DEPTH, _MIN_INV_DEPTH = 1e4, 1e-4  # DepthPro's clamp (transformers post-processing)


def _constrain_to_multiple(value: float, multiple: int) -> int:
    """Round to the nearest multiple (as the DPT image processor does)."""
    return max(int(round(value / multiple) * multiple), multiple)


def dpt_input_size(height: int, width: int, preprocessor: dict) -> tuple[int, int]:
    """The model input size the DPT image processor would resize an H x W image to."""
    size = preprocessor.get("size", {"height": 518, "width": 518})
    out_h, out_w = int(size["height"]), int(size["width"])
    multiple = int(preprocessor.get("ensure_multiple_of", 1))
    scale_h, scale_w = out_h / height, out_w / width
    if preprocessor.get("keep_aspect_ratio", False):  # scale as little as possible
        if abs(1 - scale_w) < abs(1 - scale_h):
            scale_h = scale_w
        else:
            scale_w = scale_h
    return (
        _constrain_to_multiple(scale_h * height, multiple),
        _constrain_to_multiple(scale_w * width, multiple),
    )


class DepthAnythingV2Depth:
    """DepthAnything (V1/V2, relative or metric) from a local transformers folder.

    Args:
        model_dir: folder with config.json (`model_type` "depth_anything"), model.safetensors
            and preprocessor_config.json, e.g. depth-anything/Depth-Anything-V2-Small-hf.
        device, dtype: where and in which precision the network runs (output is float32).
        batch_size: frames per forward pass.
        sky_ratio: (relative models) disparity below `sky_ratio` x the frame's largest
            disparity counts as "no depth" (+inf: sky, or too far to place).
        strict: refuse a checkpoint that leaves weights of the model uninitialised (False: warn).
    """

    def __init__(
        self,
        model_dir,
        device="cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 8,
        sky_ratio: float = 1e-3,
        strict: bool = True,
    ):
        folder = check_model_folder(model_dir, "DepthAnything")
        require_model_type(folder, "depth_anything", "DepthAnything")
        check_batch_size(batch_size)
        if not 0.0 <= sky_ratio < 1.0:
            raise ValueError(f"`sky_ratio` must be in [0, 1), got {sky_ratio}")
        self.preprocessor = image_processor_config(folder)
        from transformers import AutoModelForDepthEstimation

        self.model = load_pretrained(
            AutoModelForDepthEstimation, folder, "DepthAnything", dtype, strict, device
        )
        self.folder, self.device, self.dtype = folder, torch.device(device), dtype
        self.batch_size, self.sky_ratio = int(batch_size), float(sky_ratio)
        self.metric = self.model.config.depth_estimation_type == "metric"

    def __repr__(self) -> str:
        kind = "metric" if self.metric else "relative"
        return f"DepthAnythingV2Depth({str(self.folder)!r}, {kind}, device={self.device})"

    def pixel_values(self, frames: torch.Tensor) -> torch.Tensor:
        """The model input for frames [T,3,H,W] in [0,1] -> [T,3,h',w'] (resize, normalise)."""
        size = dpt_input_size(frames.shape[-2], frames.shape[-1], self.preprocessor)
        x = frames.to(self.device, torch.float32)
        if self.preprocessor.get("do_resize", True):
            mode = _RESAMPLE.get(int(self.preprocessor.get("resample", 3)), "bicubic")
            x = resize_frames(x, size, mode, antialias=True).clamp(0.0, 1.0)  # PIL clips to [0,1]
        return normalize_pixels(x, self.preprocessor).to(self.dtype)

    @torch.inference_mode()
    def __call__(
        self, frames: torch.Tensor, cameras: Cameras, frame_indices: torch.Tensor
    ) -> torch.Tensor:  # [T,3,H,W], T cameras, [T] int64 -> depth [T,H,W]
        check_frames(frames, cameras, frame_indices)
        T, _, H, W = frames.shape
        out = torch.empty(T, H, W, dtype=torch.float32, device=frames.device)
        for b in frame_batches(T, self.batch_size):
            pred = self.model(pixel_values=self.pixel_values(frames[b])).predicted_depth
            pred = resize_frames(pred[:, None].float(), (H, W), "bilinear", antialias=False)[:, 0]
            pred = pred.clamp(min=0.0)
            if self.metric:  # metres; 0 where the head predicts nothing
                depth = pred
            else:  # disparity -> depth; tiny disparity (sky, far away) -> no depth
                floor = self.sky_ratio * pred.flatten(1).amax(1).clamp(min=1e-12)  # [B]
                far = pred <= floor[:, None, None]
                depth = torch.where(far, torch.inf, 1.0 / pred.clamp(min=1e-12))
            out[b] = depth.to(frames.device)
        return out


class DepthProDepth:
    """Apple DepthPro (metric) from a local transformers folder (apple/DepthPro-hf).

    Args:
        model_dir: folder with config.json (`model_type` "depth_pro"), model.safetensors and
            preprocessor_config.json.
        device, dtype: where and in which precision the network runs (output is float32).
        batch_size: frames per forward pass (one 1536 x 1536 input is heavy: keep it small).
        use_camera_focal: scale by the cameras' f_x (True) or by the focal length the model's
            field-of-view head estimates (False; needs a checkpoint with `use_fov_model`;
            the estimate is clamped to [1, 179] degrees).
        strict: refuse a checkpoint that leaves weights of the model uninitialised (False: warn).
    """

    metric = True

    def __init__(
        self,
        model_dir,
        device="cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 1,
        use_camera_focal: bool = True,
        strict: bool = True,
    ):
        folder = check_model_folder(model_dir, "DepthPro")
        require_model_type(folder, "depth_pro", "DepthPro")
        check_batch_size(batch_size)
        config = read_json(folder / "config.json")
        if not use_camera_focal and not config.get("use_fov_model", False):
            raise ValueError(
                f"`use_camera_focal=False` needs a DepthPro with a field-of-view head, but "
                f"{str(folder)!r} has use_fov_model=false"
            )
        self.preprocessor = image_processor_config(folder)
        from transformers import DepthProForDepthEstimation

        self.model = load_pretrained(
            DepthProForDepthEstimation, folder, "DepthPro", dtype, strict, device,
            use_fov_model=not use_camera_focal,
        )  # fmt: skip
        self.folder, self.device, self.dtype = folder, torch.device(device), dtype
        self.batch_size, self.use_camera_focal = int(batch_size), bool(use_camera_focal)

    def __repr__(self) -> str:
        return f"DepthProDepth({str(self.folder)!r}, device={self.device})"

    def pixel_values(self, frames: torch.Tensor) -> torch.Tensor:
        """The model input for frames [T,3,H,W] in [0,1]: normalise, then resize (bilinear)."""
        size = self.preprocessor.get("size", {"height": 1536, "width": 1536})
        x = normalize_pixels(frames.to(self.device, torch.float32), self.preprocessor)
        if self.preprocessor.get("do_resize", True):
            mode = _RESAMPLE.get(int(self.preprocessor.get("resample", 2)), "bilinear")
            x = resize_frames(x, (int(size["height"]), int(size["width"])), mode, antialias=False)
        return x.to(self.dtype)

    @torch.inference_mode()
    def __call__(
        self, frames: torch.Tensor, cameras: Cameras, frame_indices: torch.Tensor
    ) -> torch.Tensor:  # [T,3,H,W], T cameras, [T] int64 -> depth [T,H,W]
        check_frames(frames, cameras, frame_indices)
        T, _, H, W = frames.shape
        fx_all = cameras.K[:, 0, 0].to(self.device, torch.float32)  # [T] pixels of the W-wide frame
        out = torch.empty(T, H, W, dtype=torch.float32, device=frames.device)
        for b in frame_batches(T, self.batch_size):
            outputs = self.model(pixel_values=self.pixel_values(frames[b]))
            inv = outputs.predicted_depth[:, None].float()  # [B,1,h',w'] canonical inverse depth
            if self.use_camera_focal:
                fx = fx_all[b]
            else:  # focal length from the estimated horizontal field of view (degrees)
                fov = outputs.field_of_view.float().reshape(-1).clamp(1.0, 179.0)  # degrees
                fx = 0.5 * W / torch.tan(0.5 * fov * (math.pi / 180.0))
            inv = inv * (W / fx)[:, None, None, None]  # metric inverse depth
            inv = resize_frames(inv, (H, W), "bilinear", antialias=False)[:, 0]
            far = inv <= _MIN_INV_DEPTH  # beyond DepthPro's 10 km cap: sky, no depth
            depth = 1.0 / inv.clamp(_MIN_INV_DEPTH, _MAX_INV_DEPTH)
            out[b] = torch.where(far, torch.inf, depth).to(frames.device)
        return out


_DEPTH_MODELS = {"depth_anything": DepthAnythingV2Depth, "depth_pro": DepthProDepth}


def load_depth_provider(
    spec, scene=None, device="cpu", dtype: torch.dtype = torch.float32
) -> DepthProvider:
    """A depth provider from a spec: "gt" (the synthetic `scene`'s exact depth) or a folder.

    The folder's config.json `model_type` picks the class: "depth_anything" ->
    `DepthAnythingV2Depth`, "depth_pro" -> `DepthProDepth`; a Depth Anything 3 folder (no
    `model_type`, a `model_name` such as "da3-large") -> `DepthAnything3Depth`.
    """
    if isinstance(spec, str) and spec == "gt":
        if scene is None:
            raise ValueError('`spec` "gt" needs a synthetic `scene` (mirage.synthetic.Scene)')
        return GroundTruthDepth(scene)
    if not isinstance(spec, (str, Path)):
        raise ValueError(f'`spec` must be "gt" or a model folder, got {type(spec).__name__}')
    if is_da3_folder(spec):
        return DepthAnything3Depth(spec, device=device, dtype=dtype)
    folder = check_model_folder(spec, "depth")
    kind = model_type(folder)
    if kind not in _DEPTH_MODELS:
        raise ValueError(
            f"depth model folder {str(folder)!r} has config.json model_type {kind!r}; "
            f"expected one of {sorted(_DEPTH_MODELS)}"
        )
    return _DEPTH_MODELS[kind](folder, device=device, dtype=dtype)
