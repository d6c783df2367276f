"""Loading a local diffusers folder (complete, incomplete, sharded) and the tiny components."""

import json

import pytest
import torch

from mirage.models.loading import (
    load_wan_components,
    make_scheduler,
    tiny_components,
    wan22_ti2v_transformer_config,
)


@pytest.fixture(scope="module")
def tiny():
    return tiny_components(seed=0)


@pytest.fixture
def model_dir(tiny, tmp_path):
    tiny.transformer.save_pretrained(tmp_path / "transformer")
    tiny.vae.save_pretrained(tmp_path / "vae")
    tiny.scheduler.save_pretrained(tmp_path / "scheduler")
    return tmp_path


def test_load_complete_folder_reproduces_outputs(tiny, model_dir, gen):
    comp = load_wan_components(model_dir, dtype=torch.float32, load_text_encoder=False)
    assert comp.text_encoder is None and comp.tokenizer is None
    x = torch.randn(1, 16, 2, 4, 4, generator=gen)
    ctx = torch.randn(1, 3, 64, generator=gen)
    t = torch.tensor([500.0])
    with torch.no_grad():
        a = comp.transformer(x, t, ctx, return_dict=False)[0]
        b = tiny.transformer(x, t, ctx, return_dict=False)[0]
    ref = tiny.transformer.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in comp.transformer.state_dict().items())
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert comp.vae.config.z_dim == 16
    assert comp.scheduler.config.prediction_type == "flow_prediction"
    assert comp.scheduler.config.flow_shift == 5.0
    assert not any(p.requires_grad for p in comp.transformer.parameters())


def test_missing_folder_lists_everything(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_wan_components(tmp_path / "absent")
    with pytest.raises(FileNotFoundError) as err:
        load_wan_components(tmp_path)
    msg = str(err.value)
    for sub in ("transformer/", "vae/", "scheduler/", "text_encoder/", "tokenizer/"):
        assert sub in msg, sub


def test_incomplete_folder_lists_each_missing_file(model_dir):
    (model_dir / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    (model_dir / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_wan_components(model_dir, load_text_encoder=True)
    msg = str(err.value)
    assert "vae/diffusion_pytorch_model.safetensors" in msg
    assert "scheduler/scheduler_config.json" in msg
    assert "text_encoder/" in msg and "tokenizer/" in msg
    assert "transformer/" not in msg


def test_sharded_weights_with_a_missing_shard(model_dir):
    tdir = model_dir / "transformer"
    (tdir / "diffusion_pytorch_model.safetensors").unlink()
    index = {"weight_map": {"a": "shard-1.safetensors", "b": "shard-2.safetensors"}}
    (tdir / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    (tdir / "shard-1.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError) as err:
        load_wan_components(model_dir, load_text_encoder=False)
    assert "shard-2.safetensors" in str(err.value)
    assert "shard-1.safetensors" not in str(err.value)


def test_cpu_offload_needs_accelerator(model_dir):
    with pytest.raises(ValueError, match="cpu_offload"):
        load_wan_components(model_dir, cpu_offload=True, device="cpu")


def test_tiny_components_seeded():
    a, b, c = tiny_components(seed=3), tiny_components(seed=3), tiny_components(seed=4)
    wa, wb, wc = (m.transformer.blocks[0].attn1.to_q.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert a.transformer.config.in_channels == a.vae.config.z_dim
    n = sum(p.numel() for p in a.transformer.parameters()) + sum(
        p.numel() for p in a.vae.parameters()
    )
    assert n < 5_000_000


def test_scheduler_sigmas_follow_the_shift_formula():
    s = make_scheduler(shift=5.0)
    s.set_timesteps(20)
    sig = s.sigmas[:-1].double()
    # undo sigma' = shift*u / (1 + (shift-1)*u): u = sigma' / (shift - (shift-1)*sigma')
    u = sig / (5.0 - 4.0 * sig)
    steps = u[:-1] - u[1:]
    torch.testing.assert_close(
        steps, torch.full_like(steps, float(steps.mean())), atol=1e-5, rtol=0
    )
    assert float(sig[0]) > 0.99 and float(s.sigmas[-1]) == 0.0
    with pytest.raises(ValueError, match="shift"):
        make_scheduler(shift=0.0)


def test_full_size_config_counts():
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    with init_empty_weights():
        m = WanTransformer3DModel(**wan22_ti2v_transformer_config())
    n = sum(p.numel() for p in m.parameters())
    assert 4.9e9 < n < 5.1e9, n  # "5B"


def test_load_with_text_encoder_and_tokenizer(model_dir, tiny_umt5, tiny_tokenizer):
    from mirage.models.text import encode_prompts

    tiny_umt5.save_pretrained(model_dir / "text_encoder")
    tiny_tokenizer.save_pretrained(model_dir / "tokenizer")
    comp = load_wan_components(model_dir, dtype=torch.float32, load_text_encoder=True)
    a = encode_prompts(comp.text_encoder, comp.tokenizer, ["a red house"], max_length=6)
    b = encode_prompts(tiny_umt5, tiny_tokenizer, ["a red house"], max_length=6)
    assert torch.equal(a, b)


def test_weight_hashes_name_every_safetensors_file_by_its_relative_path(tmp_path):
    """Nested weight files are keyed by their posix path inside the folder and hashed over their
    bytes (digests of known strings); other files are not weights and are left out."""
    from mirage.models.loading import weight_hashes

    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"abc")
    (tmp_path / "side_branch.safetensors").write_bytes(b"")
    (tmp_path / "mirage.json").write_text("{}")
    assert weight_hashes(tmp_path) == {
        "side_branch.safetensors": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "vae/diffusion_pytorch_model.safetensors": (
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        ),
    }
