"""Flow-matching loss on the target slots of a chunk (clean context and first frame excluded).

sigma = shift u / (1 + (shift - 1) u) with u ~ U(0, 1) ("uniform", the default) or
u = sigmoid(n), n ~ N(0, 1) ("logit_normal"); x_t = (1 - sigma) x0 + sigma noise on the target
slots; the model sees timestep sigma * 1000 on target slots and 0 on clean slots (exactly the
per-slot timesteps generation uses, `slot_timesteps`) and predicts the velocity noise - x0;
the loss is the MSE on the target slots only. A prompt is dropped (replaced by the all-zero
null embedding) with probability `prompt_dropout`; a sample's side-branch input with
probability `readout_dropout` (replaced by the empty readout, what a never-seen cell reads:
zero latents, mask off), so that "no memory" is a condition the branch was trained on, as the
null prompt is for the text.
"""

from __future__ import annotations

import torch

from mirage.pipeline.conditioning import slot_timesteps

TIMESTEP_SAMPLING = ("uniform", "logit_normal")


def shift_sigma(u: torch.Tensor, shift: float) -> torch.Tensor:
    """Wan's timestep shift: shift u / (1 + (shift - 1) u) (identity for shift 1)."""
    return shift * u / (1 + (shift - 1) * u)


def sample_sigmas(
    batch_size: int, shift: float, sampling: str, generator: torch.Generator
) -> torch.Tensor:  # -> [B] in (0, 1)
    if sampling == "uniform":
        u = torch.rand(batch_size, generator=generator)
    elif sampling == "logit_normal":
        u = torch.sigmoid(torch.randn(batch_size, generator=generator))
    else:
        raise ValueError(f"`sampling` must be one of {TIMESTEP_SAMPLING}, got {sampling!r}")
    return shift_sigma(u, shift)


def flow_matching_loss(
    model,
    batch: dict,
    generator: torch.Generator,
    shift: float = 5.0,
    sampling: str = "uniform",
    prompt_dropout: float = 0.1,
    autocast=None,
    parts: dict | None = None,
    readout_dropout: float = 0.0,
) -> torch.Tensor:  # -> scalar float32
    """MSE of the predicted velocity on the target slots of `batch` (see `collate`).

    Random draws (sigma, noise, dropout) come from the CPU `generator`, so a seed gives the
    same loss on every device. `autocast` is a context-manager factory (e.g. accelerator's).
    `readout_dropout` empties whole samples' side inputs (the draw comes after the others).
    A `parts` dict receives the copy-fidelity split (detached): `covered` / `uncovered`, the
    MSE on target cells the memory readout sees / does not see (NaN where there are none).
    On covered cells the answer is in the readout, so `covered` falling far below
    `uncovered` is the model learning to copy.
    """
    x0 = batch["latents"]  # [B,C,F,h,w] clean
    dev = x0.device
    B, C, F, h, w = x0.shape
    nc = batch["num_clean"]
    Ft = F - nc
    sigma = sample_sigmas(B, shift, sampling, generator)
    noise = torch.randn(B, C, Ft, h, w, generator=generator).to(dev)
    keep = (torch.rand(B, generator=generator) >= prompt_dropout).float()
    sigma, keep = sigma.to(dev), keep.to(dev)
    condition = batch["condition"]
    if readout_dropout > 0:  # drawn last: a run without it keeps the draws it always had
        seen = (torch.rand(B, generator=generator) >= readout_dropout).to(dev, condition.dtype)
        condition = condition * seen.view(B, 1, 1, 1, 1)

    x0_t = x0[:, :, nc:]
    s = sigma.view(B, 1, 1, 1, 1)
    latents = torch.cat([x0[:, :, :nc], (1 - s) * x0_t + s * noise], dim=2)
    timestep = torch.stack([slot_timesteps(nc, Ft, 1000 * sb, dev) for sb in sigma])  # [B,F]
    text = batch["text"] * keep.view(B, 1, 1)  # dropped prompt = zero (null) embedding
    if autocast is None:
        pred = model(latents, timestep, text, condition)
    else:
        with autocast():
            pred = model(latents, timestep, text, condition)
    err = (pred[:, :, nc:].float() - (noise - x0_t)).pow(2)
    if parts is not None:
        cells = condition[:, -1:, nc:].bool().expand_as(err)  # visibility mask slots
        parts["covered"] = err.detach()[cells].mean()
        parts["uncovered"] = err.detach()[~cells].mean()
    return err.mean()
