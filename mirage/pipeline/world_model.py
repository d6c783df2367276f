"""MiragePipeline: chunk-by-chunk camera-controlled video generation with a spatial memory.

Per chunk, every step of the loop is visible in `generate`:
read memory -> denoise -> decode -> depth -> encode -> masks -> insert.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from mirage.geometry import Cameras
from mirage.memory import LatentSpatialMemory, RGBPointCache
from mirage.pipeline.chunks import plan_chunks
from mirage.pipeline.conditioning import Memory, read_memory, side_condition
from mirage.pipeline.config import GenerationConfig
from mirage.pipeline.sampling import sample_chunk

STAGES = ("read", "denoise", "decode", "depth", "encode", "masks", "insert")


@dataclass
class GenerationResult:
    frames: torch.Tensor  # [N,3,H,W] in [0,1]; frame 0 is the input image
    latents: list[torch.Tensor]  # per chunk [k+1,C,h,w]: first-frame slot + generated targets
    memory: Memory  # the final memory (None for memory="none")
    timings: list[dict]  # per chunk: seconds per stage, cache points and bytes after it
    metadata: dict = field(default_factory=dict)


class MiragePipeline:
    """The world model: a MirageTransformer, a VideoVAE, a flow scheduler and perception.

    Args:
        transformer: `mirage.models.transformer.MirageTransformer` (side branch loaded).
        vae: `mirage.models.vae.VideoVAE`.
        scheduler: a diffusers flow-matching scheduler (`make_scheduler(shift)`).
        depth: a `mirage.perception.DepthProvider` (metric or up to scale).
        masks: a `mirage.perception.MaskProvider` (dynamic objects, sky), or None.
        text_encoder, tokenizer: UMT5 for prompts, or None (then pass `prompt_embeds` or get the
            zero null embedding).
    """

    def __init__(
        self, transformer, vae, scheduler, depth, masks=None, text_encoder=None, tokenizer=None
    ):
        self.transformer = transformer
        self.vae = vae
        self.scheduler = scheduler
        self.depth = depth
        self.masks = masks
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    # --- checks and text ------------------------------------------------------------------

    def _check_inputs(self, image, cameras, prompt_embeds, cfg):
        if not isinstance(cameras, Cameras):
            raise ValueError(
                f"`cameras` must be mirage.geometry.Cameras, got {type(cameras).__name__}"
            )
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"`image` must have shape [3,H,W], got {tuple(image.shape)}")
        H, W = image.shape[1:]
        if (cameras.height, cameras.width) != (H, W):
            raise ValueError(
                f"`cameras` belong to {cameras.height}x{cameras.width} images, `image` is {H}x{W}"
            )
        if not torch.isfinite(image).all() or image.min() < 0 or image.max() > 1:
            raise ValueError("`image` must be finite with values in [0, 1]")
        self.vae.check_image_size(H, W)
        plan = plan_chunks(len(cameras), cfg.chunk_frames)
        text_dim = self.transformer.config.text_dim
        if prompt_embeds is not None and (
            prompt_embeds.ndim != 3 or prompt_embeds.shape[-1] != text_dim
        ):
            raise ValueError(
                f"`prompt_embeds` must be [1,L,{text_dim}] for this transformer, "
                f"got {tuple(prompt_embeds.shape)}"
            )
        return plan

    def _text(self, prompt: str | None, prompt_embeds: torch.Tensor | None) -> torch.Tensor:
        """[1,L,D] prompt embedding: given, encoded by UMT5, or the zero null embedding."""
        if prompt_embeds is not None:
            return prompt_embeds.to(self.device)
        from mirage.models.text import encode_prompts, null_embedding

        if prompt and self.text_encoder is not None:
            return encode_prompts(self.text_encoder, self.tokenizer, [prompt]).to(self.device)
        # Zero text: every token is the same vector, so cross-attention does not depend on the
        # length; one token is enough.
        return null_embedding(self.transformer.config.text_dim, 1, device=self.device)

    def _new_memory(self, cfg: GenerationConfig) -> Memory:
        if cfg.memory == "latent":
            return LatentSpatialMemory(
                self.vae.z_dim,
                voxel_size=cfg.voxel_size,
                dtype=getattr(torch, cfg.memory_dtype),
                device=self.device,
            )
        if cfg.memory == "rgb":
            return RGBPointCache(encode=self.vae.encode_images, device=self.device)
        return None

    # --- the loop -------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        image: torch.Tensor,  # [3,H,W] in [0,1], the first frame
        cameras: Cameras,  # N cameras of H x W images, N = 1 + n (chunk_frames - 1)
        prompt: str | None = None,
        prompt_embeds: torch.Tensor | None = None,  # [1,L,D], instead of `prompt`
        config: GenerationConfig | None = None,
        progress: bool = True,
    ) -> GenerationResult:
        cfg = config or GenerationConfig()
        plan = self._check_inputs(image, cameras, prompt_embeds, cfg)  # all checks before work
        dev = self.device
        image, cameras = image.to(dev, torch.float32), cameras.to(dev)
        s = self.vae.spatial_factor
        latent_hw = (image.shape[1] // s, image.shape[2] // s)
        text = self._text(prompt, prompt_embeds)
        null_text = torch.zeros_like(text) if cfg.guidance_scale > 1 else None
        gen = torch.Generator().manual_seed(cfg.seed)  # CPU noise: same on every device
        memory = self._new_memory(cfg)

        # Init: the first frame seeds the memory.
        first = self.vae.encode_images(image[None])  # [1,C,h,w]
        init_times: dict = {}
        self._update(memory, image[None], first, cameras[0], [0], init_times, latent_hw)
        frames, chunk_latents, timings = [image[None].cpu()], [], []
        context = first[:0]  # no preceding latents before the first chunk

        for chunk in tqdm(plan, desc="chunks", disable=not progress):
            times = dict.fromkeys(STAGES, 0.0)
            slots = chunk.latent_frames  # video frame of each latent slot (slot 0 = given frame)
            # 1. read the memory for the chunk's latent-frame cameras
            with _timed(times, "read", dev):
                readout = read_memory(memory, cameras[slots], self.vae.z_dim, latent_hw)
                cond = side_condition(readout, len(context))
            # 2. denoise the target slots; context and first frame are clean (t = 0)
            noise = torch.randn(len(slots) - 1, *first.shape[1:], generator=gen).to(dev)
            with _timed(times, "denoise", dev):
                targets = sample_chunk(
                    self.transformer, self.scheduler, torch.cat([context, first]), noise, text,
                    cond, cfg.num_inference_steps, cfg.guidance_scale, null_text,
                    cfg.side_scale, progress,
                )  # fmt: skip
            # 3. decode the chunk (slot 0 decodes to the given first frame)
            with _timed(times, "decode", dev):
                video = self.vae.decode(torch.cat([first, targets]))  # [4k+1,3,H,W]
            frames.append(video[1:].cpu())
            chunk_latents.append(torch.cat([first, targets]).cpu())
            # 4-7. depth, re-encode, masks and insert for the new latent-aligned frames
            aligned = video[4::4]  # frames start + 4m, m >= 1
            new_latents = self._update(
                memory, aligned, None, cameras[slots[1:]], slots[1:], times, latent_hw
            )
            first = new_latents[-1:]  # the chunk's last frame, clean, opens the next chunk
            context = (
                targets[len(targets) - cfg.context_latents :] if cfg.context_latents else first[:0]
            )
            times.update(_memory_size(memory))
            timings.append(times)

        metadata = {
            "config": asdict(cfg),
            "num_frames": len(cameras),
            "size": [cameras.height, cameras.width],
            "latent_hw": list(latent_hw),
            "chunks": [
                {"start": c.start, "frames": c.num_frames, "latent_frames": c.latent_frames}
                for c in plan
            ],
            "init_seconds": init_times,
            "cameras": {"K": cameras.K.cpu().tolist(), "c2w": cameras.c2w.cpu().tolist()},
        }
        return GenerationResult(torch.cat(frames), chunk_latents, memory, timings, metadata)

    def _update(self, memory, frames, latents, cameras, indices, times, latent_hw):
        """Depth, clean latents and exclusion masks of `frames`, inserted into `memory`.

        Returns the clean image latents of `frames` [T,C,h,w] (encoded here unless given).
        """
        dev = self.device
        idx = torch.tensor(indices, device=dev)
        if latents is None:
            # Every memory mode encodes the same frames (the VAE is not batch-invariant to the
            # last bit), so modes differ only through the side-branch input.
            with _timed(times, "encode", dev):
                latents = self.vae.encode_images(frames)
        if memory is None:
            return latents
        with _timed(times, "depth", dev):
            depth = self.depth(frames, cameras, idx)
            if not getattr(self.depth, "metric", True) and memory.num_points:
                depth = self._align_scale(memory, depth, cameras, latent_hw)
        with _timed(times, "masks", dev):
            exclude = self.masks(frames, cameras, idx) if self.masks is not None else None
        with _timed(times, "insert", dev):
            if isinstance(memory, RGBPointCache):
                memory.insert(frames, depth, cameras, exclude)
            else:
                memory.insert(latents, depth, cameras, exclude)
        return latents

    @staticmethod
    def _align_scale(memory, depth, cameras, latent_hw):
        """Scale up-to-scale depth to the depth the memory renders at the same cameras."""
        from mirage.perception.align import align_depth_scale

        reference, mask = memory.read_depth(cameras, latent_hw)
        return align_depth_scale(depth, reference, mask)[0]


def _memory_size(memory: Memory) -> dict:
    if memory is None:
        return {"cache_points": 0, "cache_bytes": 0}
    return {"cache_points": memory.num_points, "cache_bytes": memory.nbytes}


@contextmanager
def _timed(times: dict, stage: str, device: torch.device):
    """Add the wall time of the block to times[stage], synchronising CUDA around it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times[stage] = times.get(stage, 0.0) + time.perf_counter() - t0
