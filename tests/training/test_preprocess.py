"""`mirage preprocess` and `mirage train` on the command line: shards, resume, split, bad data."""

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from mirage.cli import app
from mirage.data.datasets import SyntheticClipDataset
from mirage.data.shards import check_shard_dir, load_shard, shard_name
from mirage.models.loading import tiny_components
from mirage.models.vae import VideoVAE
from mirage.training.preprocess import PreprocessConfig, preprocess

SMALL = dict(num_clips=2, num_frames=17, chunk_frames=9, height=32, width=32, kind="indoor",
             num_dynamic=0, trajectories=("orbit",), progress=False, threads=1)  # fmt: skip


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("pre")
    preprocess(PreprocessConfig(out=str(out), **SMALL))
    return out


def test_synthetic_shards_hold_what_training_needs(written):
    headers = check_shard_dir(written)
    assert [h["path"].split("/")[-1] for h in headers] == [shard_name(0), shard_name(1)]
    tensors, meta = load_shard(written / shard_name(1))
    clip = SyntheticClipDataset(2, 17, 32, 32, kind="indoor", trajectories=("orbit",))[1]
    vae = VideoVAE(tiny_components(0).vae)
    aligned = [0, 4, 8, 12, 16]
    assert torch.equal(tensors["c2w"], clip["c2w"][aligned].float())
    assert torch.equal(tensors["depth"], clip["depth"][aligned])
    assert torch.equal(tensors["exclude"], (clip["dynamic_mask"] | clip["sky_mask"])[aligned])
    # chunk c's latents are the VAE's encoding of frames 8c .. 8c + 8 as one clip
    torch.testing.assert_close(tensors["chunk_latents"][1], vae.encode_video(clip["frames"][8:17]))
    torch.testing.assert_close(
        tensors["image_latents"][3], vae.encode_images(clip["frames"][12:13])[0]
    )
    assert meta["text"] == "null" and meta["source"]["trajectory"] == "orbit"
    index = json.loads((written / "index.json").read_text())
    assert index["config"]["num_frames"] == 17


def test_keep_frames_stores_the_aligned_supersampled_frames_as_bytes(tmp_path):
    cfg = {**SMALL, "num_clips": 1}
    preprocess(PreprocessConfig(out=str(tmp_path), keep_frames=True, supersample=2, **cfg))
    tensors, _ = load_shard(tmp_path / shard_name(0))
    clip = SyntheticClipDataset(1, 17, 32, 32, kind="indoor", trajectories=("orbit",),
                                supersample=2)[0]  # fmt: skip
    want = (clip["frames"][[0, 4, 8, 12, 16]] * 255).round().to(torch.uint8)
    assert tensors["frames"].dtype == torch.uint8 and torch.equal(tensors["frames"], want)
    # the aligned latents are those of the supersampled frames, depth stays exact
    torch.testing.assert_close(tensors["depth"], clip["depth"][[0, 4, 8, 12, 16]])


def test_resume_skips_written_shards(written, monkeypatch):
    before = {p.name: p.stat().st_mtime_ns for p in written.glob("clip-*")}
    (written / shard_name(1)).unlink()

    def only_clip_1(self, i):
        assert i == 1, f"clip {i} was already written"
        return original(self, i)

    original = SyntheticClipDataset.__getitem__
    monkeypatch.setattr(SyntheticClipDataset, "__getitem__", only_clip_1)
    preprocess(PreprocessConfig(out=str(written), **SMALL))
    assert (written / shard_name(0)).stat().st_mtime_ns == before[shard_name(0)]
    assert (written / shard_name(1)).is_file()


def test_cli_preprocess_and_train(tmp_path):
    runner = CliRunner()
    shards = tmp_path / "s"
    args = ["--out", str(shards), "--clips", "1", "--frames", "9", "--chunk-frames", "9"]
    res = runner.invoke(app, ["preprocess", *args, "--size", "32x32", "--kind", "indoor"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "--data", str(shards), "--out", str(tmp_path / "o"),
                              "--stage", "1", "--steps", "1", "--warmup", "0"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "side_branch.safetensors").is_file()
    (shards / shard_name(0)).unlink()
    res = runner.invoke(app, ["train", "--data", str(shards), "--out", str(tmp_path / "o2")])
    flat = "".join(res.output.replace("│", "").split())  # undo rich's boxed line wrapping
    assert res.exit_code != 0 and shard_name(0) in flat


def test_bad_config_refused():
    with pytest.raises(ValueError, match="num_frames"):
        PreprocessConfig(out="x", num_frames=20, chunk_frames=9)
    with pytest.raises(ValueError, match="chunk_frames"):
        PreprocessConfig(out="x", num_frames=17, chunk_frames=8)


def test_realestate10k_layout_with_depth_and_mask_files(tmp_path):
    from mirage.data.world import render_world

    size = dict(num_frames=9, height=32, width=32, progress=False)
    render_world(tmp_path / "clips" / "walk", seed=2, kind="outdoor", num_dynamic=1,
                 trajectory="pan_left", **size)  # fmt: skip
    out = tmp_path / "shards"
    src = str(tmp_path / "clips")
    preprocess(PreprocessConfig(out=str(out), source=src, chunk_frames=9, threads=1, **size))
    tensors, meta = load_shard(out / shard_name(0))
    depth = load_file(str(tmp_path / "clips/walk/depth.safetensors"))["depth"]
    masks = load_file(str(tmp_path / "clips/walk/masks.safetensors"))
    aligned = [0, 4, 8]
    assert torch.equal(tensors["depth"], depth[aligned])
    assert torch.equal(tensors["exclude"], (masks["dynamic"] | masks["sky"]).bool()[aligned])
    assert tensors["exclude"].any()
    assert meta["source"] == {"index": 0, "clip": "walk", "start": 0, "stride": 1}
    assert tensors["chunk_latents"].shape == (1, 3, 16, 4, 4)


def test_realestate10k_without_depth_is_refused(tmp_path, monkeypatch):
    import mirage.training.preprocess as P
    from mirage.data.world import render_world

    def no_vae(*a, **k):  # the refusal must come before any model loads
        raise AssertionError("VAE loaded before the depth files were checked")

    monkeypatch.setattr(P, "load_vae", no_vae)

    render_world(tmp_path / "clips" / "walk", seed=2, num_frames=9, height=32, width=32,
                 progress=False)  # fmt: skip
    (tmp_path / "clips/walk/depth.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="depth.safetensors"):
        preprocess(PreprocessConfig(out=str(tmp_path / "s"), source=str(tmp_path / "clips"),
                                    num_frames=9, chunk_frames=9, height=32, width=32,
                                    progress=False))  # fmt: skip
