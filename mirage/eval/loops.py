"""The go-and-return protocol of the demo and of `benchmarks/tiny_quality.py`.

A `loop` trajectory flies out along a preset and back along the same poses; the model
generates it once per memory mode from the same first frame and noise, and each run is scored
against ground truth and against itself (closed loop: a return frame against the frame
generated at the same pose on the way out).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

HELDOUT_SEEDS = range(900_000, 901_000)  # scene seeds for demos and evaluation, never trained on
MODES = ("latent", "rgb", "none")
PSNR_CAP = 60.0  # dB: the score of a baseline frame identical to its target


def loop_cameras(scene, height: int, width: int, frames: int, path: str, degrees: float):
    """Cameras of a go-and-return loop from the scene's start camera: out along `path`, back."""
    from mirage.data.trajectories import make_trajectory

    start = scene.start_camera(height, width)
    kwargs = {"degrees": degrees} if path in ("pan_left", "pan_right", "orbit") else {}
    return make_trajectory("loop", start, frames, path=path, **kwargs)


def loop_metrics(frames: torch.Tensor, gt: torch.Tensor) -> dict:
    """Scores of one generated loop frames [N,3,H,W] against ground truth gt [N,3,H,W].

    Frame 0 is the given image and is left out. PSNR/SSIM per frame 1..N-1; the return frames
    are those of the way back (closed_loop_plan); closed-loop PSNR compares each return frame
    with the generated outbound frame at the same pose (its twin). "psnr_twins_mean" scores the
    generated twins against ground truth and "psnr_return_twinned_mean" their return frames:
    a memory that gave the twins back exactly would score the first on those return frames
    (likewise "contrast_ratio_twins_mean" and "contrast_ratio_return_twinned_mean").
    """
    from mirage.eval.metrics import psnr, ssim
    from mirage.eval.plans import closed_loop_plan

    if frames.shape != gt.shape:
        raise ValueError(f"`frames` {tuple(frames.shape)} and `gt` {tuple(gt.shape)} differ")
    N = len(frames)
    p, s = psnr(frames[1:], gt[1:]).per_frame, ssim(frames[1:], gt[1:]).per_frame
    plan = closed_loop_plan(N)
    pairs = plan.pairs
    ret = torch.tensor([j - 1 for j, _ in pairs])
    back = [j - 1 for j, _ in plan.twinned]  # return frames whose twin was generated
    twins = [i - 1 for _, i in plan.twinned]
    cl = psnr(frames[[j for j, _ in pairs]], frames[[i for _, i in pairs]]).per_frame
    contrast = contrast_ratio(frames[1:], gt[1:])
    return {
        "frames": list(range(1, N)),
        "psnr": p.tolist(),
        "ssim": s.tolist(),
        "psnr_mean": float(p.mean()),
        "ssim_mean": float(s.mean()),
        "psnr_return_mean": float(p[ret].mean()),
        "ssim_return_mean": float(s[ret].mean()),
        # the loop's last frame is at frame 0's pose, fully seen: pure memory recall
        "psnr_last": float(p[-1]),
        # the way back is bounded by what the model generated on the way out: a memory that
        # recalls its own outbound frames perfectly scores their PSNR ("twins") there
        "psnr_return_twinned_mean": float(p[back].mean()),
        "psnr_twins_mean": float(p[twins].mean()),
        "closed_loop_pairs": [list(x) for x in pairs],
        "closed_loop_psnr": cl.tolist(),
        "closed_loop_psnr_mean": float(cl.mean()),
        # a blurred or frozen video can score well in closed loop; its contrast cannot
        "contrast_ratio": contrast.tolist(),
        "contrast_ratio_mean": float(contrast.mean()),
        "contrast_ratio_return_mean": float(contrast[ret].mean()),
        "contrast_ratio_return_twinned_mean": float(contrast[back].mean()),
        "contrast_ratio_twins_mean": float(contrast[twins].mean()),
    }


