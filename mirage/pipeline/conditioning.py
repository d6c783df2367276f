"""What generation and training both build for a chunk, so a model trains on what it is given.

- the latent sequence of a chunk is [context | first frame | targets]; the context is the last
  `num_context` target latents of the previous chunk (`chunk_context`);
- the side-branch input reads the memory at the camera of every slot but the context slots,
  which carry nothing (zeros, mask False) (`side_condition`, profile `mirage`); converted
  checkpoints read what they were trained on: `official_condition` (readout + the encoded
  constant score video, context after the targets) and `spatia_condition` (encoded point-cloud
  render + encoded mask video); `score_latent` and `hold_video` build their videos;
- the write step turns what a chunk produced into one `Observation`, depth aligned to the
  memory when it is only known up to scale (`observation`).
"""

from __future__ import annotations

import torch

from mirage.geometry import Cameras
from mirage.memory import Observation, Readout, align_to_memory


def chunk_context(prev_targets: torch.Tensor, num_context: int) -> torch.Tensor:
    """The clean context of the next chunk: the last `num_context` of `prev_targets` [k,C,h,w]."""
    if num_context > len(prev_targets):
        raise ValueError(
            f"a context of {num_context} latents needs as many targets, got {len(prev_targets)}"
        )
    return prev_targets[len(prev_targets) - num_context :]


def side_condition(readout: Readout, num_context: int) -> torch.Tensor:
    """Side-branch input [C+1,F,h,w] for F = num_context + len(readout) slots, float32."""
    cond = readout.condition(torch.float32)  # [T,C+1,h,w]
    pad = cond.new_zeros(num_context, *cond.shape[1:])
    return torch.cat([pad, cond]).permute(1, 0, 2, 3).contiguous()


def observation(
    memory,
    frames: torch.Tensor,  # [T,3,H,W]
    latents: torch.Tensor,  # [T,C,h,w] clean image latents of `frames`
    depth: torch.Tensor,  # [T,H,W]
    cameras: Cameras,
    exclude: torch.Tensor | None,  # [T,H,W] bool
    metric_depth: bool,
    sky_distance: float | None = None,
) -> Observation:
    """The observation the loop inserts: up-to-scale depth scaled to what `memory` renders.

    Alignment uses only static, non-sky cells (`exclude`); the first observation of an empty
    memory fixes the scale. Metric depth is inserted as it is. With `sky_distance`, pixels of
    depth +inf (the sky) are put that far away, excluded or not (a mask's sky is what they
    are; dynamic objects have depth), so the memory keeps the sky as a far dome.
    """
    if not metric_depth:
        depth = align_to_memory(memory, depth, cameras, tuple(latents.shape[-2:]), exclude)
    if sky_distance is not None:
        depth, exclude = sky_dome(depth, exclude, sky_distance)
    return Observation(frames, latents, depth, cameras, exclude)


def sky_dome(depth: torch.Tensor, exclude: torch.Tensor | None, distance: float):
    """depth [T,H,W] with +inf replaced by `distance`; exclude [T,H,W] cleared there.

    A point that far stands for a direction: a camera that moves a few units sees it where a
    point at infinity would be, to a small fraction of a cell, and every surface hides it.
    """
    if not distance > 0:
        raise ValueError(f"`sky_distance` must be > 0, got {distance}")
    far = torch.isposinf(depth)
    depth = torch.where(far, torch.as_tensor(float(distance), dtype=depth.dtype), depth)
    return depth, None if exclude is None else exclude & ~far


def slot_timesteps(
    num_clean: int, num_noisy: int, t: float | torch.Tensor, device=None, num_after: int = 0
):
    """Per-latent-frame timesteps [F]: 0 for clean slots (references, context, first frame),
    t for targets, 0 for the `num_after` clean slots after them (the official context)."""
    t = torch.as_tensor(t, dtype=torch.float32, device=device)
    parts = [torch.zeros(num_clean, device=device), t.expand(num_noisy)]
    return torch.cat(parts + [torch.zeros(num_after, device=device)] * (num_after > 0))


def official_context(prev_slots: torch.Tensor, num_context: int) -> torch.Tensor:
    """The official preceding latents: the `num_context` slots of the previous chunk before its
    last one (which opens the next chunk), from prev_slots [k+1,C,h,w] (first + targets)."""
    if num_context >= len(prev_slots):
        raise ValueError(
            f"a context of {num_context} latents needs {num_context + 1} slots, "
            f"got {len(prev_slots)}"
        )
    return prev_slots[len(prev_slots) - 1 - num_context : len(prev_slots) - 1]


def score_latent(encode_video, num_slots: int, image_hw: tuple[int, int]) -> torch.Tensor:
    """[F,C,h,w]: the VAE latent of a constant "score" video of 4(F-1)+1 frames.

    The official code encodes a video of ones in the VAE's [-1, 1] input space, which is 1.0
    (white) in our [0, 1] frames; it stands where a visibility score would be.
    """
    H, W = image_hw
    return encode_video(torch.ones(4 * (num_slots - 1) + 1, 3, H, W))


def official_condition(
    readout: Readout,  # first frame + targets, [k+1] slots
    context_readout: Readout | None,  # what the context slots were read when generated
    score: torch.Tensor,  # [F,C,h,w] score_latent for F = k+1+P slots
) -> torch.Tensor:  # -> [2C,F,h,w], slots [first | targets | context]
    """Official side input: readout latents, context after the targets, + the score latent."""
    scene = [readout.latents.float()]
    if context_readout is not None:
        scene.append(context_readout.latents.float().to(scene[0].device))
    scene = torch.cat(scene)
    if score.shape != scene.shape:
        raise ValueError(
            f"`score` must be {tuple(scene.shape)} (one latent per slot), got {tuple(score.shape)}"
        )
    return torch.cat([scene, score.to(scene)], dim=1).permute(1, 0, 2, 3).contiguous()


def hold_video(images: torch.Tensor) -> torch.Tensor:
    """[F,c,H,W] one image per latent slot -> [4(F-1)+1,c,H,W]: slot 0 once, every later slot
    held for the 4 frames its latent covers (renders exist at the slot cameras only)."""
    return torch.cat([images[:1], images[1:].repeat_interleave(4, dim=0)])


def spatia_condition(
    encode_video,
    images: torch.Tensor,  # [F,3,H,W] point-cloud renders in [0,1] (0 where empty), F slots
    covered: torch.Tensor,  # [F,1,H,W] bool: a point was rendered there
) -> torch.Tensor:  # -> [2C,F,h,w]
    """Spatia side input: the encoded render video and the encoded mask video.

    Spatia feeds its mask to the VAE in [0, 1] (not [-1, 1]): mask m is the frame value
    (m + 1) / 2 in our [0, 1] convention, so covered pixels are 1.0 and holes 0.5.
    """
    if images.shape[0] != covered.shape[0] or covered.shape[1] != 1:
        raise ValueError(
            f"`covered` must be [F,1,H,W] for images {tuple(images.shape)}, got "
            f"{tuple(covered.shape)}"
        )
    rgb = encode_video(hold_video(images.float()))
    mask = encode_video(hold_video((covered.float() + 1) / 2).expand(-1, 3, -1, -1))
    return torch.cat([rgb, mask], dim=1).permute(1, 0, 2, 3).contiguous()
