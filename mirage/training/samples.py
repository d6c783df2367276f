"""Training samples from shards: a chunk's latents and memory readout, built as generation does.

A sample is chunk c of one clip (chunk_frames = 4k + 1, start = c (chunk_frames - 1), a =
start / 4 its latent-aligned index). It uses the rules `MiragePipeline.generate` uses, from
`mirage.pipeline` (one copy of each):

- the latent sequence is [context | first frame | targets]: context = the last
  `num_context(c, context_latents)` target latents of chunk c - 1 (`chunk_context`), first
  frame = the image latent of frame `start`, targets = the k video latents of chunk c;
- the memory (`make_memory("latent", ...)`, with the config's fusion, as generation's) holds the
  latent-aligned frames 0 .. start, written in generation's groups (frame 0 alone, then each
  earlier chunk's k new frames) through `observation`: up-to-scale depth (shards say whether
  theirs is metric) is aligned to what the memory renders, exactly as generation aligns it;
- `memory_frames` "gt" writes the clip's own frames; "decoded" writes what generation writes
  (the shards' `decoded_latents` / `decoded_frames`: each chunk decoded as video and
  re-encoded), and the first-frame slot of a later chunk is that written latent too;
- the side-branch input is the memory read at the cameras of frames start + 4m (m = 0..k),
  through `side_condition(readout, num_context)` (context slots zero, mask False).

Batches must stack, so the batch sampler draws every batch from one group of equal
`num_context` (first chunks have none) and is a pure function of (seed, step, rank): the data
position after a resume is the step.
"""

from __future__ import annotations

import random
from functools import lru_cache

import torch
from torch.utils.data import Dataset

from mirage.data.shards import check_shard_dir, load_shard
from mirage.geometry import Cameras
from mirage.memory import FOOTPRINT, make_memory
from mirage.memory.latent import DEFAULT_FUSION, DEFAULT_SUBCELLS
from mirage.pipeline.chunks import check_context, num_context
from mirage.pipeline.conditioning import chunk_context, observation, side_condition

# what a training memory holds (see the module docstring) -> the shard tensors it is written
# from: the latents, and the frames an RGB memory observes
WRITTEN_FROM = {"gt": ("image_latents", "frames"), "decoded": ("decoded_latents", "decoded_frames")}
MEMORY_FRAMES = tuple(WRITTEN_FROM)


def chunk_sample(
    tensors: dict[str, torch.Tensor],
    meta: dict,
    chunk: int,
    context_latents: int = 2,
    voxel_size: float | str | None = FOOTPRINT,
    memory_dtype: torch.dtype = torch.bfloat16,
    fusion: str = DEFAULT_FUSION,
    memory_kind: str = "latent",
    encode=None,
    subcells: int = DEFAULT_SUBCELLS,
    memory_frames: str = "gt",
    sky_distance: float | None = None,
) -> dict:
    """Model input of one chunk of a shard: clean latents [C,F,h,w], condition [C+1,F,h,w].

    `memory_kind` "rgb" builds the RGB point cache from the shard's `frames` (preprocessed
    with `keep_frames`) and reads it through `encode` (the VAE's frames -> image latents), as
    `--memory rgb` generation does. `memory_frames` "decoded" writes the shard's decoded
    writes instead of its frames. Returns dict(latents, condition, num_clean, text [Lt,D]
    or None, memory).
    """
    F_chunk = meta["chunk_frames"]
    check_context(context_latents, F_chunk)
    step, k = F_chunk - 1, (F_chunk - 1) // 4
    n = len(tensors["chunk_latents"])
    if not 0 <= chunk < n:
        raise ValueError(f"`chunk` must be in [0, {n}), got {chunk}")
    C, (h, w) = meta["channels"], meta["latent_hw"]
    a = chunk * step // 4  # latent-aligned index of the chunk's first frame
    cams = Cameras(tensors["K"], tensors["c2w"], meta["height"], meta["width"])
    depth, exclude = tensors["depth"], tensors["exclude"]
    metric = bool(meta.get("depth_metric", True))
    keys = written_keys(memory_kind, memory_frames)
    _check_written(tensors, keys, "the shard")
    written = tensors[keys[0]]
    frames = tensors[keys[1]].float() / 255 if memory_kind == "rgb" else None

    # 1. the memory as generation holds it at this chunk: frame 0, then k frames per chunk
    memory = make_memory(
        memory_kind, C, encode, voxel_size, memory_dtype, fusion=fusion, subcells=subcells
    )
    groups = [slice(0, 1)] + [slice(1 + j * k, 1 + (j + 1) * k) for j in range(chunk)]
    for g in groups:
        rgb = None if frames is None else frames[g]
        obs = observation(
            memory, rgb, written[g], depth[g], cams[g], exclude[g], metric, sky_distance
        )
        memory.observe(obs)

    # 2. [context | first frame | targets]
    nc = num_context(chunk, context_latents)
    prev = tensors["chunk_latents"][chunk - 1, 1:] if chunk > 0 else written[:0]
    context = chunk_context(prev, nc)
    first = written[a : a + 1]  # generation opens a chunk with the latent it wrote last
    targets = tensors["chunk_latents"][chunk, 1:]
    latents = torch.cat([context, first, targets]).permute(1, 0, 2, 3).contiguous()  # [C,F,h,w]

    # 3. side-branch input: readout at the cameras of frames start + 4m, context slots empty
    condition = side_condition(memory.read(cams[a : a + k + 1], (h, w)), nc)  # [C+1,F,h,w]
    return {
        "latents": latents.float(),
        "condition": condition,
        "num_clean": nc + 1,
        "text": tensors.get("text"),
        "memory": memory,
    }


