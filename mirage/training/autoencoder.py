"""Train the tiny video VAE (a small Wan2.1-style `AutoencoderKLWan`) on synthetic clips.

Reads in run order: config -> data (a pool of rendered synthetic clips, refreshed one clip
per step) -> model -> optimizer -> resume -> loop (lr from `lr_at`, L1 + small KL on causal
clips and single frames, clip, step, log, checkpoint) -> latent statistics -> export.

Each step trains on `clips_per_step` clips of `clip_frames` (4k + 1) frames, so the causal 4x
temporal path is trained, and on `singles_per_step` single frames (1-frame clips): the
memory stores such image latents. The first frame of every clip is also encoded alone
(Wan's encoder is causal), so single-frame reconstruction is trained on both.

After training, per-channel `latents_mean` / `latents_std` of the posterior mode over image
latents of `stats_clips` training clips go into the VAE config (`VideoVAE` normalises with
them), and the VAE is written with `save_pretrained` to `<out>/vae`. Reconstruction PSNR on
held-out clips (another data seed) goes to `<out>/eval.json`.

Checkpoints (`<out>/checkpoints/step-NNNNNNNN/`: weights as safetensors, optimizer state,
state.json with step, RNG and config) are written to a temporary folder and renamed
(`mirage.training.checkpoint` naming, listing and pruning), so an interrupted run resumes from
the last complete one (`resume=True`).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mirage.models.cpu_conv import split_conv3d
from mirage.models.vae import VIDEO_LATENTS, VIDEO_LATENTS_KEY, load_autoencoder
from mirage.training.checkpoint import (
    CKPT_DIR,
    checkpoint_name,
    list_checkpoints,
    prune_checkpoints,
    replace_dir,
    write_json,
)
from mirage.training.config import lr_at


@dataclass(frozen=True)
class AutoencoderConfig:
    out: str = ""  # output folder: checkpoints/, vae/, log.jsonl, eval.json
    height: int = 64  # frame height (a multiple of 16)
    width: int = 64  # frame width (a multiple of 16)
    z_dim: int = 16  # latent channels
    base_dim: int = 16  # VAE width (tiny_vae_config default)
    spatial_factor: int = 8  # 8 (Wan2.1 layout, dim_mult 1,2,4,4) or 4 (dim_mult 1,2,4): a
    # 64x64 frame gives an 8x8 or a 16x16 latent grid
    init: str | None = None  # start from this AutoencoderKLWan folder (None: a fresh tiny VAE)
    freeze_encoder: bool = False  # train the decoder alone: the latents (and everything
    # trained on them, a DiT's shards) stay exactly as they are
    is_residual: bool = True  # Wan2.2-style pixel-shuffle shortcuts around each resampling:
    # a near-linear latent-to-pixel path that a short run learns much sooner
    # data
    kind: str = "mixed"  # synthetic scene kind: indoor | outdoor | mixed
    num_dynamic: int = 1  # moving objects per scene
    supersample: int = 2  # s x s rays per pixel for RGB (anti-aliased, as a camera sees)
    data_seed: int = 0  # SyntheticClipDataset seed of the training clips
    eval_seed: int = 7_777  # SyntheticClipDataset seed of the held-out clips
    render_frames: int = 9  # frames rendered per pool clip (4k + 1 >= clip_frames)
    pool_size: int = 48  # rendered clips kept; a new clip replaces the oldest
    refresh_every: int = 3  # steps between new clips (rendering costs about a step on a CPU)
    clip_frames: int = 5  # frames per training clip (4k + 1)
    clips_per_step: int = 2  # causal clips per step
    clip_every: int = 1  # steps between causal-clip batches: a 5-frame causal clip costs about
    # ten single frames on a CPU, and image latents (singles) are what the memory stores
    singles_per_step: int = 4  # single frames per step
    # objective and optimisation
    kl_weight: float = 1e-6  # weight of the mean KL to N(0, 1) beside the mean L1
    mse_weight: float = 1.0  # weight of the MSE beside the mean L1 (faster on large errors)
    video_latents: str = "causal"  # how clips are encoded for the decoder to learn: "causal"
    # (Wan's causal encoder) or "keyframes" (latent m = image latent of frame 4m; with
    # `freeze_encoder`, a decoder for the latents the memory stores: mirage.models.vae)
    tie_weight: float = 0.0  # weight of `tie_loss` (video latents near their frames' image
    # latents) on causal clips; 0 = off
    posterior_noise: float = 0.0  # z = mean + this x std x noise (0: the posterior mean, which
    # inference uses; std 1 at init would drown a short training run in noise)
    max_steps: int = 2000  # optimizer steps
    max_minutes: float | None = None  # stop earlier at this wall time (then stats + export)
    lr: float = 5e-4  # peak learning rate (2e-3 collapsed to a constant grey image)
    warmup_steps: int = 50  # linear warmup from 0
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of lr
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max global grad norm
    # bookkeeping
    seed: int = 0  # weights init, batch draws, posterior noise
    log_every: int = 10  # steps between log lines
    eval_every: int = 100  # steps between held-out PSNR log lines (4 frames)
    checkpoint_every: int = 50  # steps between checkpoints
    keep_checkpoints: int = 2  # newest checkpoints kept
    stats_clips: int = 24  # training clips encoded for the latent statistics
    eval_clips: int = 8  # held-out clips for the reconstruction PSNR
    resume: bool = True  # continue from the newest checkpoint under out/checkpoints
    progress: bool = True  # tqdm bar

    def __post_init__(self):
        if not self.out:
            raise ValueError("`out` (the output folder) is required")
        for name in ("height", "width"):
            v = getattr(self, name)
            if v <= 0 or v % 16:
                raise ValueError(f"`{name}` must be a positive multiple of 16, got {v}")
        for name in ("clip_frames", "render_frames"):
            v = getattr(self, name)
            if v < 5 or (v - 1) % 4:
                raise ValueError(f"`{name}` must be 4k + 1 with k >= 1, got {v}")
        if self.render_frames < self.clip_frames:
            raise ValueError(
                f"`render_frames` must be >= clip_frames={self.clip_frames}, "
                f"got {self.render_frames}"
            )
        for name in (
            "max_steps",
            "pool_size",
            "refresh_every",
            "stats_clips",
            "eval_clips",
            "log_every",
            "clip_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.clips_per_step < 0 or self.singles_per_step < 0:
            raise ValueError("`clips_per_step` and `singles_per_step` must be >= 0")
        if self.clips_per_step + self.singles_per_step < 1:
            raise ValueError("a step needs at least one clip or single frame")
        if self.clip_every > 1 and self.singles_per_step < 1:
            raise ValueError("`clip_every` > 1 needs `singles_per_step` >= 1 (steps without clips)")
        if not self.lr > 0:
            raise ValueError(f"`lr` must be > 0, got {self.lr}")
        if self.spatial_factor not in (4, 8):
            raise ValueError(f"`spatial_factor` must be 4 or 8, got {self.spatial_factor}")
        if self.supersample < 1:
            raise ValueError(f"`supersample` must be >= 1, got {self.supersample}")
        if self.video_latents not in VIDEO_LATENTS:
            raise ValueError(
                f"`video_latents` must be one of {VIDEO_LATENTS}, got {self.video_latents!r}"
            )
        if self.tie_weight and self.video_latents == "keyframes":
            raise ValueError(  # keyframe latents are the image latents: the gap is 0
                "`tie_weight` ties causal video latents to image latents; "
                "with video_latents='keyframes' they are the same: set tie_weight=0"
            )
        if self.kind not in ("indoor", "outdoor", "mixed"):
            raise ValueError(f"`kind` must be indoor | outdoor | mixed, got {self.kind!r}")
        if self.data_seed == self.eval_seed:
            raise ValueError("`eval_seed` must differ from `data_seed` (held-out clips)")

    schedule = "cosine"  # for `lr_at` (not a field): warmup, then cosine to min_lr_ratio * lr


def vae_layout(spatial_factor: int) -> dict:
    """`AutoencoderKLWan` block layout for a spatial factor; time is always 4x (two temporal
    downsamplings, in the last two resampling stages as in Wan2.1). The last two widths are
    equal because the residual (pixel-shuffle) shortcut of the last block cannot widen."""
    if spatial_factor == 8:
        return {"dim_mult": [1, 2, 4, 4], "temperal_downsample": [False, True, True]}
    return {"dim_mult": [1, 2, 2], "temperal_downsample": [True, True]}


def make_tiny_vae(cfg: AutoencoderConfig, seed: int = 0):
    """A fresh `AutoencoderKLWan` of `tiny_vae_config(z_dim, base_dim)`, seeded."""
    from diffusers import AutoencoderKLWan

    from mirage.models.loading import tiny_vae_config

    layout = vae_layout(cfg.spatial_factor)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKLWan(
            **tiny_vae_config(
                z_dim=cfg.z_dim, base_dim=cfg.base_dim, is_residual=cfg.is_residual,
                scale_factor_spatial=cfg.spatial_factor, **layout,
            )
        )  # fmt: skip


# --- data -------------------------------------------------------------------------------------


class _ClipPool:
    """Rendered training clips [render_frames,3,H,W]; `refresh()` renders the next one."""

    def __init__(self, cfg: AutoencoderConfig, start: int):
        from mirage.data import SyntheticClipDataset

        self.ds = SyntheticClipDataset(
            10**7, cfg.render_frames, cfg.height, cfg.width, seed=cfg.data_seed, kind=cfg.kind,
            num_dynamic=cfg.num_dynamic, supersample=cfg.supersample,
        )  # fmt: skip
        self.size, self.next, self.clips = cfg.pool_size, start, []

    def refresh(self) -> None:
        clip = self.ds[self.next]["frames"]
        self.next += 1
        self.clips.append(clip)
        if len(self.clips) > self.size:
            self.clips.pop(0)

    def batch(self, rng: random.Random, n_clips: int, clip_frames: int, n_single: int):
        """(clips [B,3,F,H,W] or None, singles [S,3,1,H,W] or None) in [-1, 1], random flips."""

        def flip(x):  # [T,3,H,W]
            return x.flip(-1) if rng.random() < 0.5 else x

        clips = singles = None
        if n_clips:
            picks = []
            for _ in range(n_clips):
                c = self.clips[rng.randrange(len(self.clips))]
                s = rng.randrange(len(c) - clip_frames + 1)
                picks.append(flip(c[s : s + clip_frames]))
            clips = torch.stack(picks).permute(0, 2, 1, 3, 4) * 2 - 1
        if n_single:
            picks = []
            for _ in range(n_single):
                c = self.clips[rng.randrange(len(self.clips))]
                picks.append(flip(c[rng.randrange(len(c))][None]))
            singles = torch.stack(picks).permute(0, 2, 1, 3, 4) * 2 - 1
        return clips, singles


def _decode_unclamped(vae, z: torch.Tensor) -> torch.Tensor:  # [B,C,t,h,w] -> [B,3,T,H,W]
    """`vae.decode` without its final clamp to [-1, 1], which stops the gradient of every pixel
    the young decoder overshoots. The same causal loop over latent frames (feature cache, the
    first latent frame decoded alone) as `AutoencoderKLWan._decode` without tiling."""
    vae.clear_cache()
    x = vae.post_quant_conv(z)
    outs = []
    for i in range(x.shape[2]):
        vae._conv_idx = [0]
        outs.append(
            vae.decoder(x[:, :, i : i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx,
                        first_chunk=i == 0)
        )  # fmt: skip
    vae.clear_cache()
    return torch.cat(outs, 2)


@torch.no_grad()
def _probe_tie(vae, clip: torch.Tensor) -> float:  # clip [T,3,H,W] in [0,1]
    x = clip.permute(1, 0, 2, 3)[None] * 2 - 1
    return float(tie_loss(vae, x, vae.encode(x).latent_dist.mean))


def _loss(vae, x: torch.Tensor, cfg: AutoencoderConfig, gen: torch.Generator):
    """Mean L1 of the reconstruction of x [B,3,T,H,W] in [-1,1] from a posterior draw + KL."""
    with torch.set_grad_enabled(not cfg.freeze_encoder):
        post = _encode_clips(vae, x, cfg.video_latents)
    z = post.mean + cfg.posterior_noise * post.std * torch.randn(post.mean.shape, generator=gen)
    rec = _decode_unclamped(vae, z)
    l1 = (rec - x).abs().mean()
    mse = (rec - x).pow(2).mean()
    kl = 0.5 * (post.mean.pow(2) + post.var - 1.0 - post.logvar).mean()
    loss = l1 + cfg.mse_weight * mse + cfg.kl_weight * kl
    if cfg.tie_weight and x.shape[2] > 1:
        loss = loss + cfg.tie_weight * tie_loss(vae, x, post.mean)
    return loss, l1.detach()


def _encode_clips(vae, x: torch.Tensor, video_latents: str):
    """Posterior of clips x [B,3,T,H,W]: the causal encoder's, or for "keyframes" that of
    frames 0, 4, .. each encoded alone, as [B,C,t,h,w]."""
    if video_latents == "causal" or x.shape[2] == 1:
        return vae.encode(x).latent_dist
    return _encoded_alone(vae, x, first=0)


def _encoded_alone(vae, x: torch.Tensor, first: int):
    """Posterior [B,C,t,h,w] of frames first, first + 4, .. of clips x [B,3,T,H,W], each
    frame encoded as a 1-frame clip (its image latent), the frames as the time axis."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    frames = x[:, :, first :: vae.config.scale_factor_temporal]
    B, _, t, H, W = frames.shape
    params = vae.encode(frames.transpose(1, 2).reshape(B * t, 3, 1, H, W)).latent_dist.parameters
    params = params.reshape(B, t, *params.shape[1:])[:, :, :, 0].transpose(1, 2)
    return DiagonalGaussianDistribution(params)


