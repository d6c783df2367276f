"""MirageTransformer: identity at init, per-token timesteps, hint placement, side checkpoints."""

import pytest
import torch

from mirage.models.loading import tiny_components, tiny_transformer_config
from mirage.models.transformer import MirageTransformer, side_layer_indices

B, C, F, H, W = 2, 16, 3, 8, 8
TEXT_DIM = tiny_transformer_config()["text_dim"]


@pytest.fixture(scope="module")
def base():
    return tiny_components(seed=0).transformer


@pytest.fixture
def inputs(gen):
    x = torch.randn(B, C, F, H, W, generator=gen)
    ctx = torch.randn(B, 5, TEXT_DIM, generator=gen)
    readout = torch.randn(B, C + 1, F, H, W, generator=gen)
    readout[:, -1] = (torch.rand(B, F, H, W, generator=gen) > 0.5).float()
    return x, ctx, readout


def _token_timesteps_by_loop(t_frames, h_tokens, w_tokens):
    """Reference: token (f, i, j) in frame-major order gets the timestep of frame f."""
    rows = []
    for b in range(t_frames.shape[0]):
        row = []
        for f in range(t_frames.shape[1]):
            for _i in range(h_tokens):
                for _j in range(w_tokens):
                    row.append(float(t_frames[b, f]))
        rows.append(row)
    return torch.tensor(rows)


def _perturb_side(model, gen, scale=0.05):
    with torch.no_grad():
        for p in model.side_branch_parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


