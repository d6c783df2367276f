"""LoRA placement, on/off, diffusers-format files, and stage-1/2 parameter selection."""

import re

import pytest
import torch

from mirage.models.loading import tiny_components
from mirage.models.lora import (
    add_lora,
    load_lora,
    lora_parameters,
    save_lora,
    set_lora_enabled,
    trainable_parameters,
)
from mirage.models.transformer import MirageTransformer

B, C, F, H, W = 1, 16, 3, 4, 4


@pytest.fixture
def model():
    return MirageTransformer.from_base(tiny_components(seed=0).transformer)


@pytest.fixture
def inputs(gen):
    x = torch.randn(B, C, F, H, W, generator=gen)
    t = torch.tensor([[0.0, 600.0, 600.0]])
    ctx = torch.randn(B, 4, 64, generator=gen)
    readout = torch.randn(B, C + 1, F, H, W, generator=gen)
    return x, t, ctx, readout


def _randomise(params, gen, std=0.1):
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def test_lora_sits_on_main_self_attention_only(model):
    add_lora(model, rank=4, alpha=4)
    wrapped = sorted(n for n, _ in model.named_modules() if n.endswith(".lora_A"))
    expected = sorted(
        f"base.blocks.{i}.attn1.{p}.lora_A"
        for i in range(4)
        for p in ("to_q", "to_k", "to_v", "to_out.0")
    )
    assert wrapped == expected
    assert not any(re.search(r"side_blocks|attn2|ffn", n) for n in wrapped)
    a = model.base.blocks[1].attn1.to_q.lora_A["mirage"].weight
    assert a.shape == (4, 128)
    with pytest.raises(ValueError, match="already"):
        add_lora(model)
    with pytest.raises(ValueError, match="rank"):
        add_lora(tiny_components().transformer, rank=0)


@torch.no_grad()
def test_fresh_lora_is_identity_and_switch_works(model, inputs, gen):
    x, t, ctx, readout = inputs
    before = model(x, t, ctx, readout)
    add_lora(model, rank=4, alpha=8)
    assert torch.equal(model(x, t, ctx, readout), before)  # lora_B starts at zero
    _randomise(lora_parameters(model), gen)
    on = model(x, t, ctx, readout)
    assert (on - before).abs().max() > 1e-3
    set_lora_enabled(model, False)
    assert torch.equal(model(x, t, ctx, readout), before)
    set_lora_enabled(model, True)
    assert torch.equal(model(x, t, ctx, readout), on)


def test_save_load_roundtrip_and_diffusers_reads_it(model, inputs, gen, tmp_path):
    from safetensors import safe_open

    x, t, ctx, readout = inputs
    add_lora(model, rank=4, alpha=8)
    _randomise(lora_parameters(model), gen)
    path = tmp_path / "lora.safetensors"
    save_lora(model, path)
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
    assert "transformer.blocks.0.attn1.to_q.lora_A.weight" in keys
    assert "transformer.blocks.3.attn1.to_out.0.lora_B.weight" in keys
    assert len(keys) == 4 * 4 * 2

    with torch.no_grad():
        ref = model(x, t, ctx, readout)
        # our loader, into a fresh model with the same side branch: exact
        other = MirageTransformer.from_base(tiny_components(seed=0).transformer)
        load_lora(other, path)
        assert torch.equal(other(x, t, ctx, readout), ref)
        # diffusers' own LoRA loader on a plain base model: the same velocity without readout
        plain = tiny_components(seed=0).transformer
        plain.load_lora_adapter(str(tmp_path), weight_name=path.name, prefix="transformer")
        t_tok = t.repeat_interleave((H // 2) * (W // 2), dim=1)
        expected = plain(x, t_tok, ctx, return_dict=False)[0]
        assert torch.equal(model(x, t, ctx, None), expected)


def test_load_refuses_other_config(model, tmp_path, gen):
    add_lora(model, rank=4, alpha=4)
    path = tmp_path / "r4.safetensors"
    save_lora(model, path)
    other = MirageTransformer.from_base(tiny_components(seed=0).transformer)
    add_lora(other, rank=8, alpha=8)
    with pytest.raises(ValueError, match="rank 4 / alpha 4; the model's LoRA has rank 8 / alpha 8"):
        load_lora(other, path)
    deeper = MirageTransformer.from_base(tiny_components(seed=0, num_layers=6).transformer)
    with pytest.raises(ValueError, match="missing in file: transformer.blocks.5.attn1.to_q"):
        load_lora(deeper, path)
    wider = MirageTransformer.from_base(tiny_components(seed=0, attention_head_dim=32).transformer)
    with pytest.raises(ValueError, match=r"shape of transformer\.blocks\.0\.attn1\.to_k\.lora_A"):
        load_lora(wider, path)
    with pytest.raises(FileNotFoundError):
        load_lora(model, tmp_path / "absent.safetensors")


@pytest.mark.parametrize("stage", [1, 2])
def test_stage_selection_trains_only_what_it_should(model, inputs, gen, stage):
    x, t, ctx, readout = inputs
    add_lora(model, rank=4, alpha=4)
    _randomise(lora_parameters(model), gen, std=0.02)  # so LoRA A and B both get gradient
    side_ids = {id(p) for p in model.side_branch_parameters()}
    lora_ids = {id(p) for p in lora_parameters(model)}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = trainable_parameters(model, stage)
    assert {id(p) for p in params} == (side_ids | lora_ids if stage == 2 else side_ids)
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    target = torch.randn(B, C, F, H, W, generator=gen)
    for _ in range(3):
        loss = (model(x, t, ctx, readout) - target).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    trainable = side_ids | (lora_ids if stage == 2 else set())
    for n, p in model.named_parameters():
        if id(p) not in trainable:
            assert torch.equal(p, before[n]), f"{n} changed in stage {stage}"
    named = list(model.named_parameters())
    assert any(not torch.equal(p, before[n]) for n, p in named if id(p) in side_ids)
    lora_changed = any(not torch.equal(p, before[n]) for n, p in named if id(p) in lora_ids)
    assert lora_changed == (stage == 2)


def test_stage2_needs_lora(model):
    with pytest.raises(ValueError, match="add_lora"):
        trainable_parameters(model, 2)
    with pytest.raises(ValueError, match="stage"):
        trainable_parameters(model, 3)
