"""Training samples read from the RGB point cache (the paper's explicit-RGB ablation)."""

import pytest
import torch

from mirage.data.shards import load_shard, shard_name
from mirage.geometry import Cameras
from mirage.models.loading import tiny_components
from mirage.models.vae import VideoVAE
from mirage.training.config import TrainConfig
from mirage.training.preprocess import PreprocessConfig, preprocess
from mirage.training.samples import ShardDataset, chunk_sample

SMALL = dict(num_clips=1, num_frames=17, chunk_frames=9, height=32, width=32, kind="indoor",
             num_dynamic=0, trajectories=("pan_right",), progress=False, threads=1)  # fmt: skip


@pytest.fixture(scope="module")
def rgb_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("rgb-shards")
    preprocess(PreprocessConfig(out=str(out), keep_frames=True, **SMALL))
    return out


def test_rgb_readout_at_a_stored_view_is_the_encoded_render_of_that_frame(rgb_shards):
    """Chunk 1 starts at aligned frame 2, which the cache holds (with frames 0 and 1): the
    readout of its slot is the VAE latent of the cache's render at frame 2's camera, and that
    render is frame 2 itself except where a point of frame 0 or 1 lies slightly nearer."""
    vae = VideoVAE(tiny_components(0).vae)
    tensors, meta = load_shard(rgb_shards / shard_name(0))
    s = chunk_sample(tensors, meta, 1, context_latents=2, memory_kind="rgb",
                     encode=vae.encode_images)  # fmt: skip
    nc = s["num_clean"] - 1  # context slots before the first frame's slot
    assert s["condition"][-1, nc].all()
    images, mask, _ = s["memory"].render(Cameras(tensors["K"][2:3], tensors["c2w"][2:3], 32, 32))
    torch.testing.assert_close(s["condition"][:-1, nc], vae.encode_images(images)[0])
    frame = tensors["frames"][2].float() / 255
    exact = ((images[0] - frame).abs().amax(0) < 1e-6).float().mean()
    assert mask.all() and exact > 0.7 and (images[0] - frame).abs().mean() < 0.02
    lat = chunk_sample(tensors, meta, 1, context_latents=2)
    assert torch.equal(s["latents"], lat["latents"])  # the targets do not depend on the memory


def test_rgb_memory_needs_frames_and_a_vae(rgb_shards, shards):
    with pytest.raises(ValueError, match="keep_frames"):
        ShardDataset(shards, memory_kind="rgb", encode=lambda x: x)
    with pytest.raises(ValueError, match="`vae`"):
        TrainConfig(data="d", out="o", memory="rgb")
    with pytest.raises(ValueError, match="`memory`"):
        TrainConfig(data="d", out="o", memory="points")
    ds = ShardDataset(rgb_shards, memory_kind="rgb", encode=VideoVAE(tiny_components(0).vae)
                      .encode_images)  # fmt: skip
    assert ds[1]["condition"].shape[0] == 17


def test_an_rgb_run_records_no_latent_memory_knobs():
    from dataclasses import asdict

    from mirage.training.config import LATENT_MEMORY_KNOBS

    rgb = TrainConfig(data="d", out="o", memory="rgb", vae="v", fusion="mean", subcells=2)
    rec = rgb.record()
    assert all(rec[k] is None for k in LATENT_MEMORY_KNOBS)  # they configured nothing
    kept = {k: v for k, v in asdict(rgb).items() if k not in LATENT_MEMORY_KNOBS}
    assert {k: rec[k] for k in kept} == kept
    latent = TrainConfig(data="d", out="o", fusion="latest", subcells=1)
    assert latent.record() == asdict(latent) and latent.record()["fusion"] == "latest"
