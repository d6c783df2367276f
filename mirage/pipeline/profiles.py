"""What one chunk feeds the transformer under each conditioning profile, references included.

`ChunkConditioner` is made once per generation for the transformer's profile and asked, chunk
by chunk, for the latent sequence and the side input (`prepare`), then told what was written
(`written`). Layouts of the latent frames (R retrieved references, P context latents):

- `mirage`:   [refs | context | first | targets], side input over [context | first | targets]
  (`side_condition`: readout + mask, context slots empty); references only when asked for.
- `official`: [refs | first | targets | context], side input over [first | targets | context]
  (`official_condition`: readout + score latent, the context slots carrying the readout they
  were generated with); the context is the P latents before the previous chunk's last one.
- `spatia`:   [refs | context | first | targets], side input over [context | first | targets]
  (`spatia_condition`: renders of the RGB point cloud at every slot camera and their masks).

With references off and the `mirage` profile the sequence and side input are exactly the
ones the loop built before profiles existed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mirage.geometry import Cameras
from mirage.memory import Readout
from mirage.pipeline.conditioning import (
    chunk_context,
    official_condition,
    official_context,
    score_latent,
    side_condition,
    spatia_condition,
)
from mirage.pipeline.config import REFERENCES
from mirage.pipeline.retrieval import ReferenceBank


def references_on(setting: str, profile: str) -> bool:
    """`auto` retrieves references for the official profile only (its inference always does)."""
    if setting not in REFERENCES:
        raise ValueError(f"`references` must be one of {REFERENCES}, got {setting!r}")
    return setting == "on" or (setting == "auto" and profile == "official")


@dataclass
class ChunkInputs:
    clean: torch.Tensor  # [Fc,C,h,w] clean slots before the targets: refs, (context), first
    after: torch.Tensor | None  # [Fa,C,h,w] clean slots after the targets (official context)
    condition: torch.Tensor  # [Cin,F-R,h,w] the profile's side input
    num_ref: int  # R, the leading slots of `clean` that are references
    references: list[int]  # which written latents they are (0 = the first frame)


class ChunkConditioner:
    """Per-generation state the profiles need: references, previous slots, the score latent."""

    def __init__(self, profile: str, config, vae, image_hw: tuple[int, int]):
        if profile == "spatia" and config.memory != "rgb":
            raise ValueError(
                "a side branch of profile 'spatia' reads renders of an RGB point cloud: "
                f"generate with memory='rgb', got memory={config.memory!r}"
            )
        refs = references_on(config.references, profile)
        if refs and config.memory == "none":
            raise ValueError("reference retrieval needs a memory's points: memory='none' has none")
        self.profile, self.config, self.vae, self.image_hw = profile, config, vae, image_hw
        self.bank = (
            ReferenceBank(config.reference_iou, config.reference_voxel, config.max_references)
            if refs
            else None
        )
        self.prev_slots = self.prev_readout = self.prev_cameras = None
        self._scores: dict[int, torch.Tensor] = {}

    def prepare(self, memory, cameras, num_context, first, prev_targets, readout) -> ChunkInputs:
        """The chunk's latent sequence and side input; `readout` is the memory at `cameras`
        (the slot cameras), `first` [1,C,h,w] slot 0, `prev_targets` the last chunk's targets."""
        refs, picked = first[:0], []
        # From the second chunk on (the first frame alone would only repeat slot 0, and the
        # official inference records its candidates after the first chunk too)
        if self.bank is not None and self.prev_slots is not None:
            picked = self.bank.select(cameras, memory.positions)  # all slots, as the official
            refs = self.bank.stack(picked).to(first) if picked else refs
        if self.profile == "official":
            return self._official(num_context, first, readout, refs, picked)
        context = chunk_context(prev_targets, num_context)
        if self.profile == "spatia":
            cond = self._spatia(memory, cameras, num_context)
        else:
            cond = side_condition(readout, num_context)
        clean = torch.cat([refs, context, first])
        return ChunkInputs(clean, None, cond, len(refs), picked)

    def _official(self, n, first, readout, refs, picked) -> ChunkInputs:
        context, ctx_readout = first[:0], None
        if n:
            context = official_context(self.prev_slots, n)
            last = len(self.prev_slots) - 1
            ctx_readout = Readout(*(x[last - n : last] for x in _fields(self.prev_readout)))
        cond = official_condition(readout, ctx_readout, self._score(len(readout.latents) + n))
        return ChunkInputs(torch.cat([refs, first]), context, cond, len(refs), picked)

    def _score(self, num_slots: int) -> torch.Tensor:
        if num_slots not in self._scores:  # constant per slot count: encoded once
            encode = self.vae.encode_video
            self._scores[num_slots] = score_latent(encode, num_slots, self.image_hw)
        return self._scores[num_slots]

    def _spatia(self, memory, cameras, n) -> torch.Tensor:
        if n:
            cameras = Cameras.cat([self.prev_cameras[len(self.prev_cameras) - n :], cameras])
        images, covered, _ = memory.render(cameras)
        return spatia_condition(self.vae.encode_video, images, covered)

    def finished(self, slots, readout, cameras) -> None:
        """After a chunk: its k+1 slot latents, its readout and slot cameras (next context)."""
        self.prev_slots, self.prev_readout, self.prev_cameras = slots, readout, cameras

    def written(self, latents, cameras, memory) -> None:
        """Latents [T,C,h,w] just written at `cameras`: candidates for later references."""
        if self.bank is not None:
            self.bank.add(latents, cameras, memory.positions)


def _fields(readout: Readout):
    return readout.latents, readout.mask, readout.depth
