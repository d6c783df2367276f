"""Denoise the target latents of one chunk with flow UniPC, clean slots held fixed."""

from __future__ import annotations

import copy

import torch
from tqdm.auto import tqdm

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
) -> torch.Tensor:  # -> [Ft,C,h,w] denoised target latents (float32)
    sched = copy.deepcopy(scheduler)  # UniPC keeps solver history: one fresh copy per chunk
    sched.set_timesteps(num_steps, device=noise.device)
    dtype = transformer.dtype
    Fc, Ft = len(clean), len(noise)
    readout = None if condition is None else condition[None].to(dtype)  # [1,C+1,F,h,w]
    x = noise.float() * getattr(sched, "init_noise_sigma", 1.0)
    for t in tqdm(sched.timesteps, desc="denoise", leave=False, disable=not progress):
        latents = torch.cat([clean.float(), x]).permute(1, 0, 2, 3)[None].to(dtype)  # [1,C,F,h,w]
        timestep = slot_timesteps(Fc, Ft, t, noise.device)[None]  # [1,F]
        v = _velocity(transformer, latents, timestep, text, readout, side_scale, Fc)
        if guidance_scale > 1.0:
            v_null = _velocity(transformer, latents, timestep, null_text, readout, side_scale, Fc)
            v = v_null + guidance_scale * (v - v_null)
        x = sched.step(v, t, x).prev_sample
    return x


def _velocity(transformer, latents, timestep, text, readout, side_scale, Fc):
    out = transformer(latents, timestep, text.to(latents.dtype), readout, side_scale=side_scale)
    return out[0, :, Fc:].permute(1, 0, 2, 3).float()  # [Ft,C,h,w]
