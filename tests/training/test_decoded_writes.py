"""Decoded writes: training memories that hold what generation writes (chunks decoded as video,
re-encoded), checked against closed forms, the VAE itself and a hand-built memory."""

from pathlib import Path

import pytest
import torch

from mirage.data.shards import load_shard, read_shard_header, shard_name
from mirage.geometry import Cameras
from mirage.memory import LatentSpatialMemory
from mirage.models.loading import tiny_components
from mirage.models.vae import VideoVAE
from mirage.training.config import TrainConfig
from mirage.training.preprocess import PreprocessConfig, decoded_writes, preprocess
from mirage.training.samples import ShardDataset, chunk_sample

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "add_decoded_writes.py"
SMALL = dict(num_clips=1, num_frames=17, chunk_frames=9, height=32, width=32, kind="indoor",
             num_dynamic=0, trajectories=("pan_right",), progress=False, threads=1,
             keep_frames=True)  # fmt: skip


class SlotVAE:
    """Latent slot m decodes to frames 4m-3 .. 4m at its value (slot 0 to frame 0); encoding a
    frame adds 1. Records what each decode was given."""

    def __init__(self):
        self.decoded = []

    def decode(self, z):  # [k+1,C,h,w] -> [4k+1,C,h,w] (channels stand in for RGB)
        self.decoded.append(z.clone())
        return torch.cat([z[:1], z[1:].repeat_interleave(4, 0)])

    def encode_images(self, x):
        return x + 1


def test_each_chunk_decodes_from_the_latent_written_last():
    torch.manual_seed(0)
    n, k = 3, 2
    chunks = torch.rand(n, k + 1, 3, 2, 2) * 0.5  # values stay inside [0, 1] after decoding
    image = torch.rand(1 + n * k, 3, 2, 2) * 0.5
    vae = SlotVAE()
    latents, frames = decoded_writes(vae, chunks, image)
    assert torch.equal(latents[0], image[0])  # the given first frame, as it was encoded
    for c in range(n):
        # slot j of chunk c is decoded to frame 4j: it comes back as its own value, encoded (+1)
        torch.testing.assert_close(latents[1 + c * k : 1 + (c + 1) * k], chunks[c, 1:] + 1)
        torch.testing.assert_close(frames[c * k : (c + 1) * k], chunks[c, 1:])
        # the decode was given [the last latent written | the chunk's targets]
        first = image[0] if c == 0 else chunks[c - 1, k] + 1
        torch.testing.assert_close(vae.decoded[c][0], first)
        torch.testing.assert_close(vae.decoded[c][1:], chunks[c, 1:])


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory):
    """A shard folder written plainly, then given its decoded writes by
    scripts/add_decoded_writes.py (preprocess again from the folder's own index)."""
    import importlib.util

    out = tmp_path_factory.mktemp("decoded-shards")
    preprocess(PreprocessConfig(out=str(out), **SMALL))
    before = load_shard(out / shard_name(0))[0]
    vae_dir = out.parent / "tiny-vae"
    tiny_components(0).vae.save_pretrained(vae_dir)  # the random tiny VAE preprocess used
    spec = importlib.util.spec_from_file_location("add_decoded_writes", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--shards", str(out), "--vae", str(vae_dir)])
    return out, before


def test_preprocess_adds_decoded_writes_without_touching_the_rest(upgraded):
    out, before = upgraded
    after, _ = load_shard(out / shard_name(0))
    assert set(after) == set(before) | {"decoded_latents", "decoded_frames"}
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    # chunk 0 by hand: decoded from [frame 0's image latent | its targets], aligned frames
    # 4 and 8 re-encoded alone
    vae = VideoVAE(tiny_components(0).vae)
    lat = before["chunk_latents"][0]
    video = vae.decode(torch.cat([before["image_latents"][:1], lat[1:]]))
    torch.testing.assert_close(after["decoded_latents"][1:3], vae.encode_images(video[4::4]))
    assert torch.equal(after["decoded_latents"][0], before["image_latents"][0])
    assert torch.equal(after["decoded_frames"][0], before["frames"][0])
    want = (video[4::4] * 255).round().to(torch.uint8)
    assert (after["decoded_frames"][1:3].int() - want.int()).abs().max() <= 1


def test_a_decoded_sample_writes_and_opens_with_the_decoded_latents(shards):
    tensors, meta = load_shard(shards / shard_name(0))  # 17 frames, chunks of 9 (k = 2)
    tensors = {**tensors, "decoded_latents": tensors["image_latents"] * 0.5 + 0.25}
    s = chunk_sample(tensors, meta, 1, context_latents=2, memory_frames="decoded")
    gt = chunk_sample(tensors, meta, 1, context_latents=2)
    lat, ref_lat = s["latents"].permute(1, 0, 2, 3), gt["latents"].permute(1, 0, 2, 3)
    assert torch.equal(lat[2], tensors["decoded_latents"][2])  # the first-frame slot
    assert torch.equal(lat[[0, 1, 3, 4]], ref_lat[[0, 1, 3, 4]])  # context and targets stay
    ref = LatentSpatialMemory(16, voxel_size="footprint", subcells=2)
    cams = Cameras(tensors["K"], tensors["c2w"], 32, 32)
    for j in range(3):  # aligned frames 0, 4, 8, one insert each
        ref.insert(tensors["decoded_latents"][j : j + 1], tensors["depth"][j : j + 1], cams[j],
                   tensors["exclude"][j : j + 1])  # fmt: skip
    r = ref.read(cams[2:5], (4, 4))
    assert r.mask.any()
    assert torch.equal(s["condition"][:16, 2:], r.latents.float().permute(1, 0, 2, 3))


def test_decoded_memory_needs_decoded_shards(shards, upgraded):
    with pytest.raises(ValueError, match="decoded_writes"):
        ShardDataset(shards, memory_frames="decoded")
    with pytest.raises(ValueError, match="`memory_frames`"):
        TrainConfig(data="d", out="o", memory_frames="generated")
    out, _ = upgraded
    assert "decoded_latents" in read_shard_header(out / shard_name(0))["shapes"]
    data = ShardDataset(out, memory_frames="decoded", memory_kind="rgb", encode=lambda x: x)
    assert len(data) == 2


def test_copy_makes_the_decoded_writes_again_and_leaves_the_source(upgraded):
    """`--out NEW` with another VAE: NEW's decoded writes are that VAE's (chunk 0 by hand), the
    rest of each shard and the whole source folder stay as they were."""
    import importlib.util

    src, _ = upgraded
    before = load_shard(src / shard_name(0))[0]
    other = VideoVAE(tiny_components(1).vae)
    vae_dir = src.parent / "tiny-vae-1"
    other.vae.save_pretrained(vae_dir)
    spec = importlib.util.spec_from_file_location("add_decoded_writes", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    new = src.parent / "copied"
    script.main(["--shards", str(src), "--vae", str(vae_dir), "--out", str(new)])
    after = load_shard(new / shard_name(0))[0]
    assert set(after) == set(before)
    for key in set(before) - {"decoded_latents", "decoded_frames"}:
        assert torch.equal(after[key], before[key]), key
    lat = before["chunk_latents"][0]
    video = other.decode(torch.cat([before["image_latents"][:1], lat[1:]]))
    torch.testing.assert_close(after["decoded_latents"][1:3], other.encode_images(video[4::4]))
    assert not torch.allclose(after["decoded_latents"][1:3], before["decoded_latents"][1:3])
    unchanged = load_shard(src / shard_name(0))[0]
    assert all(torch.equal(unchanged[k], before[k]) for k in before)
    assert (new / "index.json").read_text() == (src / "index.json").read_text()
