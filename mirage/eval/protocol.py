"""The evaluation protocols: which frames seed the memory, which are scored, and the runners.

Two protocols, documented with worked examples in docs/eval.md:

* Novel views (`nvs_plan`, `evaluate_nvs`): the first `num_context` ground-truth frames of a
  clip are given to the model (they seed the memory); it generates the whole clip along the
  ground-truth cameras; frames `num_context, num_context + target_stride, ...` are scored
  against ground truth (PSNR, SSIM, LPIPS).
* Closed loop (`closed_loop_plan`, `evaluate_closed_loop`): a go-and-return trajectory of n
  frames is palindromic, pose(j) = pose(n - 1 - j): outbound on frames 0 .. ceil(n/2) - 1,
  back along the same path after that. Each return frame j is compared with the frame the
  model generated at the same pose on the way out, n - 1 - j (the "_C" consistency metrics),
  and with ground truth.

The runners take a generation callable, so any model (or a stand-in) can be evaluated:

    generate_fn(context_frames [C,3,H,W], cameras: Cameras of T views) -> video [T,3,H,W]

returning all T frames in [0, 1] (the context positions included; they are not scored).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mirage.atomic import write_json
from mirage.data.video import write_png
from mirage.eval.lpips import LPIPS, MetricUnavailable
from mirage.eval.metrics import psnr, ssim
from mirage.eval.plans import (
    LoopPlan,
    NVSPlan,
    closed_loop_plan,
    loop_source_indices,
    nvs_plan,
    sample_clip_indices,
)
from mirage.eval.report import contact_sheet, write_csv
from mirage.geometry import Cameras

PSNR_CAP_DB = 100.0  # per-frame PSNR is capped here in tables (an exact match has PSNR = inf)
LOOP_POSE_TOLERANCE = 1e-3  # max |c2w[j] - c2w[n-1-j]| entry for a trajectory to count as a loop

GenerateFn = Callable[[torch.Tensor, Cameras], torch.Tensor]
METRICS = {
    "nvs": ["psnr", "ssim", "lpips"],
    "closed_loop": ["psnr_c", "ssim_c", "lpips_c", "psnr", "ssim", "lpips"],
}
COLUMNS = {
    "nvs": ["clip", "num_targets", *METRICS["nvs"]],
    "closed_loop": ["clip", "num_pairs", *METRICS["closed_loop"]],
}


@dataclass(frozen=True)
class EvalClip:
    """A ground-truth clip: frames [T,3,H,W] in [0, 1] and their T cameras."""

    name: str
    frames: torch.Tensor
    cameras: Cameras


# --- runners ----------------------------------------------------------------------------


def pipeline_generate_fn(pipeline, config=None, prompt: str | None = None) -> GenerateFn:
    """A `generate_fn` from an object with `generate(image, cameras, prompt=, config=,
    progress=)` returning `.frames` [T,3,H,W] (MiragePipeline); uses one context frame."""

    def generate(context: torch.Tensor, cameras: Cameras) -> torch.Tensor:
        if len(context) != 1:
            raise ValueError(f"the pipeline takes one context frame, got {len(context)}")
        out = pipeline.generate(context[0], cameras, prompt=prompt, config=config, progress=False)
        return out.frames

    return generate


class _Scorer:
    """PSNR / SSIM / LPIPS of frame sets; LPIPS is None (with the reason) when unavailable."""

    def __init__(self, lpips_backbone=None, lpips_heads=None):
        try:
            self.lpips = LPIPS(lpips_backbone, lpips_heads)
            self.lpips_note = None
        except MetricUnavailable as e:
            self.lpips, self.lpips_note = None, str(e)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> dict:
        p = psnr(pred, target).per_frame.clamp(max=PSNR_CAP_DB)
        out = {"psnr": float(p.mean()), "ssim": ssim(pred, target).mean, "lpips": None}
        if self.lpips is not None:
            out["lpips"] = float(self.lpips.to(pred.device)(pred, target).mean())
        return out


def _check_clip(clip, i: int) -> tuple[str, torch.Tensor, Cameras]:
    frames, cameras = getattr(clip, "frames", None), getattr(clip, "cameras", None)
    name = str(getattr(clip, "name", f"clip{i:04d}"))
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"clip {name}: `frames` must be a tensor [T,3,H,W], got {type(frames)}")
    if not isinstance(cameras, Cameras) or len(cameras) != len(frames):
        raise ValueError(f"clip {name}: `cameras` must be Cameras with one view per frame")
    if (cameras.height, cameras.width) != tuple(frames.shape[-2:]):
        raise ValueError(
            f"clip {name}: cameras are for {cameras.height}x{cameras.width} images, frames are "
            f"{frames.shape[-2]}x{frames.shape[-1]}"
        )
    return name, frames, cameras


def _generate(generate_fn: GenerateFn, context, cameras: Cameras, name: str) -> torch.Tensor:
    video = generate_fn(context, cameras)
    expected = (len(cameras), 3, cameras.height, cameras.width)
    if not isinstance(video, torch.Tensor) or tuple(video.shape) != expected:
        got = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"clip {name}: `generate_fn` must return a video {expected}, got {got}")
    if not torch.isfinite(video).all():
        raise ValueError(f"clip {name}: `generate_fn` returned non-finite values")
    # scored as images: clamped to [0, 1] (decoders overshoot slightly), beside the ground truth
    return video.detach().float().clamp(0, 1).to(context.device)


def _spread(indices: Sequence[int], k: int) -> list[int]:
    """At most k entries of `indices`, evenly spread, first and last included."""
    if len(indices) <= k:
        return list(indices)
    if k == 1:
        return [indices[0]]
    return [indices[round(i * (len(indices) - 1) / (k - 1))] for i in range(k)]


def _means(rows: list[dict], keys: Sequence[str]) -> dict:
    out = {}
    for key in keys:
        vals = [r[key] for r in rows]
        out[key] = None if not vals or any(v is None for v in vals) else sum(vals) / len(vals)
    return out


def _shard_clips(clips: Sequence, shard: tuple[int, int]):
    """(i, clips[i]) for the clips of this shard, i % world == rank; only those are indexed, so
    a lazy sequence (e.g. `SyntheticEvalClips`) builds only the clips this process scores."""
    rank, world = shard
    for i in range(rank, len(clips), world):
        yield i, clips[i]


def _check_shard(shard) -> tuple[int, int]:
    rank, world = (int(x) for x in shard)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"`shard` must be (rank, world) with 0 <= rank < world, got {shard}")
    return rank, world


def _evaluate(
    stem: str,
    score_clip: Callable,
    clips: Sequence,
    out_dir,
    protocol: dict,
    lpips_backbone,
    lpips_heads,
    sheet_frames: int,
    shard,
    before_clip: Callable | None,
    run: dict | None = None,
) -> dict:
    """The per-clip loop both protocols share: shard, check, score, sheet, then `_finish`.

    `score_clip(scorer, name, frames, cameras)` returns (row, sheet rows [N,3,H,W] each).
    With `out_dir`, each finished clip's row is kept in clips/ with the protocol and `run`
    (what produced it: model, config); a later run with the same ones reuses it.
    """
    shard = _check_shard(shard)
    scorer = _Scorer(lpips_backbone, lpips_heads)
    rows = []
    for i, clip in _shard_clips(clips, shard):
        if before_clip is not None:
            before_clip(clip)
        name, frames, cameras = _check_clip(clip, i)
        done = None if out_dir is None else Path(out_dir) / "clips" / f"{stem}_{i:05d}_{name}.json"
        key = {"protocol": protocol, "run": run}
        row = _finished_row(done, key)
        if row is None:
            row, sheet_rows = score_clip(scorer, name, frames, cameras)
            row = {"index": i, "clip": name, **row}
            if out_dir is not None and sheet_frames > 0:
                path = Path(out_dir) / "sheets" / f"{stem}_{name}.png"
                write_png(path, contact_sheet(sheet_rows))
            if done is not None:  # written last: an interrupted run resumes after this clip
                write_json(done, {"key": key, "row": row})
        rows.append(row)
    summary = {"protocol": protocol, "lpips_note": scorer.lpips_note}
    return _finish(out_dir, stem, rows, summary, shard)


def _finished_row(path: Path | None, key: dict) -> dict | None:
    """The row a previous run wrote for this clip under the same key, else None."""
    if path is None or not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except ValueError:
        return None  # unreadable: score the clip again
    same = saved.get("key") == json.loads(json.dumps(key, default=str))
    return saved.get("row") if same else None


def _finish(out_dir, stem: str, rows: list[dict], summary: dict, shard) -> dict:
    """Means over clips; all tables for a single process, one rank JSON per shard otherwise."""
    rank, world = shard
    if world == 1 and not rows:
        raise ValueError("`clips` must hold at least one clip")
    summary = {**summary, "mean": _means(rows, METRICS[stem]), "per_clip": rows}
    if out_dir is None:
        return summary
    if world > 1:
        write_json(Path(out_dir) / f"{stem}.rank{rank}.json", {**summary, "shard": [rank, world]})
    else:
        _write_tables(Path(out_dir), stem, summary)
    return summary


def _write_tables(out_dir: Path, stem: str, summary: dict) -> None:
    columns = COLUMNS[stem]
    write_csv(out_dir / f"{stem}_per_clip.csv", summary["per_clip"], columns)
    write_csv(out_dir / f"{stem}_mean.csv", [{"clip": "mean", **summary["mean"]}], columns)
    write_json(out_dir / f"{stem}.json", summary)


def merge_shards(out_dir: str | Path, stem: str, world: int) -> dict:
    """Combine the rank JSONs of a sharded run into the single-process tables and files.

    Run on one process after all ranks finished (e.g. `accelerator.wait_for_everyone()` then
    `if accelerator.is_main_process: merge_shards(...)`). `stem` is "nvs" or "closed_loop".
    """
    import json

    if stem not in METRICS:
        raise ValueError(f"`stem` must be one of {sorted(METRICS)}, got {stem!r}")
    out_dir = Path(out_dir)
    parts = []
    for rank in range(world):
        path = out_dir / f"{stem}.rank{rank}.json"
        if not path.is_file():
            raise FileNotFoundError(f"shard {rank} of {world} has not written {path}")
        parts.append(json.loads(path.read_text()))
    rows = sorted((r for p in parts for r in p["per_clip"]), key=lambda r: r["index"])
    if not rows:
        raise ValueError(f"the {world} shards in {out_dir} hold no clips")
    notes = [p["lpips_note"] for p in parts if p.get("lpips_note")]
    summary = {
        "protocol": parts[0]["protocol"],
        "mean": _means(rows, METRICS[stem]),
        "per_clip": rows,
        "lpips_note": notes[0] if notes else None,
        "shards": world,
    }
    _write_tables(out_dir, stem, summary)
    return summary


def evaluate_nvs(
    generate_fn: GenerateFn,
    clips: Sequence,
    out_dir: str | Path | None = None,
    num_context: int = 1,
    target_stride: int = 1,
    lpips_backbone: str | Path | None = None,
    lpips_heads: str | Path | None = None,
    sheet_frames: int = 6,
    shard: tuple[int, int] = (0, 1),
    before_clip: Callable | None = None,
    run: dict | None = None,
) -> dict:
    """Novel-view evaluation of `generate_fn` on clips (objects with name, frames, cameras).

    Writes, when `out_dir` is given: nvs_per_clip.csv, nvs_mean.csv, nvs.json and
    sheets/nvs_<clip>.png (top: ground truth, bottom: generated, up to `sheet_frames`
    targets). Returns the summary dict: {"protocol", "mean", "per_clip", "lpips_note"}.

    With `shard` = (rank, world), only clips i with i % world == rank are evaluated and the
    results go to nvs.rank<rank>.json; `merge_shards(out_dir, "nvs", world)` then writes the
    tables (one process per GPU, e.g. under `accelerate launch`). `clips` is indexed (len and
    [i]) only at this shard's indices. `before_clip(clip)` runs before each clip is generated
    (e.g. to bind the clip's synthetic scene to the pipeline's ground-truth depth).
    """

    def score_clip(scorer: _Scorer, name: str, frames: torch.Tensor, cameras: Cameras):
        plan = nvs_plan(len(frames), num_context, target_stride)
        video = _generate(generate_fn, frames[plan.context], cameras, name)
        t = plan.targets
        s = _spread(t, sheet_frames)
        return {"num_targets": len(t), **scorer(video[t], frames[t])}, [frames[s], video[s]]

    protocol = {
        "name": "nvs",
        "num_context": num_context,
        "target_stride": target_stride,
        "psnr_cap_db": PSNR_CAP_DB,
    }
    return _evaluate(
        "nvs",
        score_clip,
        clips,
        out_dir,
        protocol,
        lpips_backbone,
        lpips_heads,
        sheet_frames,
        shard,
        before_clip,
        run,
    )


def _check_loop(cameras: Cameras, name: str) -> None:
    n = len(cameras)
    err = (cameras.c2w - cameras.c2w.flip(0)).abs().amax().item()
    if err > LOOP_POSE_TOLERANCE:
        raise ValueError(
            f"clip {name}: a go-and-return clip must be palindromic, c2w[j] == c2w[{n}-1-j]; "
            f"largest difference {err:.3g} (tolerance {LOOP_POSE_TOLERANCE})"
        )


def evaluate_closed_loop(
    generate_fn: GenerateFn,
    clips: Sequence,
    out_dir: str | Path | None = None,
    num_context: int = 1,
    clips_are_loops: bool = False,
    loop_frames: int | None = None,
    lpips_backbone: str | Path | None = None,
    lpips_heads: str | Path | None = None,
    sheet_frames: int = 6,
    shard: tuple[int, int] = (0, 1),
    before_clip: Callable | None = None,
    run: dict | None = None,
) -> dict:
    """Closed-loop evaluation: generate a go-and-return and compare each return frame.

    Args:
        clips: objects with name, frames [T,3,H,W], cameras. With `clips_are_loops`, each clip
            already is a palindromic go-and-return (e.g. the synthetic world's "loop"
            trajectory; checked). Otherwise each clip is the outbound path and the loop is
            built from it with `loop_source_indices` (`loop_frames` long, default 2T - 1).
        num_context: ground-truth frames given to the model (they seed the memory).
    Returns / writes (like `evaluate_nvs`, stem "closed_loop"): per clip psnr_c, ssim_c,
        lpips_c (return frames vs the generated outbound frames at the same pose) and psnr,
        ssim, lpips (return frames vs ground truth); sheets show ground truth, generated
        outbound and generated return frames, aligned by pose.
        `shard` and `before_clip` work as in `evaluate_nvs` (merge with stem "closed_loop").
    """

    def score_clip(scorer: _Scorer, name: str, frames: torch.Tensor, cameras: Cameras):
        if clips_are_loops:
            _check_loop(cameras, name)
            gt, loop_cams = frames, cameras
        else:
            n = loop_frames if loop_frames is not None else 2 * len(frames) - 1
            if n > 2 * len(frames) - 1:
                raise ValueError(
                    f"clip {name}: `loop_frames` = {n} needs an outbound clip of "
                    f"{math.ceil(n / 2)} frames, it has {len(frames)}"
                )
            src = loop_source_indices(n)
            gt, loop_cams = frames[src], cameras[src]
        plan = closed_loop_plan(len(gt))
        if num_context >= len(gt):
            raise ValueError(
                f"`num_context` must be below the loop length {len(gt)}, got {num_context}"
            )
        video = _generate(generate_fn, gt[:num_context], loop_cams, name)
        ret = [j for j, _ in plan.pairs]
        out = [k for _, k in plan.pairs]
        consistency = scorer(video[ret], video[out])
        truth = scorer(video[ret], gt[ret])
        row = {"num_pairs": len(ret)} | {f"{k}_c": v for k, v in consistency.items()} | truth
        s = _spread(list(range(len(ret))), sheet_frames)
        r, o = [ret[k] for k in s], [out[k] for k in s]
        return row, [gt[o], video[o], video[r]]

    protocol = {
        "name": "closed_loop",
        "num_context": num_context,
        "clips_are_loops": clips_are_loops,
        "loop_frames": loop_frames,
        "psnr_cap_db": PSNR_CAP_DB,
    }
    return _evaluate(
        "closed_loop",
        score_clip,
        clips,
        out_dir,
        protocol,
        lpips_backbone,
        lpips_heads,
        sheet_frames,
        shard,
        before_clip,
        run,
    )


__all__ = [
    "EvalClip",
    "LoopPlan",
    "NVSPlan",
    "PSNR_CAP_DB",
    "closed_loop_plan",
    "evaluate_closed_loop",
    "evaluate_nvs",
    "loop_source_indices",
    "merge_shards",
    "pipeline_generate_fn",
    "nvs_plan",
    "sample_clip_indices",
]
