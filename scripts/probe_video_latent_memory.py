"""Experiment: does the tiny DiT copy what is visible when the memory holds the latents it
generates (video latents) instead of re-encoded image latents?

    OMP_NUM_THREADS=1 python scripts/probe_video_latent_memory.py --work out/tiny-v2 \
        --out out/probe-video-memory --steps 600

Trains stage 0 exactly as scripts/train_mirage_tiny.py (same shards, initial weights and
recipe) except that the memory of every sample holds, for the aligned frames of earlier
chunks, those chunks' target latents (`chunk_latents[j, 1:]`: what the DiT outputs) instead
of the frames' image latents; frame 0 stays its image latent (slot 0 of chunk 0 is one), and
the model's clean first-frame slot stays the image latent. Compare `loss_covered` /
`loss_uncovered` in `<out>/log.jsonl` with the main run's log at the same steps. For the tiny
v2 VAE a linear map from image latents to the video latents of the same frame explains only
~54 % of their variance, which is the hypothesis this tests. Generation does not support this
memory; this script is a measurement, not a recipe.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mirage.training.train as train_module
from mirage.training.samples import ShardDataset, chunk_sample


class VideoLatentMemoryShards(ShardDataset):
    def __getitem__(self, index: int) -> dict:
        shard, chunk = self.items[index]
        tensors, meta = self._load(self.headers[shard]["path"])
        k = (meta["chunk_frames"] - 1) // 4
        mem = tensors["image_latents"].clone()
        for j in range(chunk):  # chunk j's targets sit at aligned frames 1 + jk .. (j + 1)k
            mem[1 + j * k : 1 + (j + 1) * k] = tensors["chunk_latents"][j, 1:]
        sample = chunk_sample(
            {**tensors, "image_latents": mem}, meta, chunk, self.context_latents,
            self.voxel_size, self.memory_dtype, self.fusion,
        )  # fmt: skip
        nc = sample["num_clean"] - 1  # the first-frame slot: keep the true image latent
        sample["latents"][:, nc] = tensors["image_latents"][chunk * k].float()
        del sample["memory"]
        return sample


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="out/tiny-v2", help="the main run's work folder")
    p.add_argument("--out", default="out/probe-video-memory")
    p.add_argument("--steps", type=int, default=600)
    args = p.parse_args(argv)
    from dataclasses import replace

    from mirage.training.config import tiny_stages

    work = Path(args.work)
    cfg = tiny_stages(
        str(work / "shards"), args.out, transformer=str(work / "init_transformer"),
        batch_size=8, max_steps=args.steps, lr=4e-4, threads=1, num_workers=0,
        checkpoint_every=100, resume="latest", progress=False,
    )[0]  # fmt: skip
    # the main run's lr over its first 600 of 2000 cosine steps is 4e-4 .. 3.6e-4: constant
    # 4e-4 here keeps the two runs comparable step for step
    cfg = replace(cfg, out=args.out, schedule="constant")
    train_module.ShardDataset = VideoLatentMemoryShards  # the one change
    train_module.train(cfg)


if __name__ == "__main__":
    main()
