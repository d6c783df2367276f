"""Training samples: layout like generation, readout equal to MiragePipeline's, batch sampler."""

import pytest
import torch

import mirage.pipeline.profiles as profiles
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
    ref = LatentSpatialMemory(16, voxel_size="footprint", subcells=2)  # the training default
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


@pytest.mark.parametrize("sky", [None, 1000.0])
def test_readout_equals_pipeline_readout(monkeypatch, sky):
    """Same frames, depth, masks and cameras: training and MiragePipeline see the same input,
    with the sky dropped or kept as a far dome (then the readout sees more cells)."""
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
    real = profiles.side_condition  # the mirage profile's builder, called per chunk
    monkeypatch.setattr(
        profiles, "side_condition", lambda r, nc: conditions.append(real(r, nc)) or real(r, nc)
    )
    pipe = MiragePipeline(pipe_model, vae, comp.scheduler, GroundTruthDepth(scene),
                          GroundTruthMasks(scene))  # fmt: skip
    cfg = GenerationConfig(chunk_frames=9, num_inference_steps=1, sky_distance=sky)
    pipe.generate(gt.rgb[0], cams, config=cfg, progress=False)
    assert len(conditions) == 2

    exclude = gt.dynamic_mask | gt.sky_mask
    tensors = clip_tensors(vae, gt.rgb, gt.depth, exclude, cams.K, cams.c2w, 9)
    meta = {"chunk_frames": 9, "channels": 16, "latent_hw": [4, 4], "height": 32, "width": 32}
    for c in range(2):
        ours = chunk_sample(tensors, meta, c, context_latents=2, sky_distance=sky)["condition"]
        assert ours.shape == conditions[c].shape
        assert torch.equal(ours, conditions[c]), f"chunk {c}"
    assert conditions[1][16].any() and exclude.any()
    if sky is not None:  # the sky cells this scene shows are read now
        dropped = chunk_sample(tensors, meta, 1, context_latents=2)["condition"][16]
        assert conditions[1][16].sum() > dropped.sum() and gt.sky_mask.any()


class _Truth:
    """A pipeline run that "generates" the ground truth, recording what the model is given."""

    def __init__(self, monkeypatch, chunk_frames, num_frames, depth=None, pose_scale=1.0):
        comp = tiny_components(0)
        self.vae = VideoVAE(comp.vae)
        self.scene = make_scene(5, "outdoor", num_dynamic=1)
        cams = make_trajectory("orbit", self.scene.start_camera(32, 32), num_frames,
                               up=(0.0, 1.0, 0.0))  # fmt: skip
        self.gt = self.scene.render(cams, torch.arange(num_frames))
        c2w = cams.c2w.clone()
        c2w[:, :3, 3] *= pose_scale  # poses known only up to scale
        self.cams = Cameras(cams.K, c2w, 32, 32)
        starts = iter(range(0, num_frames, chunk_frames - 1))
        monkeypatch.setattr(
            self.vae, "decode", lambda z: self.gt.rgb[(a := next(starts)) : a + chunk_frames]
        )
        self.clean, self.cond, self.memories = [], [], []
        real_read = LatentSpatialMemory.read
        step = chunk_frames - 1
        # the "denoised" targets are the true video latents, as the shard stores them
        truth = [self.vae.encode_video(self.gt.rgb[a : a + chunk_frames])[1:]
                 for a in range(0, num_frames - 1, step)]  # fmt: skip

        def sample(tr, sch, clean, noise, *args, **kw):
            self.clean.append(clean.clone())
            self.cond.append(args[1].clone())
            return truth[len(self.clean) - 1]

        def read(memory, *args, **kw):
            self.memories.append(memory.positions.clone())
            return real_read(memory, *args, **kw)

        monkeypatch.setattr(world_model, "sample_chunk", sample)
        monkeypatch.setattr(LatentSpatialMemory, "read", read)
        self.depth = depth or GroundTruthDepth(self.scene)
        model = MirageTransformer.from_base(comp.transformer)
        self.pipe = MiragePipeline(model, self.vae, comp.scheduler, self.depth,
                                   GroundTruthMasks(self.scene))  # fmt: skip

    def generate(self, **cfg):
        cfg = GenerationConfig(num_inference_steps=1, **cfg)
        return self.pipe.generate(self.gt.rgb[0], self.cams, config=cfg, progress=False)

    def shard(self, chunk_frames, metric=True):
        aligned = torch.arange(0, len(self.cams), 4)
        depth = self.depth(self.gt.rgb[aligned], self.cams[aligned], aligned)
        full = torch.zeros_like(self.gt.depth)
        full[aligned] = depth
        exclude = self.pipe.masks(self.gt.rgb, self.cams, torch.arange(len(self.cams)))
        tensors = clip_tensors(self.vae, self.gt.rgb, full, exclude, self.cams.K, self.cams.c2w,
                               chunk_frames)  # fmt: skip
        meta = {"chunk_frames": chunk_frames, "channels": 16, "latent_hw": [4, 4], "height": 32,
                "width": 32, "depth_metric": metric}  # fmt: skip
        return tensors, meta