def contrast_ratio(frames: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:  # -> [T]
    """Per frame: spatial standard deviation of `frames` over that of `gt` (channel mean)."""
    std = frames.float().std(dim=(2, 3)).mean(1)
    return std / gt.float().std(dim=(2, 3)).mean(1).clamp(min=1e-6)


def trivial_baselines(gt: torch.Tensor, vae, chunk_frames: int | None = None) -> dict:
    """What a model must beat on this loop, scored like `loop_metrics` (frames 1..N-1):

    a flat image of frame 0's mean colour, a copy of frame 0, and the VAE's own
    reconstruction of the ground truth: of each frame alone (image latents) and, with
    `chunk_frames`, of each chunk as one causal video (the latents a model generates: the
    ceiling no model passes, in PSNR and in contrast). Per-frame PSNR is capped at
    `PSNR_CAP`; each entry keeps it per frame ("psnr") and the contrast ratio of the return
    frames (a flat image has 0).
    """
    from mirage.eval.metrics import psnr
    from mirage.eval.plans import closed_loop_plan

    target = gt[1:]
    plan = closed_loop_plan(len(gt))
    ret = torch.tensor([j - 1 for j, _ in plan.pairs])
    back = [j - 1 for j, _ in plan.twinned]  # loop_metrics' "return twinned" frames
    candidates = {
        "flat_colour": gt[:1].mean(dim=(2, 3), keepdim=True).expand_as(target),
        "copy_first_frame": gt[:1].expand_as(target),
        "vae_ceiling": vae.decode_images(vae.encode_images(target)).cpu(),
    }
    if chunk_frames is not None:
        candidates["vae_video_ceiling"] = video_round_trip(vae, gt, chunk_frames)[1:]
    out = {}
    for name, frames in candidates.items():
        # an exact copy scores +inf (the loop's last pose is frame 0's): cap at 60 dB, beyond
        # what 8-bit rounding alone leaves, so means stay finite and honest
        per_frame = psnr(frames.contiguous(), target).per_frame.clamp(max=PSNR_CAP)
        contrast = contrast_ratio(frames[ret], target[ret])
        out[name] = {"psnr": per_frame.tolist(), "psnr_mean": float(per_frame.mean()),
                     "psnr_return_mean": float(per_frame[ret].mean()),
                     "psnr_return_twinned_mean": float(per_frame[back].mean()),
                     "psnr_last": float(per_frame[-1]),
                     "contrast_return_mean": float(contrast.mean())}  # fmt: skip
    return out


@torch.no_grad()
def video_round_trip(vae, frames: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    """frames [N,3,H,W] through the VAE chunk by chunk as generation cuts them (chunk c =
    frames c (F - 1) .. c (F - 1) + F - 1, one causal video each; a shared frame is taken
    from the later chunk, as the loop keeps it)."""
    from mirage.pipeline.chunks import plan_chunks

    out = frames.clone()
    for c in plan_chunks(len(frames), chunk_frames):
        out[c.start : c.stop] = vae.decode(vae.encode_video(frames[c.start : c.stop])).cpu()
    return out


def readout_alone(result, vae, gt: torch.Tensor) -> dict:
    """The memory readout each target slot was given, decoded by the VAE with no model.

    Scored at the latent-aligned frames it stands for (start + 4m); returns the frames
    [M,3,H,W], their indices, the masks [M,1,h,w] and the PSNR against `gt` there.
    """
    from mirage.eval.metrics import psnr

    chunks = result.metadata["chunks"]
    index, latents, masks = [], [], []
    for chunk, readout in zip(chunks, result.readouts, strict=True):
        index += chunk["latent_frames"][1:]
        latents.append(readout.latents[1:].float())
        masks.append(readout.mask[1:])
    frames = vae.decode_images(torch.cat(latents)).cpu()
    score = psnr(frames, gt[index]).per_frame
    return {"frames": frames, "index": index, "mask": torch.cat(masks), "psnr": score}


def run_loop(pipe, cameras, gt: torch.Tensor, steps: int, chunk_frames: int, seed: int,
             modes=MODES, progress: bool = True, memory_guidance="auto",
             sky_distance="auto", readout_copy="auto",
             memory_guidance_sigma=1.0) -> dict:  # fmt: skip
    """Generate the loop with each memory mode; returns mode -> dict(frames, metrics).

    `pipe` already holds the scene's depth provider; gt [N,3,H,W] are its rendered frames.
    `memory_guidance` (with `memory_guidance_sigma`) and `readout_copy` apply to every mode
    that has a memory; all are GenerationConfig's ("auto": the model folder's)."""
    from mirage.pipeline import GenerationConfig
    from mirage.pipeline.world_model import STAGES

    out = {}
    for mode in modes:
        cfg = GenerationConfig(
            chunk_frames=chunk_frames,
            num_inference_steps=steps,
            memory=mode,
            seed=seed,
            memory_guidance=1.0 if mode == "none" else memory_guidance,
            memory_guidance_sigma=memory_guidance_sigma,
            readout_copy=0.0 if mode == "none" else readout_copy,
            sky_distance=sky_distance,
        )
        t0 = time.perf_counter()
        result = pipe.generate(gt[0], cameras, config=cfg, progress=progress)
        wall = time.perf_counter() - t0
        metrics = loop_metrics(result.frames, gt)
        init = result.metadata.get("init_seconds", {})
        seconds = {st: init.get(st, 0.0) + sum(t.get(st, 0.0) for t in result.timings)
                   for st in STAGES}  # fmt: skip
        metrics["seconds"] = seconds
        metrics["seconds_total"] = wall
        metrics["cache_mib_per_chunk"] = [t["cache_bytes"] / 2**20 for t in result.timings]
        branch = result.metadata.get("branch")  # the side-branch file this mode ran with
        metrics["side_branch"] = None if branch is None else Path(branch).name
        entry = {"frames": result.frames, "metrics": metrics}
        if mode != "none":
            alone = readout_alone(result, pipe.vae, gt)
            entry["readout"] = alone
            metrics["readout_psnr_mean"] = float(alone["psnr"].mean())
            metrics["readout_frames"] = alone["index"]
            mine = metrics["psnr"]  # frames 1..N-1
            metrics["model_psnr_at_readout_frames"] = float(
                torch.tensor([mine[i - 1] for i in alone["index"]]).mean()
            )
        out[mode] = entry
    return out
