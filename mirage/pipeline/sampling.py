"""Denoise the target latents of one chunk with flow UniPC, clean slots held fixed."""

from __future__ import annotations

import contextlib
import copy

import torch
from tqdm.auto import tqdm

from mirage.models.step_cache import step_cache
from mirage.pipeline.conditioning import slot_timesteps


@torch.no_grad()
def sample_chunk(
    transformer,
    scheduler,
    clean: torch.Tensor,  # [Fc,C,h,w] context + first-frame latents (timestep 0)
    noise: torch.Tensor,  # [Ft,C,h,w] initial noise of the target slots
    text: torch.Tensor,  # [1,L,D] prompt embedding
    condition: torch.Tensor | None,  # [C+1,Fc+Ft,h,w] side-branch input, None = no branch
    num_steps: int,
    guidance_scale: float = 1.0,
    null_text: torch.Tensor | None = None,  # [1,L',D] for classifier-free guidance
    side_scale: float = 1.0,
    progress: bool = False,
    *,
    after: torch.Tensor | None = None,  # [Fa,C,h,w] clean slots after the targets (official)
    num_ref: int = 0,  # the first num_ref slots of `clean` are retrieved references
    cache: str = "off",  # step cache of the main blocks (mirage.models.step_cache.CACHE_MODES)
    cache_threshold: float = 0.05,  # its threshold (First Block Cache: relative residual change)
    memory_guidance: float = 1.0,  # w, seen cells: v(empty) + w (v(readout) - v(empty)); 1 = off
    memory_guidance_sigma: float = 1.0,  # guide only the steps of noise level sigma <= this
    readout_copy: float = 0.0,  # c: each clean estimate moved c of the way to the readout; 0 = off
) -> torch.Tensor:  # -> [Ft,C,h,w] denoised target latents (float32)
    sched = copy.deepcopy(scheduler)  # UniPC keeps solver history: one fresh copy per chunk
    sched.set_timesteps(num_steps, device=noise.device)
    dtype = transformer.dtype
    Fc, Ft = len(clean), len(noise)
    tail = [] if after is None or len(after) == 0 else [after.float()]
    Fa = sum(len(a) for a in tail)
    readout = None if condition is None else condition[None].to(dtype)  # [1,Cin,F-R,h,w]
    guided = readout is not None and memory_guidance != 1.0
    empty = torch.zeros_like(readout) if guided else None  # what a cell never seen reads
    copies = readout is not None and readout_copy != 0.0
    if guided or copies:  # both act on the target cells the readout sees
        target, seen = _target_readout(condition, Fc - num_ref, Ft)
    slots = (side_scale, Fc, Ft, num_ref)  # the same for every pass
    x = noise.float() * getattr(sched, "init_noise_sigma", 1.0)
    with step_cache(transformer, cache, cache_threshold):  # fresh per chunk, off after it
        steps = tqdm(sched.timesteps, desc="denoise", leave=False, disable=not progress)
        for i, t in enumerate(steps):
            latents = torch.cat([clean.float(), x, *tail]).permute(1, 0, 2, 3)[None].to(dtype)
            timestep = slot_timesteps(Fc, Ft, t, noise.device, Fa)[None]  # [1,F]
            at = (latents, timestep)
            v = _velocity(transformer, "cond", text, *at, readout, *slots)
            if guidance_scale > 1.0:
                v_null = _velocity(transformer, "uncond", null_text, *at, readout, *slots)
                v = v_null + guidance_scale * (v - v_null)
            sigma = float(sched.sigmas[i])
            if guided and sigma <= memory_guidance_sigma:
                # where the memory sees: away from what the model makes without it
                v_empty = _velocity(transformer, "empty", text, *at, empty, *slots)
                v = v_empty + (1 + (memory_guidance - 1) * seen) * (v - v_empty)
            if copies:
                v = copy_readout(v, x, sigma, target, readout_copy * seen)
            x = sched.step(v, t, x).prev_sample
    return x


def _velocity(transformer, name, text, latents, timestep, readout, side_scale, Fc, Ft, num_ref):
    kw = {"side_scale": side_scale} | ({"num_ref": num_ref} if num_ref else {})
    cached = getattr(transformer, "is_cache_enabled", False)  # cond / uncond: own residuals
    with transformer.cache_context(name) if cached else contextlib.nullcontext():
        out = transformer(latents, timestep, text.to(latents.dtype), readout, **kw)
    return out[0, :, Fc : Fc + Ft].permute(1, 0, 2, 3).float()  # [Ft,C,h,w]


def _target_readout(condition, start: int, Ft: int):
    """Readout latents [Ft,C,h,w] and visibility mask [Ft,1,h,w] (float) of the target slots
    of a mirage-profile side input [C+1,F,h,w] (latents, then the mask)."""
    target = condition[:-1, start : start + Ft].permute(1, 0, 2, 3).float()
    return target, condition[-1:, start : start + Ft].permute(1, 0, 2, 3).float()


def copy_readout(v, x, sigma: float, target, weight):
    """Readout copy (not in the paper): the flow velocity (x - x0') / sigma whose clean
    estimate is x0' = x0 + weight (target - x0), x0 = x - sigma v being the model's, per cell.
    Where the memory sees a surface the answer is in the readout; the model alone copies it
    1-1.5 dB short of the readout decoded on its own (mirage-tiny's model card)."""
    return v - weight * (target - (x - sigma * v)) / sigma
