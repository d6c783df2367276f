"""Text-prompted exclusion masks (SAM3 via transformers) and `load_mask_provider`.

`Sam3Masks` runs Meta's SAM3 detector (`Sam3Model`) on every frame for each text prompt
("person", "car", "sky", ...) and excludes the union of the instance masks it finds. The
vision features of a batch of frames are computed once and shared by all prompts. As for the
depth models, pre- and post-processing are done in torch on the device, mirroring
`Sam3Processor` / `Sam3ImageProcessor.post_process_instance_segmentation` (resize +
normalise; score = sigmoid(logit) x sigmoid(presence); bilinear mask resize; threshold), so
neither PIL nor torchvision is needed: text prompts never use torchvision's roi_align.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from mirage.geometry import Cameras
from mirage.perception.base import (
    MaskProvider,
    check_batch_size,
    check_frames,
    check_model_folder,
    frame_batches,
    image_processor_config,
    load_pretrained,
    model_type,
    normalize_pixels,
    resize_frames,
)
from mirage.perception.ground_truth import GroundTruthMasks, NoMasks

SAM3_TRANSFORMERS = "5.0"  # first transformers release with Sam3Model / Sam3Processor
_TOKENIZER_FILES = (("tokenizer.json", "vocab.json"),)
_SAM3_TYPES = ("sam3", "sam3_video")


def _import_sam3():
    """`transformers.Sam3Model`, or an ImportError naming the version that has it."""
    import transformers

    try:
        from transformers import Sam3Model
    except ImportError as err:
        raise ImportError(
            f"Sam3Masks needs transformers >= {SAM3_TRANSFORMERS} (Sam3Model, Sam3Processor); "
            f"installed: {transformers.__version__}. Upgrade transformers or use "
            f"`--masks gt|none`."
        ) from err
    return Sam3Model


class Sam3Masks:
    """Exclude what SAM3 finds for any of `prompts` (union of instance masks over prompts).

    Args:
        model_dir: local folder of facebook/sam3 (config.json with model_type "sam3" or
            "sam3_video", model.safetensors, processor_config.json or
            preprocessor_config.json, tokenizer files).
        prompts: short noun phrases, one detection pass each.
        threshold: keep instances with score (detection x presence probability) above this.
        mask_threshold: a pixel belongs to an instance when its mask probability exceeds this.
        device, dtype: where and in which precision the network runs.
        batch_size: frames per forward pass.
        strict: refuse a checkpoint that leaves weights of the model uninitialised (False: warn).
    """

    def __init__(
        self,
        model_dir,
        prompts=("person", "car", "sky"),
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        device="cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 4,
        strict: bool = True,
    ):
        if isinstance(prompts, str):
            prompts = (prompts,)
        prompts = tuple(prompts)
        if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise ValueError(f"`prompts` must be non-empty strings, got {prompts!r}")
        for name, value in (("threshold", threshold), ("mask_threshold", mask_threshold)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {value}")
        check_batch_size(batch_size)
        folder = check_model_folder(model_dir, "SAM3", extra=_TOKENIZER_FILES)
        if model_type(folder) not in _SAM3_TYPES:
            raise ValueError(
                f"`model_dir` {str(folder)!r} must hold a SAM3 model (config.json model_type "
                f"in {_SAM3_TYPES}), got {model_type(folder)!r}"
            )
        self.preprocessor = image_processor_config(folder)
        Sam3Model = _import_sam3()
        from transformers import AutoTokenizer

        self.model = load_pretrained(Sam3Model, folder, "SAM3", dtype, strict, device)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        text = tokenizer(
            list(prompts), padding="max_length", max_length=32, truncation=True, return_tensors="pt"
        )  # as Sam3Processor tokenises
        self.input_ids = text["input_ids"].to(device)  # [P,L]
        self.attention_mask = text["attention_mask"].to(device)  # [P,L]
        self.folder, self.device, self.dtype = folder, torch.device(device), dtype
        self.prompts, self.threshold, self.mask_threshold = prompts, threshold, mask_threshold
        self.batch_size = int(batch_size)

    def __repr__(self) -> str:
        return f"Sam3Masks({str(self.folder)!r}, prompts={self.prompts}, device={self.device})"

    def pixel_values(self, frames: torch.Tensor) -> torch.Tensor:
        """The model input for frames [T,3,H,W] in [0,1]: bilinear resize, then normalise."""
        size = self.preprocessor.get("size", {"height": 1008, "width": 1008})
        x = frames.to(self.device, torch.float32)
        if self.preprocessor.get("do_resize", True):
            x = resize_frames(x, (int(size["height"]), int(size["width"])), "bilinear", True)
        return normalize_pixels(x, self.preprocessor).to(self.dtype)

    def instance_masks(self, outputs, size: tuple[int, int]) -> torch.Tensor:
        """Union of the kept instances of one prompt -> [B,H,W] bool (post-processing)."""
        scores = outputs.pred_logits.float().sigmoid()  # [B,Q]
        if outputs.presence_logits is not None:
            scores = scores * outputs.presence_logits.float().sigmoid()  # [B,1] broadcast
        keep = scores > self.threshold  # [B,Q]
        union = torch.zeros(len(scores), *size, dtype=torch.bool, device=scores.device)
        for i in keep.any(1).nonzero()[:, 0].tolist():  # host sync: frames with a detection
            probs = outputs.pred_masks[i, keep[i]].float().sigmoid()  # [K,h,w]
            probs = F.interpolate(probs[None], size, mode="bilinear", align_corners=False)[0]
            union[i] = (probs > self.mask_threshold).any(0)
        return union

    @torch.inference_mode()
    def __call__(
        self, frames: torch.Tensor, cameras: Cameras, frame_indices: torch.Tensor
    ) -> torch.Tensor:  # [T,3,H,W], T cameras, [T] int64 -> exclude [T,H,W] bool
        check_frames(frames, cameras, frame_indices)
        T, _, H, W = frames.shape
        out = torch.zeros(T, H, W, dtype=torch.bool, device=frames.device)
        for b in frame_batches(T, self.batch_size):
            vision = self.model.get_vision_features(pixel_values=self.pixel_values(frames[b]))
            B = b.stop - b.start
            for p in range(len(self.prompts)):
                outputs = self.model(
                    vision_embeds=vision,
                    input_ids=self.input_ids[p : p + 1].expand(B, -1),
                    attention_mask=self.attention_mask[p : p + 1].expand(B, -1),
                )
                out[b] |= self.instance_masks(outputs, (H, W)).to(frames.device)
        return out


def load_mask_provider(
    spec,
    scene=None,
    prompts=("person", "car", "sky"),
    device="cpu",
    threshold: float = 0.5,
    dtype: torch.dtype = torch.float32,
) -> MaskProvider:
    """A mask provider from a spec: "none", "gt" (the synthetic `scene`'s dynamic + sky
    pixels) or a local SAM3 folder (text prompts `prompts`)."""
    if isinstance(spec, str) and spec == "none":
        return NoMasks()
    if isinstance(spec, str) and spec == "gt":
        if scene is None:
            raise ValueError('`spec` "gt" needs a synthetic `scene` (mirage.synthetic.Scene)')
        return GroundTruthMasks(scene)
    if not isinstance(spec, (str, Path)):
        raise ValueError(
            f'`spec` must be "none", "gt" or a SAM3 model folder, got {type(spec).__name__}'
        )
    return Sam3Masks(spec, prompts=prompts, threshold=threshold, device=device, dtype=dtype)