def tie_loss(vae, x: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    """Mean squared gap between each video latent m >= 1 of clips x [B,3,T,H,W] (`video`
    [B,C,t,h,w], the posterior mean) and the image latent of its frame 4m (that frame encoded
    alone), per channel in units of the image latents' spread (`latents_std`).

    The memory stores image latents and the model generates video latents; a VAE whose two
    agree makes "copy what is visible" an identity, not a translation (mirage-tiny's first
    VAE left them as far apart as a zero latent is: MODEL_CARD.md)."""
    image = _encoded_alone(vae, x, vae.config.scale_factor_temporal).mean  # frames 4, 8, ..
    std = torch.tensor(vae.config.latents_std, device=x.device).view(1, -1, 1, 1, 1)
    return ((video[:, :, 1:] - image) / std).pow(2).mean()


# --- checkpoints ------------------------------------------------------------------------------


def _save_checkpoint(out: Path, vae, opt, step: int, cfg, rng: random.Random, gen, keep: int):
    from safetensors.torch import save_file

    root = out / CKPT_DIR
    final, tmp = root / checkpoint_name(step), root / f".tmp-{checkpoint_name(step)}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, tmp / "model.safetensors")
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    torch.save({"torch": torch.get_rng_state(), "gen": gen.get_state()}, tmp / "rng.pt")
    state = {"step": step, "config": asdict(cfg), "python_rng": repr(rng.getstate())}
    write_json(tmp / "state.json", state)
    replace_dir(tmp, final)
    prune_checkpoints(root, keep)


def _load_checkpoint(path: Path, vae, opt, rng: random.Random, gen) -> int:
    import ast

    from safetensors.torch import load_file

    vae.load_state_dict(load_file(path / "model.safetensors"))
    opt.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    r = torch.load(path / "rng.pt", weights_only=True)
    torch.set_rng_state(r["torch"])
    gen.set_state(r["gen"])
    state = json.loads((path / "state.json").read_text())
    rng.setstate(ast.literal_eval(state["python_rng"]))
    return int(state["step"])


# --- statistics, evaluation, export -----------------------------------------------------------


@torch.no_grad()
def latent_statistics(vae, frames: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the raw posterior mode of image latents of frames [T,3,H,W]."""
    zs = []
    for i in range(0, len(frames), 16):
        x = frames[i : i + 16].unsqueeze(2) * 2 - 1  # [b,3,1,H,W]
        zs.append(vae.encode(x).latent_dist.mode()[:, :, 0])  # [b,C,h,w]
    z = torch.cat(zs).transpose(0, 1).reshape(vae.config.z_dim, -1).double()
    return z.mean(1).tolist(), z.std(1).clamp(min=1e-6).tolist()


@torch.no_grad()
def reconstruction_psnr(vae, clips: list[torch.Tensor], video: bool = True,
                        image: bool = True) -> dict:  # fmt: skip
    """Mean PSNR (dB) of image-latent and/or video (causal clip) reconstructions of clips
    [T,3,H,W]: keys `image_psnr`, `video_psnr` for the parts asked for.

    Per-frame PSNR from torchmetrics directly, averaged over frames as `mirage.eval.metrics.psnr`
    reports it (training does not import eval: they sit on one layer).
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    from mirage.models.vae import VideoVAE

    def psnr(pred, target) -> float:
        per_frame = peak_signal_noise_ratio(
            pred, target, data_range=1.0, reduction="none", dim=(1, 2, 3)
        )
        return float(per_frame.mean())

    v = VideoVAE(vae)
    out = {}
    if image:
        out["image_psnr"] = sum(psnr(v.decode_images(v.encode_images(c)), c) for c in clips)
    if video:
        out["video_psnr"] = sum(psnr(v.decode(v.encode_video(c)), c) for c in clips)
    return {k: total / len(clips) for k, total in out.items()}


def _render_clips(cfg: AutoencoderConfig, seed: int, n: int) -> list[torch.Tensor]:
    from mirage.data import SyntheticClipDataset

    ds = SyntheticClipDataset(
        n, cfg.render_frames, cfg.height, cfg.width, seed=seed, kind=cfg.kind,
        num_dynamic=cfg.num_dynamic, supersample=cfg.supersample,
    )  # fmt: skip
    return [ds[i]["frames"] for i in range(n)]


def export_vae(vae, cfg: AutoencoderConfig, out_dir: Path) -> Path:
    """Write latent statistics into the config and `save_pretrained` to `out_dir` atomically."""
    clips = _render_clips(cfg, cfg.data_seed, cfg.stats_clips)
    mean, std = latent_statistics(vae, torch.cat(clips))
    vae.register_to_config(latents_mean=mean, latents_std=std)
    tmp = out_dir.parent / f".tmp_{out_dir.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    vae.save_pretrained(tmp, safe_serialization=True)
    return replace_dir(tmp, out_dir)


# --- the run ----------------------------------------------------------------------------------


def _initial_vae(cfg: AutoencoderConfig):
    """A fresh tiny VAE, or the `init` folder's; with `freeze_encoder` only the decoder side
    (post_quant_conv + decoder) keeps gradients."""
    if cfg.init is None:
        vae = make_tiny_vae(cfg, cfg.seed)
    else:
        vae = load_autoencoder(cfg.init)
        if vae.config.scale_factor_spatial != cfg.spatial_factor:
            raise ValueError(
                f"`init` {cfg.init} has spatial factor {vae.config.scale_factor_spatial}, "
                f"the config says {cfg.spatial_factor}"
            )
    if cfg.video_latents != vae.config.get(VIDEO_LATENTS_KEY, "causal"):
        # set where it differs from the init's: a fresh causal VAE keeps a plain Wan config
        vae.register_to_config(**{VIDEO_LATENTS_KEY: cfg.video_latents})
    split_conv3d(vae)  # CPU training: 3D convolutions as sums of 2D ones (faster, same result)
    if cfg.freeze_encoder:
        vae.requires_grad_(False)
        vae.decoder.requires_grad_(True)
        vae.post_quant_conv.requires_grad_(True)
    return vae


def train_autoencoder(cfg: AutoencoderConfig) -> Path:
    """Train, compute latent statistics, evaluate and export; returns `<out>/vae`."""
    from tqdm.auto import tqdm

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    vae = _initial_vae(cfg)
    vae.train()
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng, gen = random.Random(f"mirage-vae-{cfg.seed}"), torch.Generator().manual_seed(cfg.seed)
    step = 0
    ckpts = list_checkpoints(out / CKPT_DIR)
    if cfg.resume and ckpts:
        step = _load_checkpoint(ckpts[-1], vae, opt, rng, gen)
    pool = _ClipPool(cfg, start=step // cfg.refresh_every)
    for _ in tqdm(range(min(cfg.pool_size, 8)), desc="render pool", disable=not cfg.progress):
        pool.refresh()
    probe = _render_clips(cfg, cfg.eval_seed + 1, 1) if cfg.eval_every else []
    t0 = time.monotonic()
    log = (out / "log.jsonl").open("a")
    bar = tqdm(total=cfg.max_steps, initial=step, desc="vae", disable=not cfg.progress)
    while step < cfg.max_steps:
        if cfg.max_minutes is not None and time.monotonic() - t0 > 60 * cfg.max_minutes:
            break
        if step % cfg.refresh_every == 0:
            pool.refresh()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        n_clips = cfg.clips_per_step if step % cfg.clip_every == 0 else 0
        clips, singles = pool.batch(rng, n_clips, cfg.clip_frames, cfg.singles_per_step)
        loss, l1 = 0.0, []
        for x in (clips, singles):
            if x is not None:
                li, l1i = _loss(vae, x, cfg, gen)
                loss = loss + li
                l1.append(float(l1i))  # host sync: once per step, for the log
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0:
            rec = {"step": step, "lr": lr_at(step - 1, cfg), "l1": l1, "grad_norm": float(gnorm)}
            rec["minutes"] = (time.monotonic() - t0) / 60
            log.write(json.dumps(rec) + "\n")
            log.flush()
            bar.set_postfix(l1=f"{sum(l1) / len(l1):.4f}")
        if step % cfg.eval_every == 0:
            vae.eval()
            image = reconstruction_psnr(vae, [c[:5] for c in probe], video=False)["image_psnr"]
            # the whole clip as one causal video too: how a generated chunk is decoded
            video = reconstruction_psnr(vae, probe, image=False)["video_psnr"]
            rec = {"step": step, "heldout_image_psnr": image, "heldout_video_psnr": video}
            if cfg.video_latents == "causal":  # keyframe latents are the image latents
                rec["heldout_tie"] = _probe_tie(vae, probe[0])
            vae.train()
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if step % cfg.checkpoint_every == 0:
            _save_checkpoint(out, vae, opt, step, cfg, rng, gen, cfg.keep_checkpoints)
    bar.close()
    _save_checkpoint(out, vae, opt, step, cfg, rng, gen, cfg.keep_checkpoints)
    vae.eval()
    path = export_vae(vae, cfg, out / "vae")
    scores = reconstruction_psnr(vae, _render_clips(cfg, cfg.eval_seed, cfg.eval_clips))
    scores.update(steps=step, config=asdict(cfg))
    write_json(out / "eval.json", scores)
    log.close()
    return path


def main(argv: list[str] | None = None) -> None:
    """`python -m mirage.training.autoencoder --out DIR [--max-steps N] [--max-minutes M] ...`."""
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in asdict(AutoencoderConfig(out="x")).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=default)
        elif default is None:
            p.add_argument(flag, type=str if name == "init" else float, default=None)
        else:
            p.add_argument(flag, type=type(default), default=default)
    cfg = AutoencoderConfig(**vars(p.parse_args(argv)))
    print(train_autoencoder(cfg))


if __name__ == "__main__":
    main()