@pytest.mark.parametrize("chunk_frames", [5, 9, 13])
def test_context_rule_grid_training_equals_generation(monkeypatch, chunk_frames):
    k = (chunk_frames - 1) // 4
    for context in range(k + 1):
        run = _Truth(monkeypatch, chunk_frames, 1 + 2 * (chunk_frames - 1))
        run.generate(chunk_frames=chunk_frames, context_latents=context)
        tensors, meta = run.shard(chunk_frames)
        for c in range(2):
            ours = chunk_sample(tensors, meta, c, context_latents=context)
            nc = ours["num_clean"]
            assert nc == len(run.clean[c]) == (1 if c == 0 else context + 1), (k, context, c)
            assert torch.equal(ours["condition"], run.cond[c]), (k, context, c)
            clean = ours["latents"][:, :nc].permute(1, 0, 2, 3)
            torch.testing.assert_close(clean, run.clean[c], rtol=0, atol=1e-4)


def test_context_longer_than_a_chunk_is_refused_by_both(shards):
    with pytest.raises(ValueError, match=r"`context_latents` must be in 0\.\.2"):
        GenerationConfig(chunk_frames=9, context_latents=3)
    tensors, meta = load_shard(shards / shard_name(0))  # chunks of 9
    with pytest.raises(ValueError, match=r"`context_latents` must be in 0\.\.2"):
        chunk_sample(tensors, meta, 1, context_latents=3)
    with pytest.raises(ValueError, match=r"`context_latents` must be in 0\.\.2"):
        ShardDataset(shards, context_latents=3)


class _PerFrameScale:
    """Ground-truth depth times a different unknown factor per frame, declared up to scale."""

    metric = False

    def __init__(self, scene):
        self.gt = GroundTruthDepth(scene)

    def __call__(self, frames, cameras, idx):
        factor = 0.5 + 0.3 * idx.float()  # frame 0: 0.5, frame 4: 1.7, frame 8: 2.9, ...
        return self.gt(frames, cameras, idx) * factor[:, None, None]


@pytest.mark.parametrize("pose_scale", [1.0, 0.4])
def test_training_memory_equals_generation_memory_for_relative_depth(monkeypatch, pose_scale):
    scene = make_scene(5, "outdoor", num_dynamic=1)
    run = _Truth(monkeypatch, 9, 17, depth=_PerFrameScale(scene), pose_scale=pose_scale)
    run.generate(chunk_frames=9, context_latents=2)
    generated = run.memories[1]  # the memory chunk 1 reads: frames 0, 4 and 8
    tensors, meta = run.shard(9, metric=False)
    ours = chunk_sample(tensors, meta, 1)["memory"].positions
    assert ours.shape == generated.shape and len(ours) > 10
    centre = run.cams.centers[0]
    rel = (ours - generated).norm(dim=1) / (generated - centre).norm(dim=1)
    assert rel.max() < 0.01
    # inserted as it comes (the old training path), the same depth builds another memory
    unaligned = chunk_sample(tensors, dict(meta, depth_metric=True), 1)["memory"].positions
    assert unaligned.shape != generated.shape or (unaligned - generated).norm(dim=1).max() > 0.5


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
