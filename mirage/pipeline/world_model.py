"""MiragePipeline: chunk-by-chunk camera-controlled video generation with a spatial memory.

Per chunk, every step of the loop is visible in `next_chunk` (`generate` calls it once per
chunk of its plan), in the order of `STAGES`:
read memory -> denoise -> decode -> encode -> masks -> depth (estimate, align) -> insert.
The first frame goes through the last four before the first chunk.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

import torch
from tqdm.auto import tqdm

from mirage.geometry import Cameras
from mirage.memory import Readout, make_memory
from mirage.memory.latent import DEFAULT_FUSION
from mirage.pipeline.chunks import num_context, plan_chunks
from mirage.pipeline.conditioning import observation
from mirage.pipeline.config import SAMPLING_OFF, GenerationConfig
from mirage.pipeline.offload import Offload
from mirage.pipeline.profiles import ChunkConditioner
from mirage.pipeline.sampling import sample_chunk

STAGES = ("read", "denoise", "decode", "encode", "masks", "depth", "insert")
WRITE_STAGES = STAGES[3:]  # what the first frame goes through


@dataclass
class GenerationResult:
    frames: torch.Tensor  # [N,3,H,W] in [0,1]; frame 0 is the input image
    latents: list[torch.Tensor]  # per chunk [k+1,C,h,w]: first-frame slot + generated targets
    memory: object  # the final SpatialMemory (NoMemory for memory="none")
    timings: list[dict]  # per chunk: seconds per stage, cache points and bytes after it
    metadata: dict = field(default_factory=dict)
    readouts: list = field(default_factory=list)  # per chunk: the Readout of its slots (CPU)


class MiragePipeline:
    """The world model: a MirageTransformer, a VideoVAE, a flow scheduler and perception.

    Args:
        transformer: `mirage.models.transformer.MirageTransformer` (side branch loaded).
        vae: `mirage.models.vae.VideoVAE`.
        scheduler: a diffusers flow-matching scheduler (`make_scheduler(shift)`); each call
            samples with a copy set to the config's `shift`.
        depth: a `mirage.perception.DepthProvider` (metric or up to scale).
        masks: a `mirage.perception.MaskProvider` (dynamic objects, sky), or None.
        text_encoder, tokenizer: UMT5 for prompts, or None (then pass `prompt_embeds` or get the
            zero null embedding).
        device: the execution device (default: the transformer's).
        offload: keep the models on the CPU and move each to `device` only while it runs.
        files: the model, side-branch and LoRA files it was built from (`build_pipeline`);
            `files["branch"]` is the side branch loaded in `transformer`.
        branches: side-branch files for particular memory kinds, swapped in when a generation
            uses that kind (`{"rgb": "side_branch_rgb.safetensors"}`: a branch trained on RGB
            cache readouts); every other kind uses `files["branch"]`.
        defaults: what the model folder's `mirage.json` "generation" says; a config's "auto"
            `sky_distance`, `fusion`, `memory_guidance` and `readout_copy` take their values
            from here (`resolve`).
    """

    def __init__(
        self, transformer, vae, scheduler, depth, masks=None, text_encoder=None, tokenizer=None,
        device: str | torch.device | None = None, offload: bool = False,
        files: dict | None = None, branches: dict | None = None, defaults: dict | None = None,
    ):  # fmt: skip
        self.transformer = transformer
        self.vae = vae
        self.scheduler = scheduler
        self.depth = depth
        self.masks = masks
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.device = torch.device(device) if device is not None else transformer.device
        self.offload = Offload(self.device, offload)
        self.files = dict(files or {})  # the files it was built from (recorded in metadata)
        self.branches = {k: str(v) for k, v in (branches or {}).items()}
        self._loaded_branch = self.files.get("branch")  # the side branch in `transformer` now
        self.defaults = dict(defaults or {})  # the model folder's generation settings

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
        if cfg.memory == "latent" and self.vae.spatial_factor % cfg.subcells:
            raise ValueError(
                f"`subcells` {cfg.subcells} must divide the VAE's spatial factor "
                f"{self.vae.spatial_factor} (the pixels per latent cell side)"
            )
        profile = getattr(self.transformer, "profile", "mirage")
        for name, off in SAMPLING_OFF.items():
            if getattr(cfg, name) != off and profile != "mirage":
                raise ValueError(  # other profiles' side inputs are more than a readout
                    f"`{name}` needs a side branch of the mirage profile, got {profile!r}"
                )
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
            with self.offload.running(self.text_encoder):
                return encode_prompts(self.text_encoder, self.tokenizer, [prompt]).to(self.device)
        # Zero text: every token is the same vector, so cross-attention does not depend on the
        # length; one token is enough.
        return null_embedding(self.transformer.config.text_dim, 1, device=self.device)

    def sampler(self, shift: float):
        """A copy of the scheduler with flow shift `shift` (what `--shift` sets)."""
        cfg = self.scheduler.config
        key = "flow_shift" if "flow_shift" in cfg else "shift" if "shift" in cfg else None
        if key is None:
            raise ValueError(f"{type(self.scheduler).__name__} has no flow shift to set")
        return type(self.scheduler).from_config(cfg, **{key: float(shift)})

    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Image latents of frames [T,3,H,W], the VAE on the device while it runs."""
        with self.offload.running(self.vae.vae):
            return self.vae.encode_images(frames, batch_size=len(frames))

    def resolve(self, cfg: GenerationConfig) -> GenerationConfig:
        """`cfg` with its "auto" settings (sky_distance, fusion, memory_guidance,
        readout_copy) made the model folder's: the memory its side branches were trained to
        read and how it is sampled (`defaults`; mean fusion, no sky dome, guidance or copy
        without them; neither guidance nor copy without a memory or with a side branch of
        another profile, whose input is more than the readout they act on)."""
        profile = getattr(self.transformer, "profile", "mirage")
        readout = cfg.memory != "none" and profile == "mirage"  # what guidance and copy act on
        auto = {
            "sky_distance": self.defaults.get("sky_distance"),
            "fusion": self.defaults.get("fusion", DEFAULT_FUSION),
            **{k: self.defaults.get(k, off) if readout else off for k, off in SAMPLING_OFF.items()},
        }
        return replace(cfg, **{k: v for k, v in auto.items() if getattr(cfg, k) == "auto"})

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
        cfg = self.resolve(config or GenerationConfig())
        plan = self._check_inputs(image, cameras, prompt_embeds, cfg)  # all checks before work
        cameras = cameras.to(self.device)
        state = self._start(image, cameras[0], self._text(prompt, prompt_embeds), cfg)
        frames, chunks = [state.image], []
        for chunk in tqdm(plan, desc="chunks", disable=not progress):
            chunks.append(self.next_chunk(state, cameras[chunk.start : chunk.stop], progress))
            frames.append(chunks[-1].frames)
        metadata = {
            "config": asdict(cfg),  # "auto" settings as this model resolved them
            "profile": state.conditioner.profile,
            "branch": state.branch,
            "references": [c.references for c in chunks],  # per chunk: written latents used
            "sampler": {"class": type(state.scheduler).__name__, **_shift_of(state.scheduler)},
            "num_frames": len(cameras),
            "size": [cameras.height, cameras.width],
            "latent_hw": list(state.latent_hw),
            "chunks": [
                {"start": c.start, "frames": c.num_frames, "latent_frames": c.latent_frames}
                for c in plan
            ],
            "init_seconds": state.init_seconds,
            "cameras": {"K": cameras.K.cpu().tolist(), "c2w": cameras.c2w.cpu().tolist()},
        }
        return GenerationResult(
            torch.cat(frames), [c.latents for c in chunks], state.memory,
            [c.times for c in chunks], metadata, [c.readout for c in chunks],
        )  # fmt: skip

    def _write(self, memory, frames, cameras, indices, times, sky=None) -> torch.Tensor:
        """Stages 4-7 for frames [T,3,H,W]: encode, masks, depth, insert; returns the latents.

        Every memory kind gets the same encoded latents (the VAE is not batch-invariant to the
        last bit), so modes differ only through the side-branch input.
        """
        dev = self.device
        idx = torch.tensor(indices, device=dev)
        with _timed(times, "encode", dev):
            latents = self._encode(frames)
        if not memory.stores_geometry:  # memory off: nothing to estimate or insert
            return latents
        with _timed(times, "masks", dev):
            exclude = self.masks(frames, cameras, idx) if self.masks is not None else None
        with _timed(times, "depth", dev):
            depth = self.depth(frames, cameras, idx)
            metric = getattr(self.depth, "metric", True)
            obs = observation(memory, frames, latents, depth, cameras, exclude, metric, sky)
        with _timed(times, "insert", dev):
            memory.observe(obs)
        return latents

    def _use_branch(self, memory: str) -> str | None:
        """Load the side branch trained for `memory` (`branches`, else the default file) if it
        is not the one loaded; returns its file (None: the freshly initialised branch)."""
        path = self.branches.get(memory, self.files.get("branch"))
        if path is not None and path != self._loaded_branch:
            self.transformer.load_side_branch(path)
            self._loaded_branch = path
        return path

    # --- chunk by chunk -------------------------------------------------------------------
    # `generate` is `start_chunks` + one `next_chunk` per chunk of its plan; the explorer
    # calls them itself, because it learns the next cameras only after each chunk.

    @torch.no_grad()
    def start_chunks(
        self,
        image: torch.Tensor,  # [3,H,W] in [0,1], the first frame
        camera: Cameras,  # one camera of H x W images
        prompt: str | None = None,
        prompt_embeds: torch.Tensor | None = None,
        config: GenerationConfig | None = None,
    ) -> ChunkState:
        """Encode the first frame into a new memory; `next_chunk` then adds one chunk a call."""
        cfg = self.resolve(config or GenerationConfig())
        if not isinstance(camera, Cameras) or len(camera) != 1:
            raise ValueError(f"`camera` must be a Cameras holding one camera, got {camera!r}")
        one_chunk = camera[[0] * cfg.chunk_frames]  # checks size and chunk length like generate
        self._check_inputs(image, one_chunk, prompt_embeds, cfg)
        return self._start(image, camera.to(self.device), self._text(prompt, prompt_embeds), cfg)

    def _start(self, image, camera, text, cfg) -> ChunkState:
        """The first frame, encoded, seeds a new memory (stages 4-7)."""
        branch = self._use_branch(cfg.memory)
        profile = getattr(self.transformer, "profile", "mirage")  # what the side branch reads
        conditioner = ChunkConditioner(profile, cfg, self.vae, tuple(image.shape[1:]))
        image = image.to(self.device, torch.float32)
        memory = make_memory(
            cfg.memory, self.vae.z_dim, encode=self._encode, voxel_size=cfg.voxel_size,
            dtype=getattr(torch, cfg.memory_dtype), device=self.device, fusion=cfg.fusion,
            subcells=cfg.subcells,
        )  # fmt: skip
        init_seconds = dict.fromkeys(WRITE_STAGES, 0.0)
        first = self._write(memory, image[None], camera[0], [0], init_seconds, cfg.sky_distance)
        conditioner.written(first, camera[:1], memory)
        s = self.vae.spatial_factor
        return ChunkState(
            config=cfg, memory=memory, first=first, targets=first[:0], frames=1,
            latent_hw=(image.shape[1] // s, image.shape[2] // s), text=text,
            generator=torch.Generator().manual_seed(cfg.seed),  # CPU noise: same on every device
            scheduler=self.sampler(cfg.shift), conditioner=conditioner,
            image=image[None].cpu(), init_seconds=init_seconds, branch=branch,
        )  # fmt: skip

    @torch.no_grad()
    def next_chunk(
        self, state: ChunkState, cameras: Cameras, progress: bool = False
    ) -> ChunkOutput:
        """Generate one chunk along `cameras` (chunk_frames cameras; the first is the camera of
        the last frame so far) and write it into `state` (changed in place)."""
        cfg, dev = state.config, self.device
        if not isinstance(cameras, Cameras) or len(cameras) != cfg.chunk_frames:
            raise ValueError(
                f"`cameras` must be a Cameras of {cfg.chunk_frames} cameras (one chunk), got "
                f"{len(cameras) if isinstance(cameras, Cameras) else type(cameras).__name__}"
            )
        state.branch = self._use_branch(cfg.memory)
        cameras = cameras.to(dev)
        slots = list(range(0, cfg.chunk_frames, 4))  # the chunk's latent-frame cameras
        first, memory, conditioner = state.first, state.memory, state.conditioner
        times = dict.fromkeys(STAGES, 0.0)
        null_text = torch.zeros_like(state.text) if cfg.guidance_scale > 1 else None
        # 1. read the memory for the chunk's latent-frame cameras; the profile's side input,
        # the context and any retrieved references (mirage.pipeline.profiles)
        with _timed(times, "read", dev):
            readout = memory.read(cameras[slots], state.latent_hw)
            n = num_context(state.chunks, cfg.context_latents)
            inputs = conditioner.prepare(memory, cameras[slots], n, first, state.targets, readout)
        # 2. denoise the target slots; references, context and first frame are clean (t = 0)
        noise = torch.randn(len(slots) - 1, *first.shape[1:], generator=state.generator)
        with _timed(times, "denoise", dev), self.offload.running(self.transformer):
            targets = sample_chunk(
                self.transformer, state.scheduler, inputs.clean, noise.to(dev), state.text,
                inputs.condition, cfg.num_inference_steps, cfg.guidance_scale, null_text,
                cfg.side_scale, progress, after=inputs.after, num_ref=inputs.num_ref,
                cache=cfg.cache, cache_threshold=cfg.cache_threshold,
                memory_guidance=cfg.memory_guidance,
                memory_guidance_sigma=cfg.memory_guidance_sigma, readout_copy=cfg.readout_copy,
            )  # fmt: skip
        # 3. decode the chunk (slot 0 decodes to the given first frame)
        latents = torch.cat([first, targets])
        with _timed(times, "decode", dev), self.offload.running(self.vae.vae):
            video = self.vae.decode(latents)  # [4k+1,3,H,W]
        # 4-7. the new latent-aligned frames (start + 4m, m >= 1) go back into the memory;
        # the clean latent of the chunk's last frame opens the next chunk
        index = [state.frames - 1 + m for m in slots[1:]]
        written = self._write(
            memory, video[4::4], cameras[slots[1:]], index, times, cfg.sky_distance
        )
        conditioner.finished(latents, readout, cameras[slots])
        conditioner.written(written, cameras[slots[1:]], memory)
        state.first, state.targets, state.chunks = written[-1:], targets, state.chunks + 1
        state.frames += cfg.chunk_frames - 1
        times.update(cache_points=memory.num_points, cache_bytes=memory.nbytes)
        return ChunkOutput(
            video[1:].cpu(), latents.cpu(), _cpu(readout), times,
            inputs.references,
        )  # fmt: skip


@dataclass
class ChunkState:
    """Where a chunk-by-chunk generation stands (`start_chunks`, `next_chunk`)."""

    config: GenerationConfig
    memory: object  # the SpatialMemory so far
    first: torch.Tensor  # [1,C,h,w] clean latent of the last frame: slot 0 of the next chunk
    targets: torch.Tensor  # [k,C,h,w] target latents of the last chunk (the next context)
    frames: int  # frames so far, the first frame included
    latent_hw: tuple[int, int]
    text: torch.Tensor  # [1,L,D] prompt embedding
    generator: torch.Generator  # noise: advanced once per chunk
    scheduler: object
    conditioner: ChunkConditioner  # the profile's inputs, references and previous slots
    image: torch.Tensor  # [1,3,H,W] the first frame (CPU)
    init_seconds: dict  # seconds per write stage of the first frame
    branch: str | None = None  # the side-branch file in use (None: freshly initialised)
    chunks: int = 0  # chunks generated so far


@dataclass
class ChunkOutput:
    """One chunk of `next_chunk`, on the CPU."""

    frames: torch.Tensor  # [chunk_frames-1,3,H,W] the new frames
    latents: torch.Tensor  # [k+1,C,h,w] slot 0 (the given frame) + the generated targets
    readout: Readout  # the memory read at the chunk's latent-frame cameras
    times: dict  # seconds per stage, cache points and bytes after the chunk
    references: list[int]  # the written latents used as references (0 = the first frame)


def _cpu(readout: Readout) -> Readout:
    return Readout(readout.latents.cpu(), readout.mask.cpu(), readout.depth.cpu())


def _shift_of(scheduler) -> dict:
    cfg = scheduler.config
    return {k: float(cfg[k]) for k in ("flow_shift", "shift") if k in cfg}


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
