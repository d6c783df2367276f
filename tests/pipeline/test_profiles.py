"""Conditioning profiles: what a side branch of each profile reads, and a converted official
checkpoint generating end to end with the profile taken from its file."""

import pytest
import torch
from safetensors.torch import save_file

from mirage.data.trajectories import make_trajectory
from mirage.memory import Readout
from mirage.models.convert import convert_checkpoint
from mirage.models.loading import TINY_MODEL_DIR, load_wan_components, tiny_components
from mirage.models.transformer import MirageTransformer
from mirage.models.vae import VideoVAE
from mirage.pipeline import GenerationConfig
from mirage.pipeline.conditioning import (
    official_condition,
    score_latent,
    side_condition,
    spatia_condition,
)
from mirage.pipeline.loading import build_pipeline

C, H, W = 16, 32, 48  # tiny VAE: 8x spatial, z 16


@pytest.fixture(scope="module")
def vae():
    return VideoVAE(tiny_components(0).vae)


def _readout(T, gen, h=H // 8, w=W // 8):
    mask = torch.rand(T, 1, h, w, generator=gen) > 0.3
    latents = torch.randn(T, C, h, w, generator=gen) * mask
    return Readout(latents, mask, mask.float() * 2)


def test_official_side_input_is_readout_then_the_encoded_constant_video(vae):
    gen = torch.Generator().manual_seed(0)
    chunk, ctx = _readout(3, gen), _readout(2, gen)  # first + 2 targets; 2 context slots
    score = score_latent(vae.encode_video, 5, (H, W))
    cond = official_condition(chunk, ctx, score)
    assert cond.shape == (2 * C, 5, H // 8, W // 8)
    # first half: the readout of [first | targets | context], in that order
    want_scene = torch.cat([chunk.latents, ctx.latents]).permute(1, 0, 2, 3)
    assert torch.equal(cond[:C], want_scene)
    # second half: a white 17-frame clip through the VAE, encoded here independently
    white = torch.ones(1, 3, 17, H, W) * 2 - 1  # the VAE's own [-1, 1] input space
    z = vae.vae.encode(white).latent_dist.mode()[0]  # [C,5,h,w]
    mean = torch.tensor(vae.vae.config.latents_mean).view(-1, 1, 1, 1)
    std = torch.tensor(vae.vae.config.latents_std).view(-1, 1, 1, 1)
    torch.testing.assert_close(cond[C:], (z - mean) / std, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cond[C:, 0], cond[C:, 1])  # causal VAE: frame 0 differs


def test_mirage_side_input_stays_latents_plus_mask():
    gen = torch.Generator().manual_seed(1)
    r = _readout(3, gen)
    cond = side_condition(r, 2)
    assert cond.shape == (C + 1, 5, H // 8, W // 8)
    assert torch.equal(cond[:, :2], torch.zeros(C + 1, 2, H // 8, W // 8))  # context: nothing
    assert torch.equal(cond[:C, 2:], r.latents.permute(1, 0, 2, 3))
    assert torch.equal(cond[C, 2:], r.mask[:, 0].float())


def test_spatia_side_input_encodes_render_and_mask_videos(vae):
    gen = torch.Generator().manual_seed(2)
    covered = torch.rand(3, 1, H, W, generator=gen) > 0.5
    images = torch.rand(3, 3, H, W, generator=gen) * covered
    cond = spatia_condition(vae.encode_video, images, covered)
    assert cond.shape == (2 * C, 3, H // 8, W // 8)
    held = torch.cat(
        [images[:1], images[1:2].expand(4, -1, -1, -1), images[2:].expand(4, -1, -1, -1)]
    )
    torch.testing.assert_close(cond[:C], vae.encode_video(held).permute(1, 0, 2, 3))
    m = (covered.float() + 1) / 2  # Spatia's mask in [0, 1] of the VAE's input space
    m = torch.cat([m[:1], m[1:2].expand(4, -1, -1, -1), m[2:].expand(4, -1, -1, -1)])
    torch.testing.assert_close(
        cond[C:], vae.encode_video(m.expand(-1, 3, -1, -1)).permute(1, 0, 2, 3)
    )


@pytest.mark.parametrize("profile, other", [("official", "mirage"), ("mirage", "official")])
def test_a_side_branch_refuses_the_other_profiles_input(profile, other):
    base = tiny_components(0).transformer
    model = MirageTransformer.from_base(base, profile=profile)
    x, t, ctx = torch.randn(1, C, 3, 4, 4), torch.zeros(1, 3), torch.zeros(1, 1, 64)
    wrong = torch.zeros(1, C + 1 if other == "mirage" else 2 * C, 3, 4, 4)
    with pytest.raises(ValueError, match=f"profile '{profile}'.*the input of profile '{other}'"):
        model(x, t, ctx, wrong)
    right = torch.zeros(1, model.side_config["in_channels"], 3, 4, 4)
    assert model(x, t, ctx, right).shape == x.shape


def test_saved_file_records_its_profile_and_refuses_another_model(tmp_path):
    base = tiny_components(0).transformer
    path = tmp_path / "side.safetensors"
    MirageTransformer.from_base(base, profile="official").save_side_branch(path)
    with pytest.raises(ValueError, match="profile: file has 'official', model has 'mirage'"):
        MirageTransformer.from_base(base).load_side_branch(path)


def _official_checkpoint(tmp_path):
    """A DiffSynth-named official side branch at the embedded model's dims, random weights."""
    from tests.models.test_convert import to_diffsynth

    base = load_wan_components(TINY_MODEL_DIR, load_text_encoder=False).transformer
    model = MirageTransformer.from_base(base, side_every=2, profile="official")
    gen = torch.Generator().manual_seed(5)
    sd = {}
    for k, v in model.side_branch_state_dict().items():
        sd["pipe.vace." + to_diffsynth(k)] = torch.randn(v.shape, generator=gen) * 0.02
    src = tmp_path / "epoch-1.safetensors"
    save_file(sd, str(src))
    return src


def test_converted_official_checkpoint_generates_with_its_profile(tmp_path, monkeypatch):
    import json

    from mirage.synthetic import make_scene

    out = tmp_path / "official_side.safetensors"
    dims = json.loads((TINY_MODEL_DIR / "transformer" / "config.json").read_text())
    summary = convert_checkpoint(
        _official_checkpoint(tmp_path), out, num_layers=dims["num_layers"],
        num_attention_heads=dims["num_attention_heads"],
    )  # fmt: skip
    assert summary["profile"] == "official"
    scene = make_scene(3)
    pipe = build_pipeline(TINY_MODEL_DIR, branch=out, depth="gt", scene=scene)
    assert pipe.transformer.profile == "official"  # chosen from the file
    # the folder's readout copy is for its own (mirage-profile) branches: "auto" is off here
    assert pipe.defaults["readout_copy"] > 0 and pipe.resolve(GenerationConfig()).readout_copy == 0
    calls = []
    forward = MirageTransformer.forward

    def spy(self, latents, timestep, ehs, readout=None, side_scale=1.0, num_ref=0):
        calls.append((latents.shape[2], readout.shape, timestep[0].tolist(), num_ref))
        return forward(self, latents, timestep, ehs, readout, side_scale, num_ref)

    monkeypatch.setattr(MirageTransformer, "forward", spy)
    cams = make_trajectory("orbit", scene.start_camera(64, 64), 17)
    image = scene.render(cams[0]).rgb[0]
    cfg = GenerationConfig(chunk_frames=9, num_inference_steps=2)
    res = pipe.generate(image, cams, config=cfg, progress=False)
    assert torch.isfinite(res.frames).all() and res.frames.shape == (17, 3, 64, 64)
    assert res.metadata["profile"] == "official"
    refs = res.metadata["references"]
    assert refs[0] == [] and 1 <= len(refs[1]) <= 4  # auto: references on for official
    # chunk 2: [refs | first | 2 targets | 2 context], side input over all but the refs
    F, shape, t, R = calls[-1]
    assert R == len(refs[1]) and F == R + 3 + 2 and shape[1:3] == (2 * C, 5)
    assert t[: R + 1] == [0.0] * (R + 1) and t[-2:] == [0.0, 0.0] and min(t[R + 1 : R + 3]) > 0
    # memory guidance empties a readout, readout copy copies one; an official side input is
    # more than a readout: both refused
    n = len(calls)
    for name, value in (("memory_guidance", 1.5), ("readout_copy", 0.5)):
        bad = GenerationConfig(chunk_frames=9, num_inference_steps=2, **{name: value})
        with pytest.raises(ValueError, match=f"{name}.*mirage profile"):
            pipe.generate(image, cams, config=bad, progress=False)
    assert len(calls) == n  # before any denoising
