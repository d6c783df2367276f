"""Training samples: layout like generation, readout equal to MiragePipeline's, batch sampler."""

import pytest
import torch

import mirage.pipeline.world_model as world_model
from mirage.data.shards import load_shard, shard_name
from mirage.data.trajectories import make_trajectory
from mirage.geometry import Cameras
from mirage.memory import LatentSpatialMemory
from mirage.models.loading import tiny_components
from mirage.models.transformer import MirageTransformer
from mirage.models.vae import VideoVAE
from mirage.perception import GroundTruthDepth, GroundTruthMasks
from mirage.pipeline import GenerationConfig, MiragePipeline
from mirage.synthetic import make_scene
from mirage.training.preprocess import clip_tensors
from mirage.training.samples import ShardDataset, StepBatches, chunk_sample, collate


def test_layout_of_a_later_chunk(shards):
    tensors, meta = load_shard(shards / shard_name(0))  # 17 frames, chunks of 9 (k = 2)
    s = chunk_sample(tensors, meta, chunk=1, context_latents=2)
    lat = s["latents"].permute(1, 0, 2, 3)  # [F,C,h,w]
    assert s["num_clean"] == 3 and len(lat) == 5
    # context = the 2 target latents of chunk 0; first = image latent of frame 8; targets
    assert torch.equal(lat[0:2], tensors["chunk_latents"][0, 1:3])
    assert torch.equal(lat[2], tensors["image_latents"][2])
    assert torch.equal(lat[3:5], tensors["chunk_latents"][1, 1:3])
    cond = s["condition"]  # [C+1,F,h,w]
    assert cond.shape == (17, 5, 4, 4)
    assert not cond[:, :2].any()  # context slots: zeros and mask False
    # memory holds aligned frames 0, 4, 8; brute-force reference: one memory, one insert each
    ref = LatentSpatialMemory(16)
    cams = Cameras(tensors["K"], tensors["c2w"], 32, 32)
    for j in range(3):
        ref.insert(tensors["image_latents"][j : j + 1], tensors["depth"][j : j + 1], cams[j],
                   tensors["exclude"][j : j + 1])  # fmt: skip
    r = ref.read(cams[2:5], (4, 4))
    assert torch.equal(cond[16, 2:], r.mask[:, 0].float())
    assert torch.equal(cond[:16, 2:], r.latents.float().permute(1, 0, 2, 3))
    assert r.mask.any() and s["memory"].num_points == ref.num_points


def test_first_chunk_has_no_context(shards):
    tensors, meta = load_shard(shards / shard_name(0))
    s = chunk_sample(tensors, meta, chunk=0, context_latents=2)
    lat = s["latents"].permute(1, 0, 2, 3)
    assert s["num_clean"] == 1 and len(lat) == 3
    assert torch.equal(lat[0], tensors["image_latents"][0])
    assert s["memory"].num_points > 0  # frame 0 seeds the memory as in generation
    # frame 0 sees itself everywhere but in the excluded first latent column
    assert not s["condition"][16, 0, :, 0].any() and s["condition"][16, 0, :, 1:].all()


def test_readout_equals_pipeline_readout(monkeypatch):
    """Same frames, depth, masks and cameras: training and MiragePipeline see the same input."""
    comp = tiny_components(0)
    vae = VideoVAE(comp.vae)
    pipe_model = MirageTransformer.from_base(comp.transformer)
    scene = make_scene(5, "outdoor", num_dynamic=1)
    cams = make_trajectory("orbit", scene.start_camera(32, 32), 17, up=(0.0, 1.0, 0.0))
    gt = scene.render(cams, torch.arange(17))
    # the pipeline "generates" the ground truth: decode returns the true frames of the chunk
    chunk_starts = iter([0, 8])

    def decode_truth(latents):
        a = next(chunk_starts)
        return gt.rgb[a : a + 9]

    monkeypatch.setattr(vae, "decode", decode_truth)
    conditions = []
    real = world_model.side_condition
    monkeypatch.setattr(
        world_model, "side_condition", lambda r, nc: conditions.append(real(r, nc)) or real(r, nc)
    )
    pipe = MiragePipeline(pipe_model, vae, comp.scheduler, GroundTruthDepth(scene),
                          GroundTruthMasks(scene))  # fmt: skip
    pipe.generate(gt.rgb[0], cams, config=GenerationConfig(chunk_frames=9, num_inference_steps=1),
                  progress=False)  # fmt: skip
    assert len(conditions) == 2

    exclude = gt.dynamic_mask | gt.sky_mask
    tensors = clip_tensors(vae, gt.rgb, gt.depth, exclude, cams.K, cams.c2w, 9)
    meta = {"chunk_frames": 9, "channels": 16, "latent_hw": [4, 4], "height": 32, "width": 32}
    for c in range(2):
        ours = chunk_sample(tensors, meta, c, context_latents=2)["condition"]
        assert ours.shape == conditions[c].shape
        assert torch.equal(ours, conditions[c]), f"chunk {c}"
    assert conditions[1][16].any() and exclude.any()


def test_step_batches_pure_and_grouped(shards):
    ds = ShardDataset(shards, context_latents=2)
    groups = ds.groups()
    assert sorted(groups) == [0, 2] and len(ds) == 4  # 2 clips x 2 chunks
    a = StepBatches(groups, 3, seed=1, start_step=0, max_steps=6, rank=0, world_size=2)
    b = StepBatches(groups, 3, seed=1, start_step=0, max_steps=6, rank=1, world_size=2)
    later = StepBatches(groups, 3, seed=1, start_step=4, max_steps=6, rank=0, world_size=2)
    assert list(later) == list(a)[4:]  # resuming at a step resumes the data position
    for step in range(6):
        both = a.indices(step) + b.indices(step)
        assert any(set(both) <= set(g) for g in groups.values())  # one group per step
    batch = collate([ds[i] for i in a.indices(0)], text_dim=64)
    assert batch["latents"].shape[0] == 3 and batch["text"].shape[0] == 3


def test_collate_pads_text_with_zeros(shards):
    ds = ShardDataset(shards)
    s0, s1 = ds[0], ds[2]  # clip 0 has no text (null), clip 1 has 5 tokens
    assert s0["text"] is None and s1["text"].shape == (5, 64)
    batch = collate([s0, s1], 64)
    assert batch["text"].shape == (2, 5, 64)
    assert not batch["text"][0].any() and torch.equal(batch["text"][1], s1["text"])
    with pytest.raises(ValueError, match="num_clean"):
        collate([ds[0], ds[1]], 64)
