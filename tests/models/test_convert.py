"""`convert_checkpoint`: DiffSynth side branches (official, Spatia) and LoRAs -> Mirage files."""

import json
import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mirage.models.convert import convert_checkpoint
from mirage.models.loading import tiny_components
from mirage.models.lora import load_lora
from mirage.models.transformer import SIDE_CONFIG_KEY, MirageTransformer

# Written out by hand (not taken from the module under test): Mirage / diffusers sub-module ->
# DiffSynth sub-module, inside one side block.
OURS_TO_DIFFSYNTH = {
    "proj_in": "before_proj",
    "proj_out": "after_proj",
    "attn1.to_q": "self_attn.q",
    "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o",
    "attn1.norm_q": "self_attn.norm_q",
    "attn1.norm_k": "self_attn.norm_k",
    "attn2.to_q": "cross_attn.q",
    "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o",
    "attn2.norm_q": "cross_attn.norm_q",
    "attn2.norm_k": "cross_attn.norm_k",
    "norm2": "norm3",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
}
HEADS = 2  # tiny_transformer_config: 2 heads x 64


def to_diffsynth(key: str) -> str:
    if key.startswith("side_patch_embedding."):
        return "vace_patch_embedding." + key.split(".", 1)[1]
    _, j, rest = key.split(".", 2)
    if rest == "scale_shift_table":
        return f"vace_blocks.{j}.modulation"
    module, param = rest.rsplit(".", 1)
    return f"vace_blocks.{j}.{OURS_TO_DIFFSYNTH[module]}.{param}"


def side_model(num_layers: int, side_every: int, seed: int, profile=None) -> MirageTransformer:
    """A tiny side branch of the profile its spacing implies (2: official, 4: spatia; 2C in)."""
    profile = profile or {2: "official", 4: "spatia"}[side_every]
    base = tiny_components(seed=0, num_layers=num_layers).transformer
    model = MirageTransformer.from_base(base, side_every=side_every, seed=seed, profile=profile)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in model.side_branch_parameters():  # random everywhere (proj_out starts at 0)
            p.copy_(torch.randn(p.shape, generator=gen))
    return model


def diffsynth_side(model: MirageTransformer) -> dict[str, torch.Tensor]:
    return {to_diffsynth(k): v.clone() for k, v in model.side_branch_state_dict().items()}


