"""The training loop: what each stage changes, resume, overfitting, LR schedule, two processes."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mirage.models.lora import has_lora
from mirage.training.config import TrainConfig, lr_at
from mirage.training.flow import flow_matching_loss
from mirage.training.samples import ShardDataset, collate
from mirage.training.train import build_model, train

FAST = dict(batch_size=2, warmup_steps=0, checkpoint_every=0, progress=False, lr=1e-2, seed=3)


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _is_side(name):
    return name.startswith(("side_patch_embedding.", "side_blocks."))


@pytest.mark.parametrize("stage", [1, 2])
def test_stage_changes_only_its_parameters(shards, tmp_path, stage):
    cfg = TrainConfig(data=str(shards), out=str(tmp_path), stage=stage, max_steps=3,
                      lora_rank=4, lora_alpha=4, **FAST)  # fmt: skip
    before = _snapshot(build_model(cfg, 16))  # same seed: the model train() starts from
    res = train(cfg)
    after = dict(res.model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    lora = {n for n in before if "lora_" in n}
    allowed = {n for n in before if _is_side(n)} | (lora if stage == 2 else set())
    assert changed and changed <= allowed, sorted(changed - allowed)[:5]
    assert any(n.startswith("side_patch_embedding.") for n in changed)
    assert any(n.startswith("side_blocks.0.proj_out") for n in changed)
    if stage == 2:
        assert has_lora(res.model)
        assert {n for n in changed if "lora_A" in n} and {n for n in changed if "lora_B" in n}
        assert (tmp_path / "lora.safetensors").is_file()
    else:
        assert not lora
    frozen = [n for n in before if n not in allowed]
    assert frozen and all(torch.equal(before[n], after[n].detach()) for n in frozen)
    assert (tmp_path / "side_branch.safetensors").is_file()
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["config"]["stage"] == stage and meta["step"] == 3


def test_stage0_trains_the_base_and_exports_it(shards, tmp_path):
    cfg = TrainConfig(data=str(shards), out=str(tmp_path), stage=0, max_steps=2, **FAST)
    before = _snapshot(build_model(cfg, 16))
    res = train(cfg)
    after = dict(res.model.named_parameters())
    assert not torch.equal(before["base.proj_out.weight"], after["base.proj_out.weight"])
    saved = load_file(str(tmp_path / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert torch.equal(saved["proj_out.weight"], after["base.proj_out.weight"].detach())


def _trainable(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_resume_gives_the_same_weights(shards, tmp_path):
    kw = dict(FAST, lr=3e-3, warmup_steps=1, schedule="cosine", ema_decay=0.5)
    kw["checkpoint_every"] = 2
    straight = TrainConfig(data=str(shards), out=str(tmp_path / "a"), stage=1, max_steps=4, **kw)
    full = train(straight)
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir()) == [
        "step-00000002", "step-00000004"
    ]  # fmt: skip
    # an interrupted run: only the step-2 checkpoint exists; resume with the same config
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copytree(
        tmp_path / "a/checkpoints/step-00000002", tmp_path / "b/checkpoints/step-00000002"
    )
    resumed = train(
        TrainConfig(**{**straight.__dict__, "out": str(tmp_path / "b"), "resume": "latest"})
    )
    assert resumed.step == 4 and len(resumed.losses) == 2
    assert resumed.losses == pytest.approx(full.losses[2:], rel=1e-5)
    a, b = _trainable(full.model), _trainable(resumed.model)
    assert a.keys() == b.keys()
    for n in a:
        torch.testing.assert_close(b[n], a[n], rtol=1e-5, atol=1e-6, msg=n)
    # a new run into the old folder without --resume would mix two runs' checkpoints
    before = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    with pytest.raises(ValueError, match="--resume latest"):
        train(straight)
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir()) == before


def test_a_shard_folder_without_its_index_is_refused(shards, tmp_path):
    from mirage.data.shards import check_shard_dir

    part = tmp_path / "part"
    shutil.copytree(shards, part)
    (part / "index.json").unlink()
    with pytest.raises(ValueError, match="preprocessing did not finish"):
        check_shard_dir(part)


def test_loss_falls_when_overfitting_one_batch(shards):
    ds = ShardDataset(shards)
    model = build_model(TrainConfig(stage=0, seed=0), ds.channels)
    batch = collate([ds[1], ds[3]], 64)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        gen = torch.Generator().manual_seed(0)  # the same noise and sigma every step
        loss = flow_matching_loss(model, batch, gen, prompt_dropout=0.0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[::5]


def test_lr_schedule():
    cfg = TrainConfig(lr=1.0, warmup_steps=4, max_steps=14, schedule="cosine", min_lr_ratio=0.0)
    assert [lr_at(s, cfg) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, cfg) == 1.0 and lr_at(9, cfg) == pytest.approx(0.5)
    assert lr_at(14, cfg) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(6, cfg) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.2)))
    const = TrainConfig(lr=2.0, warmup_steps=0, schedule="constant")
    assert lr_at(0, const) == lr_at(1000, const) == 2.0


SCRIPT = """
import json, sys, torch
from safetensors.torch import save_file
from mirage.training.config import TrainConfig
from mirage.training.train import train
from mirage.training.checkpoint import trainable_state
res = train(TrainConfig(data=sys.argv[1], out=sys.argv[2], stage=1, max_steps=2, batch_size=1,
                        warmup_steps=0, lr=1e-2, checkpoint_every=0, progress=False, seed=1))
rank = torch.distributed.get_rank()
save_file(trainable_state(res.model), f"{sys.argv[2]}/rank{rank}.safetensors")
json.dump(res.losses, open(f"{sys.argv[2]}/losses{rank}.json", "w"))
"""


def test_two_processes_hold_identical_weights(shards, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    # accelerate launch starts several CPU processes only through mpirun; torchrun plus
    # ACCELERATE_USE_CPU gives the same gloo process group without it.
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", ACCELERATE_USE_CPU="true",
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))  # fmt: skip
    port = str(29500 + os.getpid() % 1000)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", port, str(script), str(shards), str(out)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0, w1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    assert w0.keys() == w1.keys() and len(w0) > 0
    for n in w0:
        assert torch.equal(w0[n], w1[n]), n
    l0 = json.loads((out / "losses0.json").read_text())
    l1 = json.loads((out / "losses1.json").read_text())
    assert l0 != l1  # the ranks saw different samples and noise, yet hold the same weights
    assert Path(out / "side_branch.safetensors").is_file()


def test_gradient_checkpointing_gives_the_same_gradients(shards):
    ds = ShardDataset(shards)
    batch = collate([ds[1], ds[3]], 64)
    grads = []
    for ckpt in (False, True):
        model = build_model(TrainConfig(stage=1, gradient_checkpointing=ckpt), ds.channels)
        flow_matching_loss(model, batch, torch.Generator().manual_seed(0)).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    assert model.gradient_checkpointing
    for n, g in grads[0].items():
        torch.testing.assert_close(grads[1][n], g, rtol=1e-5, atol=1e-7, msg=n)
