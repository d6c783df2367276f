"""`mirage preprocess`: clips -> shards holding all training needs (no VAE runs in training).

Sources: the synthetic world (`SyntheticClipDataset`: seeded scenes and trajectory presets,
exact depth and masks) or a RealEstate10K-layout folder (`Re10kClipDataset`) with depth from
`<depth_dir>/<clip>/depth.safetensors` (`depth` [T,H',W'] per frame of the clip, the layout
`mirage world render` writes) or from a depth model (`mirage.perception.load_depth_provider`),
and optional masks from `<masks_dir>/<clip>/masks.safetensors` (`dynamic`, `sky` [T,H',W']).
A clip's prompt is `<clip>/prompt.txt` when the model folder has a text encoder; otherwise the
shard records the null embedding.

Work is split across processes with accelerate (process r takes clips r, r + W, ...); a shard
already on disk with a valid header is skipped (resumable), or, with `decoded_writes`, given
the decoded writes it lacks; every file is written atomically.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mirage.data.shards import (
    load_shard,
    read_shard_header,
    shard_name,
    write_index,
    write_shard,
)
from mirage.data.trajectories import PRESETS as TRAJECTORY_PRESETS


@dataclass(frozen=True)
class PreprocessConfig:
    out: str = ""  # shard folder to write
    source: str = "synthetic"  # "synthetic" or a RealEstate10K-layout folder
    num_frames: int = 33  # frames per clip: 1 + n (chunk_frames - 1)
    chunk_frames: int = 17  # frames per training chunk (4k + 1), as in generation
    height: int = 128  # frame height (multiple of 2 x the VAE's spatial factor)
    width: int = 128  # frame width
    # synthetic world
    num_clips: int = 64  # synthetic clips
    seed: int = 0  # synthetic clip seeds (and tiny random VAE weights)
    kind: str = "mixed"  # "indoor", "outdoor" or "mixed"
    num_dynamic: int = 1  # moving objects per synthetic scene (excluded from the memory)
    trajectories: tuple[str, ...] = TRAJECTORY_PRESETS  # presets drawn per clip
    keep_frames: bool = False  # store the aligned RGB frames (uint8): what an RGB memory needs
    # store what generation writes into the memory (`decoded_writes`); with an existing folder,
    # adds them to its shards without rendering again
    decoded_writes: bool = False
    supersample: int = 1  # s x s rays per pixel for RGB (anti-aliased); depth and masks exact
    # RealEstate10K-layout clips
    stride: int = 1  # frame stride inside a clip window
    depth_dir: str | None = None  # <depth_dir>/<clip>/depth.safetensors (default: the clip folder)
    depth_model: str | None = None  # depth model folder for clips without depth files
    relative_depth: bool = False  # depth files hold depth only up to scale (aligned in training)
    masks_dir: str | None = None  # <masks_dir>/<clip>/masks.safetensors (default: clip folder)
    # models
    vae: str | None = None  # AutoencoderKLWan folder; None with model None = tiny random VAE
    model: str | None = None  # Wan diffusers folder (vae/, optional text_encoder/ + tokenizer/)
    device: str = "auto"  # "auto" = the accelerator's device
    threads: int = 0  # torch CPU threads per process (0: torch's default; 1 on a busy CPU)
    progress: bool = True

    def __post_init__(self):
        if self.chunk_frames < 5 or (self.chunk_frames - 1) % 4:
            raise ValueError(f"`chunk_frames` must be 4k + 1 >= 5, got {self.chunk_frames}")
        step = self.chunk_frames - 1
        if self.num_frames < self.chunk_frames or (self.num_frames - 1) % step:
            raise ValueError(
                f"`num_frames` must be 1 + n x {step} (whole chunks of {self.chunk_frames}), "
                f"got {self.num_frames}"
            )
        if self.vae is not None and self.model is not None:
            raise ValueError("give `vae` or `model`, not both")


def load_vae(cfg: PreprocessConfig, device):
    """The VideoVAE: `vae` folder, `model`/vae, or the tiny random VAE (tests)."""
    from mirage.models.loading import tiny_components
    from mirage.models.vae import VideoVAE, load_autoencoder

    folder = Path(cfg.vae) if cfg.vae else Path(cfg.model) / "vae" if cfg.model else None
    if folder is None:
        vae = tiny_components(cfg.seed).vae
    else:
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"VAE folder must hold config.json: {folder}")
        vae = load_autoencoder(folder)
    return VideoVAE(vae.to(device).eval().requires_grad_(False))


def _text_models(cfg: PreprocessConfig, device):
    if cfg.model is None or not (Path(cfg.model) / "text_encoder").is_dir():
        return None
    from transformers import AutoTokenizer, UMT5EncoderModel

    root = Path(cfg.model)
    dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    enc = UMT5EncoderModel.from_pretrained(
        root / "text_encoder", dtype=dtype, local_files_only=True
    )
    tok = AutoTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    return enc.to(device).eval(), tok


def _dataset(cfg: PreprocessConfig):
    from mirage.data.datasets import Re10kClipDataset, SyntheticClipDataset

    if cfg.source == "synthetic":
        return SyntheticClipDataset(
            cfg.num_clips, cfg.num_frames, cfg.height, cfg.width, seed=cfg.seed, kind=cfg.kind,
            num_dynamic=cfg.num_dynamic, trajectories=cfg.trajectories,
            supersample=cfg.supersample,
        )  # fmt: skip
    root = Path(cfg.source)
    if not root.is_dir():
        raise FileNotFoundError(f"`source` must be 'synthetic' or a clip folder, got {root}")
    return Re10kClipDataset(root, cfg.num_frames, cfg.height, cfg.width, stride=cfg.stride)


def _resize_nearest(x: torch.Tensor, H: int, W: int) -> torch.Tensor:  # [T,H',W'] -> [T,H,W]
    if tuple(x.shape[1:]) == (H, W):
        return x
    y = torch.nn.functional.interpolate(x[:, None].float(), size=(H, W), mode="nearest")
    return y[:, 0].to(x.dtype)


def _real_depth_and_masks(cfg, item, depth_model, frames, cams, source_root):
    """Depth [T,H,W], exclusion [T,H,W] and whether the depth is metric, of a clip window."""
    from safetensors.torch import load_file

    clip = item["clip"]
    T, _, H, W = frames.shape
    idx = torch.arange(item["start"], item["start"] + (T - 1) * cfg.stride + 1, cfg.stride)
    depth_file = Path(cfg.depth_dir or source_root) / clip / "depth.safetensors"
    if depth_file.is_file():
        depth = load_file(str(depth_file))["depth"]
        if len(depth) <= int(idx[-1]):
            raise ValueError(
                f"{depth_file}: {len(depth)} depth frames, clip needs {int(idx[-1]) + 1}"
            )
        depth, metric = _resize_nearest(depth[idx].float(), H, W), not cfg.relative_depth
    elif depth_model is not None:
        depth, metric = depth_model(frames, cams, idx), getattr(depth_model, "metric", True)
    else:
        raise FileNotFoundError(f"no depth for clip {clip}: {depth_file} (or pass `depth_model`)")
    exclude = torch.zeros(T, H, W, dtype=torch.bool)
    masks_file = Path(cfg.masks_dir or source_root) / clip / "masks.safetensors"
    if masks_file.is_file():
        masks = load_file(str(masks_file))
        for key in ("dynamic", "sky"):
            if key in masks:
                exclude |= _resize_nearest(masks[key][idx].to(torch.uint8), H, W).bool()
    return depth.cpu(), exclude, metric


@torch.no_grad()
def clip_tensors(vae, frames, depth, exclude, K, c2w, chunk_frames: int) -> dict:
    """Shard tensors of one clip.  # frames [N,3,H,W], depth/exclude [N,H,W], K, c2w [N,..]"""
    N = len(frames)
    step = chunk_frames - 1
    aligned = torch.arange(0, N, 4)
    windows = [frames[c * step : c * step + chunk_frames] for c in range((N - 1) // step)]
    return {
        "chunk_latents": torch.stack([vae.encode_video(w).cpu() for w in windows]),
        "image_latents": vae.encode_images(frames[aligned]).cpu(),
        "depth": depth[aligned].float().contiguous(),
        "exclude": exclude[aligned].bool().contiguous(),
        "K": K[aligned].float().contiguous(),
        "c2w": c2w[aligned].float().contiguous(),
    }


@torch.no_grad()
def decoded_writes(vae, chunk_latents: torch.Tensor, image_latents: torch.Tensor):
    """What generation writes into the memory for each latent-aligned frame of a clip when the
    model reproduces its chunk latents [n,k+1,C,h,w] exactly: frame 0 is the given image
    (its image latent); each chunk decodes as one video from [the written latent of its
    first frame | its target latents], and its new aligned frames are encoded alone.

    Returns the written latents [L,C,h,w] and the decoded frames [L-1,3,H,W] of frames 4..N-1
    (frame 0's pixels are the given image's).
    """
    latents, frames = [image_latents[:1].cpu()], []
    for chunk in chunk_latents:
        first = latents[-1][-1:].to(chunk.device)
        video = vae.decode(torch.cat([first, chunk[1:]]))  # [4k+1,3,H,W] in [0, 1]
        frames.append(video[4::4].cpu())
        latents.append(vae.encode_images(video[4::4]).cpu())
    return torch.cat(latents), torch.cat(frames)


def add_decoded_writes(tensors: dict, vae) -> dict:
    """`tensors` of one shard with `decoded_latents` (and `decoded_frames` where it keeps
    `frames`) added: a training memory built from them holds what generation's holds."""
    latents, frames = decoded_writes(vae, tensors["chunk_latents"], tensors["image_latents"])
    out = {**tensors, "decoded_latents": latents}
    if "frames" in tensors:
        pixels = (frames * 255).round().to(torch.uint8)
        out["decoded_frames"] = torch.cat([tensors["frames"][:1], pixels])
    return out


def preprocess(cfg: PreprocessConfig) -> Path:
    """Write one shard per clip under `cfg.out` (split across accelerate processes)."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from mirage.geometry import Cameras

    if not cfg.out:
        raise ValueError("`out` (the shard folder) is required")
    dataset = _dataset(cfg)  # validates the source before any model loads
    if cfg.source != "synthetic" and not cfg.depth_model:
        root = Path(cfg.depth_dir or cfg.source)
        clips = sorted({clip.name for clip, _ in dataset.items})
        missing = [str(root / c / "depth.safetensors") for c in clips]
        missing = [m for m in missing if not Path(m).is_file()]
        if missing:
            raise FileNotFoundError(
                "no depth for these clips (give `depth_dir` or `depth_model`): "
                + ", ".join(missing)
            )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    accelerator = Accelerator(cpu=cfg.device == "cpu")
    device = accelerator.device if cfg.device in ("auto", "cpu") else torch.device(cfg.device)
    vae = load_vae(cfg, device)
    vae.check_video_shape(cfg.chunk_frames, cfg.height, cfg.width)
    text = _text_models(cfg, device)
    depth_model = None
    if cfg.source != "synthetic" and cfg.depth_model:
        from mirage.perception import load_depth_provider

        depth_model = load_depth_provider(cfg.depth_model, device=device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    mine = range(accelerator.process_index, len(dataset), accelerator.num_processes)
    for i in tqdm(mine, desc="shards", disable=not (cfg.progress and accelerator.is_main_process)):
        path = out / shard_name(i)
        if path.is_file():
            try:
                header = read_shard_header(path)
            except ValueError:
                header = None  # unreadable: write it again
            if header is not None:  # written before an interruption, or by an earlier run
                if cfg.decoded_writes and "decoded_latents" not in header["shapes"]:
                    tensors, meta = load_shard(path)  # add them; nothing is rendered again
                    write_shard(path, add_decoded_writes(tensors, vae), meta)
                continue
        item = dataset[i]
        frames, K, c2w = item["frames"], item["K"], item["c2w"]
        source: dict = {"index": i}
        if cfg.source == "synthetic":
            depth, exclude = item["depth"], item["dynamic_mask"] | item["sky_mask"]
            depth_metric = True
            source.update(
                kind=item["kind"], scene_seed=item["scene_seed"], trajectory=item["trajectory"]
            )
        else:
            cams = Cameras(K, c2w, cfg.height, cfg.width).to(device)
            depth, exclude, depth_metric = _real_depth_and_masks(
                cfg, item, depth_model, frames.to(device), cams, cfg.source
            )
            source.update(clip=item["clip"], start=item["start"], stride=cfg.stride)
        tensors = clip_tensors(vae, frames.to(device), depth, exclude, K, c2w, cfg.chunk_frames)
        if cfg.keep_frames:
            tensors["frames"] = (frames[::4].clamp(0, 1) * 255).round().to(torch.uint8)
        if cfg.decoded_writes:
            tensors = add_decoded_writes(tensors, vae)
        prompt_file = Path(cfg.source) / str(item.get("clip", "")) / "prompt.txt"
        if text is not None and cfg.source != "synthetic" and prompt_file.is_file():
            from mirage.models.text import encode_prompts

            emb = encode_prompts(text[0], text[1], [prompt_file.read_text().strip()])[0]
            tensors["text"] = emb.float().cpu()
        meta = {
            "num_frames": cfg.num_frames, "chunk_frames": cfg.chunk_frames,
            "height": cfg.height, "width": cfg.width, "channels": vae.z_dim,
            "latent_hw": [cfg.height // vae.spatial_factor, cfg.width // vae.spatial_factor],
            # up-to-scale depth is aligned to the memory in training as in generation
            "source": source, "depth_metric": depth_metric,
        }  # fmt: skip
        write_shard(path, tensors, meta)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_index(out, [shard_name(i) for i in range(len(dataset))], asdict(cfg))
    accelerator.wait_for_everyone()
    return out


def tiny_preprocess(out: str, **overrides) -> PreprocessConfig:
    """Synthetic shards for mirage-tiny at the demo's sizes: 64x64, 33 frames, chunks of 9."""
    base = dict(out=out, source="synthetic", num_clips=256, num_frames=33, chunk_frames=9,
                height=64, width=64, kind="mixed", num_dynamic=1, threads=1)  # fmt: skip
    base.update(overrides)
    return PreprocessConfig(**base)
