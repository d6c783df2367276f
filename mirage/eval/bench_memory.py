"""Benchmark: read cost and cache size of the latent memory against the RGB point cache.

Both caches see the same synthetic trajectory and the same ground-truth depth, in one run.
After c chunks of `chunk_frames` frames each cache holds the points of the latent-aligned
frames the pipeline inserts: frame 0, then frames 4, 8, ..., 32 of every chunk (DESIGN.md).
The read measured for row c is the one the pipeline does next, for the 9 latent-frame
cameras of chunk c + 1, divided by 9:

* latent: `LatentSpatialMemory.read` (z-buffer at latent resolution; nothing is encoded);
* rgb: `RGBPointCache.read` = z-buffered render at pixel resolution + one VAE encode of all
  9 views, with the real Wan2.2 VAE architecture (`wan22_vae_config`) and random weights.

Latent values are random (seeded): neither the cost of a read nor the bytes depend on them.
Cache bytes are as stored: latent = 12 + 2C bytes a point (float32 xyz + bf16 latent), RGB =
15 bytes a point (float32 xyz + uint8 colour).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mirage.pipeline.chunks import check_chunk_frames

VAES = ("wan2.2", "tiny")
CHEAP_REPEATS = 10  # latent reads and RGB renders take milliseconds: median of at least this many


@dataclass(frozen=True)
class MemoryBenchConfig:
    height: int = 128  # frame size (multiples of 32 for the Wan2.2 VAE)
    width: int = 224
    chunks: tuple[int, ...] = tuple(range(1, 11))  # rollout lengths measured
    chunk_frames: int = 33  # 4k + 1, as the official default
    vae: str = "wan2.2"  # "wan2.2" (real architecture, random weights) or "tiny" (8x, z_dim 16)
    scene_seed: int = 0  # synthetic indoor scene
    walk_seed: int = 0  # random-walk trajectory inside the scene's free region
    repeats: int = 1  # timed RGB reads per row (median); one untimed warm-up read per path first
    memory_dtype: str = "bfloat16"  # latent storage
    device: str = "cpu"
    seed: int = 0  # weights and latent values

    def __post_init__(self):
        if self.vae not in VAES:
            raise ValueError(f"`vae` must be one of {VAES}, got {self.vae!r}")
        if not self.chunks or min(self.chunks) < 1:
            raise ValueError(f"`chunks` must be positive chunk counts, got {self.chunks}")
        if self.repeats < 1:
            raise ValueError(f"`repeats` must be >= 1, got {self.repeats}")
        check_chunk_frames(self.chunk_frames)
        m = 32 if self.vae == "wan2.2" else 16
        if self.height % m or self.width % m or self.height <= 0 or self.width <= 0:
            raise ValueError(
                f"`height` and `width` must be positive multiples of {m} for the {self.vae} VAE, "
                f"got {self.height}x{self.width}"
            )


QUICK = MemoryBenchConfig(height=32, width=48, chunks=(1, 2, 3), vae="tiny")


def random_wan22_encoder_vae(seed: int = 0, device="cpu"):
    """`AutoencoderKLWan(**wan22_vae_config())` with random weights; the decoder is not built.

    Built on the meta device and filled with seeded N(0, 1/fan_in) weights, zero biases and
    unit norm scales (a read only encodes, and the full random init of 705M parameters takes
    most of a minute on a small CPU).
    """
    from diffusers import AutoencoderKLWan

    from mirage.models.loading import wan22_vae_config

    with torch.device("meta"):
        vae = AutoencoderKLWan(**wan22_vae_config())
    vae.decoder = torch.nn.Identity()  # reads never decode
    vae.post_quant_conv = torch.nn.Identity()
    vae.to_empty(device=device)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("gamma"):
                p.fill_(1.0)
            elif p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            else:
                p.zero_()
    return vae.eval().requires_grad_(False)


def _vae(cfg: MemoryBenchConfig):
    from mirage.models.vae import VideoVAE

    if cfg.vae == "tiny":
        from diffusers import AutoencoderKLWan

        from mirage.models.loading import tiny_vae_config

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            raw = AutoencoderKLWan(**tiny_vae_config()).eval()
        return VideoVAE(raw.to(cfg.device))
    return VideoVAE(random_wan22_encoder_vae(cfg.seed, cfg.device))


def bench_scene_and_cameras(cfg: MemoryBenchConfig):
    """The scene and trajectory of the benchmark: a random walk covering max(chunks) + 1 chunks."""
    from mirage.data.trajectories import make_trajectory
    from mirage.synthetic import make_scene

    scene = make_scene(cfg.scene_seed, kind="indoor")
    start = scene.start_camera(cfg.height, cfg.width)
    n = 1 + (max(cfg.chunks) + 1) * (cfg.chunk_frames - 1)
    cams = make_trajectory("random_walk", start, n, seed=cfg.walk_seed, bounds=scene.bounds)
    return scene, cams


def inserted_frames(num_chunks: int, chunk_frames: int = 33) -> list[int]:
    """Frames a cache holds points of after `num_chunks` chunks: 0, 4, 8, ... (latent-aligned)."""
    return list(range(0, num_chunks * (chunk_frames - 1) + 1, 4))


def _timed(fn, sync, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def memory_result_name(cfg: MemoryBenchConfig) -> str:
    """The file stem a run of `cfg` writes (CSV, PNG, machine JSON)."""
    return f"memory_cost_{cfg.height}x{cfg.width}_{str(cfg.device).split(':')[0]}"


def run_memory_benchmark(cfg: MemoryBenchConfig, out_dir: str | Path | None = None, name=None):
    """Measure both caches after each rollout length in `cfg.chunks`; print, write CSV and PNG.

    Returns the rows (one per chunk count). With `out_dir`, writes `<name>.csv` (+ the machine
    as `<name>.machine.json`) and `<name>.png`; `name` defaults to `memory_cost_<H>x<W>_<device>`.
    """
    from mirage.eval.machine import describe_machine, write_rows
    from mirage.memory import LatentSpatialMemory, RGBPointCache
    from mirage.pipeline.chunks import Chunk

    dev = torch.device(cfg.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    vae = _vae(cfg)
    s = vae.spatial_factor
    latent_hw = (cfg.height // s, cfg.width // s)
    C = vae.z_dim
    scene, cams = bench_scene_and_cameras(cfg)
    cams = cams.to(dev)
    latent = LatentSpatialMemory(C, dtype=getattr(torch, cfg.memory_dtype), device=dev)
    rgb = RGBPointCache(encode=lambda x: vae.encode_images(x, batch_size=len(x)), device=dev)
    gen = torch.Generator().manual_seed(cfg.seed)

    def insert(frames: list[int]):
        view = cams[frames]
        r = scene.render(view.to("cpu"), times=torch.tensor(frames, dtype=torch.float64))
        z = torch.randn(len(frames), C, *latent_hw, generator=gen).to(dev)
        latent.insert(z, r.depth.to(dev), view)
        rgb.insert(r.rgb.to(dev), r.depth.to(dev), view)

    done, rows = [], []
    for c in sorted(set(cfg.chunks)):
        todo = [f for f in inserted_frames(c, cfg.chunk_frames) if f not in done]
        insert(todo)
        done += todo
        read_cams = cams[Chunk(c, c * (cfg.chunk_frames - 1), cfg.chunk_frames).latent_frames]
        if not rows:  # warm-up: allocator, kernels, first-call overheads
            latent.read(read_cams, latent_hw)
            rgb.read(read_cams, latent_hw)
        v, many = len(read_cams), max(cfg.repeats, CHEAP_REPEATS)
        t_lat = _timed(lambda: latent.read(read_cams, latent_hw), sync, many)  # noqa: B023
        t_render = _timed(lambda: rgb.render(read_cams), sync, many)  # noqa: B023
        t_rgb = _timed(lambda: rgb.read(read_cams, latent_hw), sync, cfg.repeats)  # noqa: B023
        rows.append(
            {
                "chunks": c,
                "frames_inserted": len(done),
                "latent_points": latent.num_points,
                "latent_bytes": latent.nbytes,
                "latent_mib": round(latent.nbytes / 2**20, 4),
                "rgb_points": rgb.num_points,
                "rgb_bytes": rgb.nbytes,
                "rgb_mib": round(rgb.nbytes / 2**20, 4),
                "cache_ratio": round(rgb.nbytes / max(latent.nbytes, 1), 2),
                "latent_read_s_per_frame": t_lat / v,
                "rgb_read_s_per_frame": t_rgb / v,
                "rgb_render_s_per_frame": t_render / v,
                "read_ratio": round(t_rgb / t_lat, 1),
                "size": f"{cfg.height}x{cfg.width}",
                "latent_grid": f"{latent_hw[0]}x{latent_hw[1]}x{C}",
                "vae": cfg.vae,
                "load_avg_1min": round(os.getloadavg()[0], 2),
            }
        )
        r = rows[-1]
        print(
            f"{c:>2} chunks: latent {r['latent_mib']:8.3f} MiB {t_lat / v:9.5f} s/frame | rgb "
            f"{r['rgb_mib']:8.3f} MiB {t_rgb / v:9.5f} s/frame (render {t_render / v:.5f}) | "
            f"x{r['cache_ratio']} bytes, x{r['read_ratio']} time",
            flush=True,
        )
    if out_dir is not None:
        out_dir = Path(out_dir)
        name = name or memory_result_name(cfg)
        machine = {**describe_machine(str(cfg.device)), "config": asdict(cfg)}
        write_rows(rows, out_dir / f"{name}.csv", machine)
        write_memory_plot(rows, out_dir / f"{name}.png", cfg)
        print(f"wrote {out_dir / name}.csv and .png")
    return rows


def write_memory_plot(rows: list[dict], path: str | Path, cfg: MemoryBenchConfig) -> Path:
    """Two panels in the manner of the paper's efficiency figure: s/frame and MiB vs chunks."""
    from mirage.data.video import write_png
    from mirage.eval.plot import Panel, bar_panels

    x = [r["chunks"] for r in rows]
    read = Panel(
        "cache read, seconds per frame",
        "chunks",
        x,
        {
            "latent memory": [r["latent_read_s_per_frame"] for r in rows],
            "RGB points + VAE": [r["rgb_read_s_per_frame"] for r in rows],
        },
    )
    size = Panel(
        "cache size, MiB",
        "chunks",
        x,
        {
            "latent memory": [r["latent_mib"] for r in rows],
            "RGB points": [r["rgb_mib"] for r in rows],
        },
    )
    last = rows[-1]
    title = (
        f"{cfg.height}x{cfg.width}, {cfg.vae} VAE, {cfg.device}: after {last['chunks']} chunks "
        f"the RGB cache is x{last['cache_ratio']} larger and x{last['read_ratio']} slower to read"
    )
    return write_png(path, bar_panels([read, size], title=title))
