"""The go-and-return protocol of the demo and of `benchmarks/tiny_quality.py`.

A `loop` trajectory flies out along a preset and back along the same poses; the model
generates it once per memory mode from the same first frame and noise, and each run is scored
against ground truth and against itself (closed loop: a return frame against the frame
generated at the same pose on the way out).
"""

from __future__ import annotations

import time

import torch

HELDOUT_SEEDS = range(900_000, 901_000)  # scene seeds for demos and evaluation, never trained on
MODES = ("latent", "rgb", "none")


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
    with the generated outbound frame at the same pose.
    """
    from mirage.eval.metrics import psnr, ssim
    from mirage.eval.plans import closed_loop_plan

    if frames.shape != gt.shape:
        raise ValueError(f"`frames` {tuple(frames.shape)} and `gt` {tuple(gt.shape)} differ")
    N = len(frames)
    p, s = psnr(frames[1:], gt[1:]).per_frame, ssim(frames[1:], gt[1:]).per_frame
    pairs = closed_loop_plan(N).pairs
    ret = torch.tensor([j - 1 for j, _ in pairs])
    cl = psnr(frames[[j for j, _ in pairs]], frames[[i for _, i in pairs]]).per_frame
    return {
        "frames": list(range(1, N)),
        "psnr": p.tolist(),
        "ssim": s.tolist(),
        "psnr_mean": float(p.mean()),
        "ssim_mean": float(s.mean()),
        "psnr_return_mean": float(p[ret].mean()),
        "ssim_return_mean": float(s[ret].mean()),
        "closed_loop_pairs": [list(x) for x in pairs],
        "closed_loop_psnr": cl.tolist(),
        "closed_loop_psnr_mean": float(cl.mean()),
    }


def run_loop(pipe, cameras, gt: torch.Tensor, steps: int, chunk_frames: int, seed: int,
             modes=MODES, progress: bool = True) -> dict:  # fmt: skip
    """Generate the loop with each memory mode; returns mode -> dict(frames, metrics).

    `pipe` already holds the scene's depth provider; gt [N,3,H,W] are its rendered frames."""
    from mirage.pipeline import GenerationConfig
    from mirage.pipeline.world_model import STAGES

    out = {}
    for mode in modes:
        cfg = GenerationConfig(
            chunk_frames=chunk_frames, num_inference_steps=steps, memory=mode, seed=seed
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
        out[mode] = {"frames": result.frames, "metrics": metrics}
    return out
