"""GenerationConfig: every knob of one `MiragePipeline.generate` call, with its default."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mirage.memory import FOOTPRINT, MEMORY_KINDS
from mirage.memory.latent import DEFAULT_SUBCELLS, FUSION_MODES, check_subcells
from mirage.models.step_cache import cache_config
from mirage.pipeline.chunks import check_context

REFERENCES = ("auto", "on", "off")  # when reference frames are retrieved

MEMORY_MODES = MEMORY_KINDS

# sampling options a model folder may set for "auto" (`mirage.json` "generation"), each with the
# value that turns it off (what "auto" means without a memory or a folder value)
SAMPLING_OFF = {"memory_guidance": 1.0, "readout_copy": 0.0}


@dataclass(frozen=True)
class GenerationConfig:
    chunk_frames: int = 33  # frames per chunk (4k + 1); later chunks add chunk_frames - 1 new
    num_inference_steps: int = 20  # flow UniPC steps per chunk
    shift: float = 5.0  # flow-matching timestep shift of the sampler (flow_shift)
    guidance_scale: float = 1.0  # classifier-free guidance; 1.0 = off (official default)
    context_latents: int = 2  # latents of the previous chunk carried as clean context (0..k)
    memory: str = "latent"  # "latent" (ours), "rgb" (point-cloud render + VAE), "none"
    voxel_size: float | str | None = FOOTPRINT  # "footprint" (bounded), world units, None
    # how a stored surface takes a new view: latest | mean | first; "auto" takes the model
    # folder's (`mirage.json` "generation": the fusion its latent branch was trained on), else mean
    fusion: str = "auto"
    # latent memory: r x r sub-cells per latent cell, read on an r-times finer grid and
    # averaged per cell (1 = one point per cell, the paper's read; docs/memory.md)
    subcells: int = DEFAULT_SUBCELLS
    memory_dtype: str = "bfloat16"  # storage dtype of the latent memory
    # Sky dome (not in the paper): pixels of depth +inf (sky) are stored this far away (world
    # units, or the memory's scale for up-to-scale depth) instead of dropped; None drops them;
    # "auto" takes the model folder's (`mirage.json` "generation"), else None.
    sky_distance: float | str | None = "auto"
    side_scale: float = 1.0  # weight of the side-branch hints
    # Memory guidance (not in the paper): in the cells the readout sees, each step's velocity
    # is pushed away from the one the model gives with an empty readout, v_empty + w (v -
    # v_empty); 1 = off; "auto" takes the model folder's (`mirage.json` "generation"), else 1.
    # One more transformer pass per guided step; sharper returns (docs/models.md).
    memory_guidance: float | str = "auto"
    # Memory guidance acts only on the steps whose noise level sigma is at most this (1 = every
    # step): the last, low-noise steps set the detail it adds (on mirage-tiny at 10 steps, 0.6
    # keeps the last two and its whole effect for 2 extra passes instead of 10; docs/models.md).
    memory_guidance_sigma: float = 1.0
    # Readout copy (not in the paper): each step's clean estimate is moved this fraction of the
    # way to the memory readout in the cells the readout sees (0 = off, 1 = the readout itself
    # there); "auto" takes the model folder's (`mirage.json` "generation"), else 0.
    readout_copy: float | str = "auto"
    seed: int = 0  # noise seed: same seed, same video on the same device
    fps: int = 16  # frame rate written to video.mp4
    # Reference-frame retrieval (mirage.pipeline.retrieval): past clean latents as extra clean
    # slots. "auto" = on for a side branch of the official profile (its inference always
    # retrieves), off otherwise; "on" / "off" force it.
    references: str = "auto"
    max_references: int = 4  # the official inference's max_reference_frames
    reference_iou: float = 0.04  # voxel IoU a past latent needs (the official threshold)
    reference_voxel: float = 0.1  # world units of the IoU voxels (official: 10 cm, metric)
    # Step cache of the main blocks while a chunk denoises (not in the paper): "off", or
    # "fbc" (diffusers' First Block Cache: later blocks skipped on a step whose first-block
    # residual changed by less than cache_threshold, relative). docs/models.md has the cost.
    cache: str = "off"
    cache_threshold: float = 0.05

    def __post_init__(self):
        check_context(self.context_latents, self.chunk_frames)
        if self.memory not in MEMORY_MODES:
            raise ValueError(f"`memory` must be one of {MEMORY_MODES}, got {self.memory!r}")
        if self.num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be >= 1, got {self.num_inference_steps}")
        if not self.shift > 0:
            raise ValueError(f"`shift` must be > 0, got {self.shift}")
        if self.guidance_scale < 1:
            raise ValueError(f"`guidance_scale` must be >= 1, got {self.guidance_scale}")
        w, copy = self.memory_guidance, self.readout_copy
        if w != "auto" and not (isinstance(w, int | float) and w >= 0):
            raise ValueError(f"`memory_guidance` must be 'auto' or >= 0, got {w!r}")
        if not 0 < self.memory_guidance_sigma <= 1:
            msg = f"`memory_guidance_sigma` must be in (0, 1], got {self.memory_guidance_sigma}"
            raise ValueError(msg)
        if copy != "auto" and not (isinstance(copy, int | float) and 0 <= copy <= 1):
            raise ValueError(f"`readout_copy` must be 'auto' or in [0, 1], got {copy!r}")
        for name, off in SAMPLING_OFF.items():
            if self.memory == "none" and getattr(self, name) not in ("auto", off):
                raise ValueError(f"`{name}` needs a memory to work with, got memory='none'")
        if self.fusion not in (*FUSION_MODES, "auto"):
            msg = f"`fusion` must be 'auto' or one of {FUSION_MODES}, got {self.fusion!r}"
            raise ValueError(msg)
        check_subcells(self.subcells)
        sky = self.sky_distance
        if sky not in (None, "auto") and not (isinstance(sky, int | float) and sky > 0):
            raise ValueError(f"`sky_distance` must be 'auto', > 0 or None, got {sky!r}")
        vs = self.voxel_size
        if vs not in (None, FOOTPRINT) and not (isinstance(vs, int | float) and vs > 0):
            raise ValueError(
                f"`voxel_size` must be {FOOTPRINT!r}, a positive number or None, got {vs!r}"
            )
        if self.references not in REFERENCES:
            raise ValueError(f"`references` must be one of {REFERENCES}, got {self.references!r}")
        if self.max_references < 1:
            raise ValueError(f"`max_references` must be >= 1, got {self.max_references}")
        if not 0 <= self.reference_iou <= 1:
            raise ValueError(f"`reference_iou` must be in [0, 1], got {self.reference_iou}")
        if not self.reference_voxel > 0:
            raise ValueError(f"`reference_voxel` must be > 0, got {self.reference_voxel}")
        cache_config(self.cache, self.cache_threshold)  # checks both
        if not isinstance(getattr(torch, self.memory_dtype, None), torch.dtype):
            raise ValueError(f"`memory_dtype` must name a torch dtype, got {self.memory_dtype!r}")


def _word_or_number(name: str, text: str | float | None, keep: str, off: str):
    """An option as typed: the word `keep` as is, the word `off` as None, else a number."""
    if text is None or isinstance(text, int | float) or text == keep:
        return text
    if text.lower() == off:
        return None
    try:
        return float(text)
    except ValueError:
        msg = f"`{name}` must be {keep!r}, {off!r} or a number, got {text!r}"
        raise ValueError(msg) from None


def parse_sky_distance(text: str | float | None) -> float | str | None:
    """`--sky-distance` as typed: "auto" (the model's), "off" (sky dropped) or world units."""
    return _word_or_number("sky_distance", text, "auto", "off")


def parse_voxel_size(text: str | float | None) -> float | str | None:
    """`--voxel-size` as typed: "footprint" (default), "none" (append) or a number of units."""
    return _word_or_number("voxel_size", text, FOOTPRINT, "none")


def _sampling(name: str, text: str | float | None) -> float | str:
    """A sampling option as typed: "auto" (the model's), "off" (its SAMPLING_OFF value) or a
    number."""
    value = _word_or_number(name, text, "auto", "off")
    return SAMPLING_OFF[name] if value is None else value


def parse_readout_copy(text: str | float | None) -> float | str:
    """`--readout-copy` as typed: "auto" (the model's), "off" (0) or a fraction in [0, 1]."""
    return _sampling("readout_copy", text)


def parse_memory_guidance(text: str | float | None) -> float | str:
    """`--memory-guidance` as typed: "auto" (the model's), "off" (1) or a weight >= 0."""
    return _sampling("memory_guidance", text)
