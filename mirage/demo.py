"""The `mirage demo` job: fly out and back through a held-out synthetic scene with each memory.

On a synthetic scene never used in training (a fixed seed from the held-out range), the
camera follows a `loop` trajectory (out along a pan, then back along the same poses) and the
shipped mirage-tiny model generates it chunk by chunk three times: with the latent spatial
memory, with the RGB point-cache baseline and with no memory, from the same first frame and
the same noise. Written into `out` (default `demo/`):

- `side_by_side.mp4`: ground truth | latent | rgb | none, labelled, upscaled for viewing;
  `videos/{gt,latent,rgb,none}.mp4`: each alone at the model's size;
- `return_frames.png`: return frames beside their outbound twins at the same pose (rows: GT,
  latent, rgb, none; columns labelled with frame indices);
- `readout.png`: what the latent memory showed the model on the way back: ground truth, the
  readout decoded by the VAE alone, its visibility mask, and the model's frame;
- `psnr_per_frame.png`: PSNR against ground truth per frame for each memory and the trivial
  baselines, the turnaround marked;
- `metrics.json`: keys documented in `docs/demo.md` (PSNR/SSIM per frame against ground
  truth, closed-loop PSNR of each returned frame against the frame generated at the same pose
  on the way out with its contrast ratio, the readout decoded alone, trivial baselines and the
  VAE ceiling, seconds per stage, cache MiB per chunk), and a table on the terminal.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mirage.eval.loops import HELDOUT_SEEDS, MODES, loop_cameras, run_loop, trivial_baselines
from mirage.eval.plot import line_plot
from mirage.eval.report import return_sheet, side_by_side
from mirage.models.loading import TINY_MODEL_DIR as DEFAULT_MODEL

METRIC_KEYS = (
    "frames",
    "psnr",
    "ssim",
    "psnr_mean",
    "ssim_mean",
    "psnr_return_mean",
    "ssim_return_mean",
    "closed_loop_pairs",
    "closed_loop_psnr",
    "closed_loop_psnr_mean",
    "psnr_twins_mean",
    "psnr_return_twinned_mean",
    "contrast_ratio",
    "contrast_ratio_mean",
    "contrast_ratio_return_mean",
    "contrast_ratio_return_twinned_mean",
    "contrast_ratio_twins_mean",
    "seconds",
    "seconds_total",
    "cache_mib_per_chunk",
)


@dataclass(frozen=True)
class DemoConfig:
    model: Path = DEFAULT_MODEL  # Wan-layout model folder (the shipped mirage-tiny by default)
    out: Path = Path("demo")  # output folder
    quick: bool = False  # 2 chunks and fewer steps (CI): well under a minute on 2 CPU cores
    scene_seed: int = 900_005  # a held-out synthetic scene (HELDOUT_SEEDS)
    scene_kind: str = "indoor"  # indoor | outdoor
    height: int = 64  # frame size the model was trained at
    width: int = 64
    frames: int | None = None  # loop length 1 + n (chunk_frames - 1); None: 33 (quick: 17)
    chunk_frames: int = 9  # frames per chunk (4k + 1)
    steps: int | None = None  # denoising steps per chunk; None: 10 (quick: 4)
    path: str = "pan_right"  # the outbound half of the loop (a trajectory preset)
    degrees: float = 50.0  # pan angle of the outbound half
    seed: int = 0  # noise seed (the same for every memory mode)
    upscale: int = 4  # nearest-neighbour upscaling of the side-by-side video
    fps: int = 8
    progress: bool = True

    @property
    def num_frames(self) -> int:
        return self.frames or (17 if self.quick else 33)

    @property
    def num_steps(self) -> int:
        return self.steps or (4 if self.quick else 10)

    def __post_init__(self):
        from mirage.pipeline.chunks import plan_chunks

        if self.scene_seed not in HELDOUT_SEEDS:
            raise ValueError(
                f"`scene_seed` must be a held-out seed in [{HELDOUT_SEEDS.start}, "
                f"{HELDOUT_SEEDS.stop}), got {self.scene_seed}"
            )
        if self.scene_kind not in ("indoor", "outdoor"):
            raise ValueError(f"`scene_kind` must be indoor | outdoor, got {self.scene_kind!r}")
        # plan_chunks raises with the nearest valid lengths
        if len(plan_chunks(self.num_frames, self.chunk_frames)) < 2:
            raise ValueError(f"`frames` must make at least 2 chunks, got {self.num_frames}")
        if self.upscale < 1:
            raise ValueError(f"`upscale` must be >= 1, got {self.upscale}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"`steps` must be >= 1, got {self.steps}")


# --- the job ------------------------------------------------------------------------------------


@dataclass
class DemoResult:
    out: Path
    metrics: dict
    table: str


def format_table(metrics: dict) -> str:
    """The terminal table: one row per memory mode, then what it must beat and cannot pass."""
    head = (
        f"{'':<22}{'PSNR':>7}{'PSNR ret':>10}{'last':>7}{'SSIM':>7}{'closed-loop':>13}"
        f"{'contrast':>10}{'seconds':>9}{'cache MiB':>11}"
    )
    lines = [head, "-" * len(head)]
    for mode, m in metrics["modes"].items():
        cache = m["cache_mib_per_chunk"][-1] if m["cache_mib_per_chunk"] else 0.0
        lines.append(
            f"{mode + ' memory':<22}{m['psnr_mean']:>7.2f}{m['psnr_return_mean']:>10.2f}"
            f"{m['psnr_last']:>7.2f}{m['ssim_mean']:>7.3f}{m['closed_loop_psnr_mean']:>13.2f}"
            f"{m['contrast_ratio_return_mean']:>10.2f}{m['seconds_total']:>9.1f}{cache:>11.3f}"
        )
    ceiling = metrics["baselines"].get("vae_video_ceiling")
    for mode, m in metrics["modes"].items():
        if "readout_psnr_mean" in m:
            there = ""
            if ceiling is not None:  # what the model could reach at those frames
                at = [ceiling["psnr"][f - 1] for f in m["readout_frames"]]
                there = f", VAE video ceiling there {sum(at) / len(at):.2f}"
            lines.append(
                f"{mode + ' readout alone':<22}{m['readout_psnr_mean']:>7.2f}"
                f"   (model at the same frames {m['model_psnr_at_readout_frames']:.2f}{there})"
            )
    for name, b in metrics["baselines"].items():
        label = name.replace("_", " ")
        lines.append(
            f"{label:<22}{b['psnr_mean']:>7.2f}{b['psnr_return_mean']:>10.2f}{b['psnr_last']:>7.2f}"
            f"{'':>20}{b['contrast_return_mean']:>10.2f}"
        )
    return "\n".join(lines)


def run_demo(cfg: DemoConfig) -> DemoResult:
    """Run the demo of `cfg` and write its files into `cfg.out`."""
    from mirage.atomic import atomic_dir, check_out_dir, write_json
    from mirage.data.video import write_png, write_video
    from mirage.eval.machine import describe_machine
    from mirage.models.loading import check_model_dir
    from mirage.pipeline.loading import build_pipeline
    from mirage.pipeline.model_info import synthetic_supersample
    from mirage.synthetic import make_scene

    check_model_dir(cfg.model, load_text_encoder=False)  # every missing file, before work
    out = Path(cfg.out)
    check_out_dir(out, overwrite=_is_demo_folder(out))  # a previous demo is replaced whole
    t_start = time.perf_counter()
    seconds: dict = {}

    t0 = time.perf_counter()
    scene = make_scene(cfg.scene_seed, cfg.scene_kind)
    cameras = loop_cameras(
        scene, cfg.height, cfg.width, cfg.num_frames, cfg.path, cfg.degrees
    )  # fmt: skip
    ss = synthetic_supersample(cfg.model)  # rendered as the model's training frames were
    gt = scene.render(cameras, supersample=ss, progress=cfg.progress).rgb
    seconds["render_ground_truth"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    pipe = build_pipeline(cfg.model, depth="gt", masks="none", scene=scene)
    seconds["load_model"] = time.perf_counter() - t0

    runs = run_loop(
        pipe, cameras, gt, cfg.num_steps, cfg.chunk_frames, cfg.seed,
        progress=cfg.progress,
    )  # fmt: skip
    for mode in MODES:
        seconds[f"generate_{mode}"] = runs[mode]["metrics"]["seconds_total"]

    pairs = runs[MODES[0]]["metrics"]["closed_loop_pairs"]  # (return j, outbound i)
    pairs = [pairs[round(i * (len(pairs) - 1) / 3)] for i in range(4)]
    pick = [f for j, i in sorted(pairs, key=lambda p: p[1]) for f in (i, j)]  # twin, return

    metrics = {
        "model": str(cfg.model),
        "model_card": _model_card_summary(cfg.model),
        "scene": {"seed": cfg.scene_seed, "kind": cfg.scene_kind},
        "trajectory": {
            "preset": "loop",
            "path": cfg.path,
            "degrees": cfg.degrees,
            "frames": cfg.num_frames,
            "chunk_frames": cfg.chunk_frames,
        },  # fmt: skip
        "size": [cfg.height, cfg.width],
        "steps": cfg.num_steps,
        "seed": cfg.seed,
        "return_frames_in_sheet": pick,
        "modes": {m: runs[m]["metrics"] for m in MODES},
        "baselines": trivial_baselines(gt, pipe.vae, cfg.chunk_frames),
        "seconds": seconds,
        "machine": describe_machine("cpu"),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
    }
    # everything goes through a temporary folder: `out` is one complete demo, never two mixed
    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:
        panels = {"ground truth": gt, **{m: runs[m]["frames"] for m in MODES}}
        write_video(tmp / "side_by_side.mp4", side_by_side(panels, cfg.upscale), fps=cfg.fps)
        for name, frames in (("gt", gt), *((m, runs[m]["frames"]) for m in MODES)):
            write_video(tmp / "videos" / f"{name}.mp4", frames, fps=cfg.fps)
        rows = {"GT": gt, **{m: runs[m]["frames"] for m in MODES}}
        labels = [f"out f{f}" if k % 2 == 0 else f"back f{f}" for k, f in enumerate(pick)]
        write_png(tmp / "return_frames.png", return_sheet(rows, pick, columns=labels))
        write_png(tmp / "readout.png", readout_panel(gt, runs["latent"]))
        write_png(tmp / "psnr_per_frame.png", psnr_plot(metrics))
        seconds["write"] = time.perf_counter() - t0
        seconds["total"] = time.perf_counter() - t_start
        write_json(tmp / "metrics.json", metrics)
    return DemoResult(out, metrics, format_table(metrics))


def readout_panel(gt: torch.Tensor, run: dict):
    """Ground truth, decoded readout, mask and model frame at the readout frames of the way back."""
    alone = run["readout"]
    back = [k for k, f in enumerate(alone["index"]) if f > len(gt) // 2]
    index = [alone["index"][k] for k in back]
    mask = alone["mask"][back].float() * 0.75  # visible cells grey, hidden black
    mask = mask.repeat_interleave(gt.shape[2] // mask.shape[2], 2)
    mask = mask.repeat_interleave(gt.shape[3] // mask.shape[3], 3).expand(-1, 3, -1, -1)
    rows = {
        "GT": gt[index],
        "readout": alone["frames"][back],
        "mask": mask,
        "latent": run["frames"][index],
    }
    return return_sheet(rows, list(range(len(index))), columns=[f"f{f}" for f in index])


def psnr_plot(metrics: dict):
    """PSNR per frame for each memory, the trivial baselines as lines, the turnaround marked."""
    modes = metrics["modes"]
    frames = modes[MODES[0]]["frames"]
    series = {f"{m} memory": modes[m]["psnr"] for m in MODES}
    for k, b in metrics["baselines"].items():  # the video ceiling per frame, the rest as lines
        series[k.replace("_", " ")] = b["psnr"] if k == "vae_video_ceiling" else b["psnr_mean"]
    turn = max(i for _, i in modes[MODES[0]]["closed_loop_pairs"]) + 1
    title = f"PSNR against ground truth, scene {metrics['scene']['seed']}"
    return line_plot(frames, series, {"turnaround": turn}, title=title, y_label="PSNR (dB)")


def _is_demo_folder(out: Path) -> bool:
    """A folder a previous demo wrote (its metrics.json has the per-memory results)."""
    try:
        return "modes" in json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError):
        return False


def _model_card_summary(model: Path) -> dict:
    """The `mirage.json` facts shipped beside the weights (training steps, data), if present."""
    f = Path(model) / "mirage.json"
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text())
    except ValueError:
        return {}


def finite_numbers(value) -> bool:
    """True when every number inside a JSON-like value is finite (for tests and checks)."""
    if isinstance(value, dict):
        return all(finite_numbers(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(finite_numbers(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return True