def header(path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


@pytest.mark.parametrize(
    "num_layers, side_every, profile, wrap",
    [
        (6, 2, "official", "pt-generator.vace"),  # 3 blocks beside 0, 2, 4
        (6, 2, "official", "safetensors-prefix"),
        (13, 4, "spatia", "pt-state_dict"),  # 4 blocks beside 0, 4, 8, 12
    ],
)
def test_side_branch_round_trip(tmp_path, num_layers, side_every, profile, wrap):
    src_model = side_model(num_layers, side_every, seed=1)
    theirs = diffsynth_side(src_model)
    if wrap == "pt-generator.vace":
        src = tmp_path / "ckpt.pt"
        torch.save({"generator": {"vace": theirs}, "step": torch.tensor(3)}, src)
    elif wrap == "pt-state_dict":
        src = tmp_path / "ckpt.pth"
        torch.save({"state_dict": {"module.vace." + k: v for k, v in theirs.items()}}, src)
    else:
        src = tmp_path / "step-8500.safetensors"
        save_file({"pipe.vace." + k: v for k, v in theirs.items()}, str(src))
    out = tmp_path / "side.safetensors"

    summary = convert_checkpoint(src, out, num_layers=num_layers, num_attention_heads=HEADS)

    assert summary["kind"] == profile and summary["profile"] == profile
    cfg = json.loads(header(out)[SIDE_CONFIG_KEY])
    assert cfg["profile"] == profile and cfg["in_channels"] == 2 * 16  # 2C
    assert cfg == src_model.side_config  # the exact config MirageTransformer writes
    fresh = side_model(num_layers, side_every, seed=2)
    fresh.load_side_branch(out)  # refuses any missing / unexpected key or shape
    want = src_model.side_branch_state_dict()
    got = fresh.side_branch_state_dict()
    assert set(got) == set(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k


def test_explicit_kind_sets_profile_and_full_size_inference(tmp_path):
    # Wan2.2-TI2V-5B-like widths are inferred (dim 3072 -> 30 layers, 24 heads) from shapes
    # alone; tensors are tiny stand-ins except where a shape is read.
    from mirage.models.convert import side_branch_config

    sd = {
        "vace_patch_embedding.weight": torch.empty(3072, 96, 1, 2, 2),
        "vace_blocks.0.ffn.0.weight": torch.empty(14336, 3072),
        "vace_blocks.0.self_attn.norm_q.weight": torch.empty(3072),
        "vace_blocks.0.norm3.weight": torch.empty(3072),
    }
    sd.update({f"vace_blocks.{j}.modulation": torch.empty(1, 6, 3072) for j in range(15)})
    cfg = side_branch_config(sd)
    assert cfg["side_every"] == 2 and cfg["side_layers"] == list(range(0, 30, 2))
    assert (cfg["in_channels"], cfg["num_attention_heads"], cfg["profile"]) == (96, 24, "official")
    for j in range(15, 8, -1):
        del sd[f"vace_blocks.{j - 1}.modulation"]
    cfg = side_branch_config(sd)
    assert cfg["side_every"] == 4 and cfg["side_layers"] == list(range(0, 30, 4))
    assert cfg["profile"] == "spatia"
    assert side_branch_config(sd, profile="official")["profile"] == "official"

    src_model = side_model(6, 2, seed=1)
    src = tmp_path / "a.safetensors"
    save_file(diffsynth_side(src_model), str(src))
    out = tmp_path / "b.safetensors"
    convert_checkpoint(src, out, kind="spatia", num_layers=6, num_attention_heads=HEADS)
    assert json.loads(header(out)[SIDE_CONFIG_KEY])["profile"] == "spatia"
    with pytest.raises(ValueError, match="already exists"):
        convert_checkpoint(src, out, num_layers=6, num_attention_heads=HEADS)
    with pytest.raises(ValueError, match="not a LoRA"):
        convert_checkpoint(src, tmp_path / "c.safetensors", kind="lora")
    with pytest.raises(ValueError, match="lora_alpha"):
        convert_checkpoint(src, tmp_path / "c.safetensors", lora_alpha=4.0, num_layers=6)


def _refusal(tmp_path, edit, match):
    theirs = diffsynth_side(side_model(6, 2, seed=1))
    edit(theirs)
    src = tmp_path / "bad.safetensors"
    save_file(theirs, str(src))
    out = tmp_path / "out.safetensors"
    with pytest.raises(ValueError, match=re.escape(match)):
        convert_checkpoint(src, out, num_layers=6, num_attention_heads=HEADS)
    assert not out.exists()


def test_refuses_a_key_renamed_wrong(tmp_path):
    def edit(sd):
        sd["vace_blocks.1.self_attn.query.weight"] = sd.pop("vace_blocks.1.self_attn.q.weight")

    _refusal(tmp_path, edit, "unknown key: vace_blocks.1.self_attn.query.weight")
    _refusal(tmp_path, edit, "missing key: vace_blocks.1.self_attn.q.weight")


def test_refuses_a_stray_input_projection(tmp_path):
    def edit(sd):
        sd["vace_blocks.2.before_proj.weight"] = torch.zeros(128, 128)

    _refusal(tmp_path, edit, "unexpected key: vace_blocks.2.before_proj.weight")


def test_refuses_a_missing_key_and_a_missing_block(tmp_path):
    _refusal(tmp_path, lambda sd: sd.pop("vace_blocks.2.ffn.2.bias"), "vace_blocks.2.ffn.2.bias")

    def drop_block(sd):
        for k in [k for k in sd if k.startswith("vace_blocks.1.")]:
            del sd[k]

    _refusal(tmp_path, drop_block, "missing key: vace_blocks.1.modulation")
    _refusal(tmp_path, drop_block, "missing key: vace_blocks.1.cross_attn.o.weight")

    def drop_last_block(sd):  # 2 of 3 blocks beside 6 layers: no spacing fits
        for k in [k for k in sd if k.startswith("vace_blocks.2.")]:
            del sd[k]

    theirs = diffsynth_side(side_model(6, 2, seed=1))
    drop_last_block(theirs)
    save_file(theirs, str(tmp_path / "two.safetensors"))
    with pytest.raises(ValueError, match="2 side blocks beside 6 layers"):
        convert_checkpoint(
            tmp_path / "two.safetensors", tmp_path / "o.safetensors", num_layers=6,
            num_attention_heads=HEADS,
        )  # fmt: skip


def test_refuses_a_wrong_shape(tmp_path):
    def edit(sd):
        sd["vace_blocks.1.modulation"] = torch.zeros(1, 6, 64)

    _refusal(
        tmp_path, edit, "shape of vace_blocks.1.modulation: file (1, 6, 64), expected (1, 6, 128)"
    )

    def edit_ffn(sd):
        sd["vace_blocks.0.ffn.2.weight"] = torch.zeros(128, 200)

    _refusal(tmp_path, edit_ffn, "shape of vace_blocks.0.ffn.2.weight")


def test_refuses_what_is_not_a_checkpoint(tmp_path):
    src = tmp_path / "x.safetensors"
    save_file({"blocks.0.self_attn.q.weight": torch.zeros(2, 2)}, str(src))
    with pytest.raises(ValueError, match="not a DiffSynth"):
        convert_checkpoint(src, tmp_path / "o.safetensors")
    with pytest.raises(FileNotFoundError):
        convert_checkpoint(tmp_path / "missing.pt", tmp_path / "o.safetensors")
    with pytest.raises(ValueError, match="kind"):
        convert_checkpoint(src, tmp_path / "o.safetensors", kind="vace")
    with pytest.raises(ValueError, match=".safetensors"):
        convert_checkpoint(src, tmp_path / "o.bin")


# ---------------------------------------------------------------------------------------------
# LoRA
# ---------------------------------------------------------------------------------------------

DIM, FFN, LAYERS = 128, 256, 4
LORA_MODULES = {  # DiffSynth module -> (diffusers module, fan_in, fan_out)
    "self_attn.q": ("attn1.to_q", DIM, DIM),
    "self_attn.k": ("attn1.to_k", DIM, DIM),
    "self_attn.v": ("attn1.to_v", DIM, DIM),
    "self_attn.o": ("attn1.to_out.0", DIM, DIM),
    "cross_attn.q": ("attn2.to_q", DIM, DIM),
    "cross_attn.k": ("attn2.to_k", DIM, DIM),
    "cross_attn.v": ("attn2.to_v", DIM, DIM),
    "cross_attn.o": ("attn2.to_out.0", DIM, DIM),
    "ffn.0": ("ffn.net.0.proj", DIM, FFN),
    "ffn.2": ("ffn.net.2", FFN, DIM),
}


def official_lora(rank: int, modules, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for i in range(LAYERS):
        for m in modules:
            _, fan_in, fan_out = LORA_MODULES[m]
            sd[f"pipe.dit.blocks.{i}.{m}.lora_A.weight"] = torch.randn(rank, fan_in, generator=gen)
            sd[f"pipe.dit.blocks.{i}.{m}.lora_B.weight"] = torch.randn(fan_out, rank, generator=gen)
    return sd


def module_at(root, name: str):
    for part in name.split("."):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


@torch.no_grad()
def effective_weight(linear) -> torch.Tensor:
    """The weight a (LoRA-wrapped) Linear applies: its output on the identity, minus the bias."""
    eye = torch.eye(module_at(linear, "base_layer").in_features)
    return (linear(eye) - module_at(linear, "base_layer").bias).T


def expected_weights(base, sd, rank, alpha):
    want = {}
    for i in range(LAYERS):
        for m, (ours, _, _) in LORA_MODULES.items():
            key = f"pipe.dit.blocks.{i}.{m}.lora_"
            if key + "A.weight" not in sd:
                continue
            w = module_at(base, f"blocks.{i}.{ours}").weight.detach().clone()
            delta = sd[key + "B.weight"] @ sd[key + "A.weight"]
            want[f"blocks.{i}.{ours}"] = w + (alpha / rank) * delta
    return want


def test_official_lora_gives_w_plus_alpha_over_r_ba(tmp_path):
    rank, alpha = 4, 12.0  # r != alpha: the scale alpha / r = 3 must survive the conversion
    sd = official_lora(rank, LORA_MODULES)
    src = tmp_path / "lora_weights_10000.safetensors"
    save_file(sd, str(src))
    out_dir = tmp_path / "out"
    out = out_dir / "lora.safetensors"

    summary = convert_checkpoint(src, out, lora_alpha=alpha)

    assert summary["kind"] == "lora"
    assert summary["config"] == {"r": rank, "lora_alpha": alpha, "modules": LAYERS * 10}
    with safe_open(str(out), framework="pt") as f:
        keys = set(f.keys())
    assert "transformer.blocks.3.attn2.to_out.0.lora_B.weight" in keys
    assert "transformer.blocks.0.ffn.net.0.proj.lora_A.weight" in keys
    assert len(keys) == LAYERS * 10 * 2

    base = tiny_components(seed=0).transformer
    want = expected_weights(base, sd, rank, alpha)
    # diffusers' own reader (what pipe.load_lora_weights uses) with the header metadata
    base.load_lora_adapter(str(out_dir), weight_name="lora.safetensors", adapter_name="conv")
    assert float(base.peft_config["conv"].lora_alpha) == alpha
    for name, w in want.items():
        got = effective_weight(module_at(base, name))
        torch.testing.assert_close(got, w, rtol=1e-4, atol=1e-4, msg=name)


def test_official_lora_on_attention_and_ffn_loads_in_mirage(tmp_path):
    # Mirage's own reader adds the adapter on exactly the modules the file names
    rank, alpha = 4, 12.0
    sd = official_lora(rank, LORA_MODULES)
    src = tmp_path / "lora.safetensors"
    save_file(sd, str(src))
    out = tmp_path / "conv.safetensors"
    convert_checkpoint(src, out, lora_alpha=alpha)
    model = MirageTransformer.from_base(tiny_components(seed=0).transformer)
    want = expected_weights(model.base, sd, rank, alpha)
    load_lora(model, out)
    assert {n.split(".")[2] for n in want} >= {"attn1", "attn2", "ffn"}
    for name, w in want.items():
        got = effective_weight(module_at(model.base, name))
        torch.testing.assert_close(got, w, rtol=1e-4, atol=1e-4, msg=name)


def test_official_lora_default_alpha_is_rank(tmp_path):
    rank = 3
    sd = official_lora(rank, ["self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o"])
    src = tmp_path / "lora.safetensors"
    save_file(sd, str(src))
    out = tmp_path / "conv.safetensors"
    convert_checkpoint(src, out)
    model = MirageTransformer.from_base(tiny_components(seed=0).transformer)
    want = expected_weights(model.base, sd, rank, float(rank))  # the official fuse: B @ A
    load_lora(model, out)  # Mirage's own reader (self-attention LoRA)
    assert float(model.base.peft_config["mirage"].lora_alpha) == rank
    for name, w in want.items():
        got = effective_weight(module_at(model.base, name))
        torch.testing.assert_close(got, w, rtol=1e-4, atol=1e-4, msg=name)


def test_self_attention_lora_with_alpha_loads_in_mirage(tmp_path):
    rank, alpha = 4, 2.0
    sd = official_lora(rank, ["self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o"], 1)
    src = tmp_path / "lora.pt"
    torch.save({"state_dict": sd}, src)
    out = tmp_path / "conv.safetensors"
    convert_checkpoint(src, out, kind="lora", lora_alpha=alpha)
    model = MirageTransformer.from_base(tiny_components(seed=0).transformer)
    want = expected_weights(model.base, sd, rank, alpha)
    load_lora(model, out)
    for name, w in want.items():
        got = effective_weight(module_at(model.base, name))
        torch.testing.assert_close(got, w, rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda sd: sd.pop("pipe.dit.blocks.2.ffn.0.lora_B.weight"),
            "missing key: blocks.2.ffn.0.lora_B.weight",
        ),
        (
            lambda sd: sd.update(
                {"pipe.dit.blocks.1.self_attn.x.lora_A.weight": torch.zeros(4, 128)}
            ),
            "unknown key: blocks.1.self_attn.x.lora_A.weight",
        ),
        (
            lambda sd: sd.update(
                {"pipe.dit.blocks.1.cross_attn.k.lora_A.weight": torch.zeros(4, 64)}
            ),
            "shape of blocks.1.cross_attn.k.lora_A.weight",
        ),
        (
            lambda sd: sd.update({"pipe.dit.blocks.0.ffn.2.lora_B.weight": torch.zeros(128, 5)}),
            "blocks.0.ffn.2.lora_B.weight",
        ),
        (
            lambda sd: [
                sd.pop(k) for k in list(sd) if k.startswith("pipe.dit.blocks.1.self_attn.v.")
            ],
            "missing key: blocks.1.self_attn.v.lora_A.weight",
        ),
    ],
)
def test_lora_refusals_name_the_key(tmp_path, edit, match):
    sd = official_lora(4, LORA_MODULES)
    edit(sd)
    src = tmp_path / "lora.safetensors"
    save_file(sd, str(src))
    out = tmp_path / "conv.safetensors"
    with pytest.raises(ValueError, match=re.escape(match)):
        convert_checkpoint(src, out)
    assert not out.exists()


def test_a_file_with_side_branch_and_lora_converts_in_two_passes(tmp_path):
    src_model = side_model(6, 2, seed=1)
    sd = {"pipe.vace." + k: v for k, v in diffsynth_side(src_model).items()}
    lora = official_lora(4, ["self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o"])
    src = tmp_path / "epoch-3.safetensors"
    save_file({**sd, **lora}, str(src))
    with pytest.raises(ValueError, match="convert it twice"):
        convert_checkpoint(src, tmp_path / "x.safetensors")
    side_out, lora_out = tmp_path / "side.safetensors", tmp_path / "lora.safetensors"
    kw = {"num_layers": 6, "num_attention_heads": HEADS}
    assert convert_checkpoint(src, side_out, kind="official", **kw)["kind"] == "official"
    assert convert_checkpoint(src, lora_out, kind="lora")["tensors"] == len(lora)
    fresh = side_model(6, 2, seed=2)
    fresh.load_side_branch(side_out)
    for k, v in src_model.side_branch_state_dict().items():
        assert torch.equal(fresh.side_branch_state_dict()[k], v), k