@torch.no_grad()
def test_fresh_branch_equals_base_exactly_per_token(base, inputs):
    x, ctx, readout = inputs
    model = MirageTransformer.from_base(base)
    t = torch.tensor([[0.0, 500.0, 900.0], [0.0, 0.0, 250.0]])  # clean context + noisy targets
    ref = base(x, _token_timesteps_by_loop(t, H // 2, W // 2), ctx, return_dict=False)[0]
    out = model(x, t, ctx, readout)
    assert torch.equal(out, ref)
    assert torch.equal(model(x, t, ctx, None), ref)


@torch.no_grad()
def test_fresh_branch_equals_base_exactly_scalar(base, inputs):
    x, ctx, readout = inputs
    model = MirageTransformer.from_base(base, side_every=1)
    t = torch.tensor([700.0, 30.0])
    assert torch.equal(model(x, t, ctx, readout), base(x, t, ctx, return_dict=False)[0])


@torch.no_grad()
def test_equal_per_frame_timesteps_match_scalar_path(base, inputs, gen):
    x, ctx, readout = inputs
    model = MirageTransformer.from_base(base)
    _perturb_side(model, gen)  # the side branch sees the per-token modulation too
    t = torch.tensor([640.0, 125.0])
    scalar = model(x, t, ctx, readout)
    per_frame = model(x, t[:, None].expand(B, F), ctx, readout)
    torch.testing.assert_close(per_frame, scalar, atol=1e-5, rtol=1e-5)
    # and a different timestep in one frame does change the result
    t2 = t[:, None].expand(B, F).clone()
    t2[:, 0] = 0.0
    assert not torch.allclose(model(x, t2, ctx, readout), scalar, atol=1e-4)


def test_side_blocks_are_copies_with_zero_output(base):
    model = MirageTransformer.from_base(base, side_every=2)
    layers = model.side_config["side_layers"]
    assert layers == [0, 2] and len(model.side_blocks) == 2
    for j, i in enumerate(layers):
        main = base.blocks[i].state_dict()
        side = model.side_blocks[j].state_dict()
        for k, v in main.items():
            assert torch.equal(side[k], v), k
            assert side[k].data_ptr() != v.data_ptr(), f"{k} shares storage with the base"
        assert torch.count_nonzero(side["proj_out.weight"]) == 0
        assert torch.count_nonzero(side["proj_out.bias"]) == 0
        assert ("proj_in.weight" in side) == (j == 0)
    assert torch.count_nonzero(model.side_blocks[0].proj_in.weight) > 0
    assert torch.count_nonzero(model.side_patch_embedding.weight) > 0
    assert not any(p.is_meta for p in model.parameters())


@torch.no_grad()
def test_readout_and_mask_change_the_output_once_branch_is_nonzero(base, inputs, gen):
    x, ctx, readout = inputs
    model = MirageTransformer.from_base(base)
    for blk in model.side_blocks:
        blk.proj_out.weight.normal_(0.0, 0.05, generator=gen)
    t = torch.tensor([[0.0, 400.0, 400.0]] * B)
    plain = model(x, t, ctx, None)
    with_readout = model(x, t, ctx, readout)
    assert (with_readout - plain).abs().max() > 1e-3
    other = readout.clone()
    other[:, :C] = torch.randn(B, C, F, H, W, generator=gen)
    assert (model(x, t, ctx, other) - with_readout).abs().max() > 1e-3
    mask_off, mask_on = readout.clone(), readout.clone()
    mask_off[:, -1] = 0.0
    mask_on[:, -1] = 1.0
    assert (model(x, t, ctx, mask_on) - model(x, t, ctx, mask_off)).abs().max() > 1e-3
    # side_scale = 0 switches the branch off exactly
    assert torch.equal(model(x, t, ctx, readout, side_scale=0.0), plain)


@torch.no_grad()
def test_hints_are_added_after_the_block_they_sit_beside(base, inputs, gen):
    """Hooks record each main block's output and the next block's input: they must differ by
    exactly side_scale * hint where a side block sits, and be equal elsewhere."""
    x, ctx, readout = inputs
    model = MirageTransformer.from_base(base, side_every=3)  # 4 layers -> sides at 0 and 3
    assert model.side_config["side_layers"] == [0, 3]
    _perturb_side(model, gen)
    outs, ins, hints = {}, {}, {}
    hooks = []
    for i, blk in enumerate(base.blocks):
        hooks.append(blk.register_forward_hook(lambda m, a, o, i=i: outs.__setitem__(i, o)))
        hooks.append(blk.register_forward_pre_hook(lambda m, a, i=i: ins.__setitem__(i, a[0])))
    hooks.append(base.norm_out.register_forward_pre_hook(lambda m, a: ins.__setitem__(4, a[0])))
    for j, blk in enumerate(model.side_blocks):
        hooks.append(blk.register_forward_hook(lambda m, a, o, j=j: hints.__setitem__(j, o[0])))
    scale = 0.5
    model(x, torch.tensor([300.0, 600.0]), ctx, readout, side_scale=scale)
    for h in hooks:
        h.remove()
    side_at = {0: 0, 3: 1}
    for i in range(4):
        nxt = ins[i + 1].float()  # norm_out sees the float() of the last block's output
        if i in side_at:
            expected = outs[i] + hints[side_at[i]] * scale
            assert torch.equal(nxt, expected.float())
            assert hints[side_at[i]].abs().max() > 0
        else:
            assert torch.equal(nxt, outs[i].float())


def test_side_layer_indices():
    assert side_layer_indices(30, 2) == list(range(0, 30, 2))
    assert len(side_layer_indices(30, 2)) == 15
    assert side_layer_indices(4, 1) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="side_every"):
        side_layer_indices(4, 0)


def test_gradient_checkpointing_gives_same_grads(base, inputs, gen):
    x, ctx, readout = inputs
    model = MirageTransformer.from_base(base)
    _perturb_side(model, gen)
    t = torch.tensor([[0.0, 500.0, 500.0]] * B)
    grads = []
    for ckpt in (False, True):
        model.gradient_checkpointing = ckpt
        model.zero_grad(set_to_none=True)
        model(x, t, ctx, readout).square().mean().backward()
        grads.append([p.grad.clone() for p in model.side_branch_parameters()])
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_side_branch_save_load_roundtrip_and_refusal(base, inputs, gen, tmp_path):
    x, ctx, readout = inputs
    model = MirageTransformer.from_base(base)
    _perturb_side(model, gen)
    path = tmp_path / "side.safetensors"
    model.save_side_branch(path)
    fresh = MirageTransformer.from_base(base, seed=123)
    t = torch.tensor([[0.0, 300.0, 300.0]] * B)
    with torch.no_grad():
        assert not torch.equal(fresh(x, t, ctx, readout), model(x, t, ctx, readout))
        fresh.load_side_branch(path)
        assert torch.equal(fresh(x, t, ctx, readout), model(x, t, ctx, readout))

    other = MirageTransformer.from_base(base, side_every=1)
    with pytest.raises(ValueError, match="side_every: file has 2, model has 1"):
        other.load_side_branch(path)
    small = tiny_components(seed=0, num_attention_heads=1).transformer  # dim 64 instead of 128
    with pytest.raises(ValueError, match="dim: file has 128, model has 64"):
        MirageTransformer.from_base(small).load_side_branch(path)
    with pytest.raises(FileNotFoundError):
        model.load_side_branch(tmp_path / "nope.safetensors")


def test_forward_rejects_bad_shapes(base, inputs):
    x, ctx, readout = inputs
    model = MirageTransformer.from_base(base)
    with pytest.raises(ValueError, match="timestep"):
        model(x, torch.zeros(B, F + 1), ctx, readout)
    with pytest.raises(ValueError, match="readout"):
        model(x, torch.zeros(B), ctx, readout[:, :C])
    with pytest.raises(ValueError, match="latents"):
        model(x[:, :, :, :7], torch.zeros(B), ctx)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        model(x, torch.zeros(B), ctx[:, :, :3])