def written_keys(memory_kind: str, memory_frames: str) -> tuple[str, ...]:
    """The shard tensors a `memory_kind` memory written from `memory_frames` reads: the
    latents, and for an RGB memory the frames it observes."""
    if memory_frames not in WRITTEN_FROM:
        raise ValueError(f"`memory_frames` must be one of {MEMORY_FRAMES}, got {memory_frames!r}")
    latents, frames = WRITTEN_FROM[memory_frames]
    return (latents, frames) if memory_kind == "rgb" else (latents,)


def _check_written(present, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in present]
    if missing:
        raise ValueError(
            f"{where}: the memory needs {missing}: preprocess with `keep_frames` (an rgb "
            "memory's frames) and `decoded_writes` (decoded frames)"
        )


class ShardDataset(Dataset):
    """Every (clip, chunk) of a shard folder; item i -> `chunk_sample` without the memory.

    The folder is validated at construction (`check_shard_dir`): a bad folder fails before
    training starts, naming the file.
    """

    def __init__(
        self,
        root,
        context_latents: int = 2,
        voxel_size: float | str | None = FOOTPRINT,
        memory_dtype: torch.dtype = torch.bfloat16,
        fusion: str = DEFAULT_FUSION,
        cache_shards: int = 8,
        memory_kind: str = "latent",
        encode=None,
        subcells: int = DEFAULT_SUBCELLS,
        memory_frames: str = "gt",
        sky_distance: float | None = None,
    ):
        self.headers = check_shard_dir(root)
        first = self.headers[0]
        self.channels, self.latent_hw = first["channels"], tuple(first["latent_hw"])
        self.chunk_frames = first["chunk_frames"]
        check_context(context_latents, self.chunk_frames)  # before any training starts
        self.context_latents, self.voxel_size = context_latents, voxel_size
        self.memory_dtype, self.fusion = memory_dtype, fusion
        self.memory_kind, self.encode, self.subcells = memory_kind, encode, subcells
        self.memory_frames, self.sky_distance = memory_frames, sky_distance
        keys = written_keys(memory_kind, memory_frames)
        for hd in self.headers:  # every shard, before training starts
            _check_written(hd["shapes"], keys, hd["path"])
        self.items = [
            (i, c)
            for i, hd in enumerate(self.headers)
            for c in range(hd["shapes"]["chunk_latents"][0])
        ]
        self._load = lru_cache(maxsize=cache_shards)(load_shard)

    def __len__(self) -> int:
        return len(self.items)

    def groups(self) -> dict[int, list[int]]:
        """num_context -> item indices with that many context latents (a batch stacks)."""
        out: dict[int, list[int]] = {}
        for idx, (_, c) in enumerate(self.items):
            out.setdefault(num_context(c, self.context_latents), []).append(idx)
        return dict(sorted(out.items()))

    def __getitem__(self, index: int) -> dict:
        shard, chunk = self.items[index]
        tensors, meta = self._load(self.headers[shard]["path"])
        sample = chunk_sample(
            tensors, meta, chunk, self.context_latents, self.voxel_size, self.memory_dtype,
            self.fusion, self.memory_kind, self.encode, self.subcells, self.memory_frames,
            self.sky_distance,
        )  # fmt: skip
        del sample["memory"]
        return sample


class StepBatches:
    """Batch indices per training step, a pure function of (seed, step, rank).

    Each step draws one group (weighted by its size) and `batch_size x world_size` items of
    it with replacement; rank r takes the r-th slice. Iterating yields the batches of steps
    `start_step .. max_steps - 1`, so resuming at a step resumes the data position exactly.
    """

    def __init__(
        self,
        groups: dict[int, list[int]],
        batch_size: int,
        seed: int,
        start_step: int,
        max_steps: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        self.groups = [g for g in groups.values() if g]
        self.weights = [len(g) for g in self.groups]
        self.batch_size, self.seed = batch_size, seed
        self.start_step, self.max_steps = start_step, max_steps
        self.rank, self.world_size = rank, world_size

    def indices(self, step: int) -> list[int]:
        rng = random.Random(f"mirage-batch-{self.seed}-{step}")
        group = rng.choices(self.groups, weights=self.weights)[0]
        picks = [rng.choice(group) for _ in range(self.batch_size * self.world_size)]
        return picks[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step)

    def __iter__(self):
        for step in range(self.start_step, self.max_steps):
            yield self.indices(step)


def collate(samples: list[dict], text_dim: int) -> dict:
    """Stack samples of one group; text padded with zeros to the longest (zeros = no text)."""
    nc = {s["num_clean"] for s in samples}
    if len(nc) != 1:
        raise ValueError(f"a batch must share num_clean, got {sorted(nc)}")
    texts = [s["text"] for s in samples]
    L = max([1] + [len(t) for t in texts if t is not None])
    text = torch.zeros(len(samples), L, text_dim)
    for i, t in enumerate(texts):
        if t is not None:
            if t.shape[-1] != text_dim:
                raise ValueError(f"shard text has dim {t.shape[-1]}, the model wants {text_dim}")
            text[i, : len(t)] = t.float()
    return {
        "latents": torch.stack([s["latents"] for s in samples]),  # [B,C,F,h,w]
        "condition": torch.stack([s["condition"] for s in samples]),  # [B,C+1,F,h,w]
        "num_clean": nc.pop(),
        "text": text,  # [B,L,D]
    }
