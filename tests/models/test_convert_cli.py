"""`mirage convert` on the command line: a LoRA written, a foreign key refused in one line."""

import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from mirage.cli import app


def _official_lora(path, extra=None):
    g = torch.Generator().manual_seed(0)
    sd = {}
    for i in range(2):
        for p in ("q", "k", "v", "o"):
            sd[f"pipe.dit.blocks.{i}.self_attn.{p}.lora_A.weight"] = torch.randn(
                4, 128, generator=g
            )
            sd[f"pipe.dit.blocks.{i}.self_attn.{p}.lora_B.weight"] = torch.randn(
                128, 4, generator=g
            )
    sd.update(extra or {})
    save_file(sd, path)


def test_convert_writes_a_lora_and_refuses_an_unknown_key(tmp_path):
    _official_lora(tmp_path / "lora.safetensors")
    out = tmp_path / "ours.safetensors"
    res = CliRunner().invoke(
        app, ["convert", str(tmp_path / "lora.safetensors"), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    ours = load_file(out)
    assert len(ours) == 16 and all(k.startswith("transformer.blocks.") for k in ours)
    _official_lora(
        tmp_path / "bad.safetensors", {"pipe.dit.blocks.0.mystery.weight": torch.ones(1)}
    )
    res = CliRunner().invoke(
        app,
        ["convert", str(tmp_path / "bad.safetensors"), "--out", str(tmp_path / "x.safetensors")],
    )
    assert res.exit_code == 2 and "mystery" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x.safetensors").exists()
