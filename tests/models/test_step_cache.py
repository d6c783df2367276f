"""Step caching (First Block Cache on MirageTransformer.layers): exact when it never skips,
skips every later main and side block when it may, and keeps the side-branch hints."""

import pytest
import torch
from diffusers import WanTransformer3DModel

from mirage.models.loading import make_scheduler, tiny_transformer_config
from mirage.models.step_cache import step_cache
from mirage.models.transformer import MirageTransformer
from mirage.pipeline.sampling import sample_chunk

STEPS = 5


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    base = WanTransformer3DModel(**tiny_transformer_config(in_channels=16, out_channels=16))
    model = MirageTransformer.from_base(base, seed=1).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # a non-zero side branch, so the hints matter
        for blk in model.side_blocks:
            blk.proj_out.weight.normal_(0, 0.05, generator=g)
    return model


def _inputs():
    g = torch.Generator().manual_seed(3)
    return {
        "clean": torch.randn(2, 16, 8, 8, generator=g),  # first frame + one context latent
        "noise": torch.randn(2, 16, 8, 8, generator=g),
        "text": torch.randn(1, 5, 64, generator=g),
        "condition": torch.randn(17, 4, 8, 8, generator=g),
    }


class Calls:
    """Counts the forward calls of every main block and every side block."""

    def __init__(self, model):
        self.main = self.side = 0
        self.handles = [b.register_forward_hook(self._main) for b in model.base.blocks]
        self.handles += [b.register_forward_hook(self._side) for b in model.side_blocks]

    def _main(self, *_):
        self.main += 1

    def _side(self, *_):
        self.side += 1

    def remove(self):
        for h in self.handles:
            h.remove()


def _sample(model, cache="off", threshold=0.05):
    calls = Calls(model)
    sched = make_scheduler(shift=5.0)
    x = sample_chunk(model, sched, num_steps=STEPS, cache=cache, cache_threshold=threshold,
                     **_inputs())  # fmt: skip
    calls.remove()
    return x, calls


def test_threshold_zero_never_skips_and_is_exact(model):
    ref, off = _sample(model)
    got, fbc = _sample(model, "fbc", 0.0)
    L, J = len(model.base.blocks), len(model.side_blocks)
    assert (off.main, off.side) == (fbc.main, fbc.side) == (STEPS * L, STEPS * J)
    assert torch.equal(got, ref)
    assert not model.is_cache_enabled  # off again after the chunk


def test_a_huge_threshold_skips_every_later_block(model):
    ref, _ = _sample(model)
    got, fbc = _sample(model, "fbc", 1e9)
    L, J = len(model.base.blocks), len(model.side_blocks)
    # step 1 runs everything; steps 2.. run only layer 0: main block 0 and side block 0
    assert (fbc.main, fbc.side) == (L + STEPS - 1, J + STEPS - 1)
    assert not torch.equal(got, ref) and torch.isfinite(got).all()


def test_a_skipped_step_keeps_the_hints(model):
    """Same inputs twice: the second call is skipped and must give the full output again.

    Were the hints added outside the cached blocks, the skipped call would add this step's
    hints on top of a residual that already holds them and be off by the sum of the hints.
    """
    x = _inputs()
    latents = torch.cat([x["clean"], x["noise"]]).permute(1, 0, 2, 3)[None]
    t = torch.tensor([[0.0, 0.0, 700.0, 700.0]])
    readout = x["condition"][None]
    with torch.no_grad():
        full = model(latents, t, x["text"], readout)
        no_hint = model(latents, t, x["text"], readout, side_scale=0.0)
        calls = Calls(model)
        with step_cache(model, "fbc", 1e9), model.cache_context("cond"):
            first = model(latents, t, x["text"], readout)
            second = model(latents, t, x["text"], readout)
        calls.remove()
    L = len(model.base.blocks)
    assert calls.main == L + 1  # the second call ran main block 0 only
    assert (full - no_hint).abs().max() > 1e-2  # the hints change the output
    torch.testing.assert_close(first, full, rtol=0, atol=0)
    torch.testing.assert_close(second, full, rtol=1e-5, atol=1e-5)


def test_cache_options_are_checked():
    from mirage.pipeline import GenerationConfig

    with pytest.raises(ValueError, match="`cache` must be one of"):
        GenerationConfig(cache="mag")
    with pytest.raises(ValueError, match="`cache_threshold` must be >= 0"):
        GenerationConfig(cache="fbc", cache_threshold=-1.0)


def test_generate_cli_runs_with_the_cache_and_records_it(tiny_model_dir, tmp_path):
    import json

    from typer.testing import CliRunner

    from mirage.cli import app

    out = tmp_path / "fbc"
    args = ["generate", "--model", str(tiny_model_dir), "--out", str(out), "--scene", "1",
            "--frames", "9", "--chunk-frames", "9", "--steps", "3", "--size", "64x64",
            "--cache", "fbc", "--cache-threshold", "0.1"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    config = json.loads((out / "metadata.json").read_text())["config"]
    assert (config["cache"], config["cache_threshold"]) == ("fbc", 0.1)
    bad = CliRunner().invoke(app, [*args[:4], str(tmp_path / "bad"), *args[5:-3], "mag"])
    assert bad.exit_code != 0 and "`cache` must be one of" in bad.output
