"""Readout copy: each step's clean estimate x - sigma v is moved c of the way to the memory
readout in the cells the readout sees (the velocity is then (x - x0') / sigma). Checked
against the closed form of one step, against full copying (the sample is the readout where it
sees), against a per-cell model (unseen cells untouched), and on input."""

import pytest
import torch

from mirage.models.loading import make_scheduler, tiny_components
from mirage.models.transformer import MirageTransformer
from mirage.pipeline import GenerationConfig
from mirage.pipeline.config import parse_readout_copy
from mirage.pipeline.sampling import copy_readout, sample_chunk


def test_one_step_moves_the_clean_estimate():
    g = torch.Generator().manual_seed(0)
    v, x, target = (torch.randn(2, 3, 4, 4, generator=g) for _ in range(3))
    weight = torch.rand(2, 1, 4, 4, generator=g)
    sigma = 0.37
    got = copy_readout(v, x, sigma, target, weight)
    for b in range(2):
        for c in range(3):
            for i in range(4):
                for j in range(4):
                    w, s = float(weight[b, 0, i, j]), sigma
                    x0 = float(x[b, c, i, j]) - s * float(v[b, c, i, j])
                    moved = (1 - w) * x0 + w * float(target[b, c, i, j])
                    want = (float(x[b, c, i, j]) - moved) / s  # the velocity that gives it
                    assert float(got[b, c, i, j]) == pytest.approx(want, abs=1e-4)


@pytest.fixture(scope="module")
def transformer():
    return MirageTransformer.from_base(tiny_components(0).transformer).eval()


def _inputs(C, seed=0):
    gen = torch.Generator().manual_seed(seed)
    clean, noise = torch.randn(1, C, 4, 4, generator=gen), torch.randn(2, C, 4, 4, generator=gen)
    mask = (torch.rand(1, 3, 4, 4, generator=gen) > 0.4).float()
    readout = torch.randn(C, 3, 4, 4, generator=gen) * mask
    return clean, noise, torch.cat([readout, mask])  # condition [C+1,F,h,w], slot 0 clean


def _sample(tr, clean, noise, cond, copy, steps=4):
    text = torch.zeros(1, 1, getattr(tr, "config", {"text_dim": 8})["text_dim"])
    return sample_chunk(tr, make_scheduler(5.0), clean, noise, text, cond, steps,
                        readout_copy=copy)  # fmt: skip


def test_full_copy_gives_the_readout_where_it_sees(transformer):
    """c = 1: every step's clean estimate is the readout in seen cells, so the sample is."""
    C = transformer.config.in_channels
    clean, noise, cond = _inputs(C)
    got = _sample(transformer, clean, noise, cond, 1.0)
    seen = cond[-1:, 1:].permute(1, 0, 2, 3).bool().expand_as(got)  # target slots 1, 2
    readout = cond[:-1, 1:].permute(1, 0, 2, 3)
    torch.testing.assert_close(got[seen], readout[seen], rtol=0, atol=1e-4)
    plain = _sample(transformer, clean, noise, cond, 0.0)
    assert (plain[seen] - readout[seen]).abs().max() > 0.1  # the model alone does not copy
    assert (got[~seen] - plain[~seen]).abs().max() > 1e-4  # attention: unseen cells move too


class _PerCell(torch.nn.Module):
    """A velocity model that looks at each cell alone: v = 0.5 x (no attention)."""

    dtype = torch.float32

    def forward(self, latents, timestep, text, readout, **kw):
        return 0.5 * latents


def test_unseen_cells_are_untouched_and_half_copy_lies_between():
    clean, noise, cond = _inputs(4, seed=2)
    plain = _sample(_PerCell(), clean, noise, cond, 0.0)
    half = _sample(_PerCell(), clean, noise, cond, 0.5)
    full = _sample(_PerCell(), clean, noise, cond, 1.0)
    seen = cond[-1:, 1:].permute(1, 0, 2, 3).bool().expand_as(plain)
    assert torch.equal(half[~seen], plain[~seen]) and torch.equal(full[~seen], plain[~seen])
    readout = cond[:-1, 1:].permute(1, 0, 2, 3)
    torch.testing.assert_close(full[seen], readout[seen], rtol=0, atol=1e-5)
    gap = lambda s: (s[seen] - readout[seen]).abs().mean()  # noqa: E731
    assert gap(full) < gap(half) < gap(plain)


def test_bad_values_fail_before_any_work():
    for bad in (-0.1, 1.5, "yes"):
        with pytest.raises(ValueError, match="readout_copy"):
            GenerationConfig(readout_copy=bad)
    with pytest.raises(ValueError, match="needs a memory"):
        GenerationConfig(memory="none", readout_copy=0.5)
    GenerationConfig(memory="none", readout_copy="auto")  # resolves to off without a memory
    assert parse_readout_copy("off") == 0.0 and parse_readout_copy("0.25") == 0.25
    assert parse_readout_copy("auto") == "auto"
    with pytest.raises(ValueError, match="readout_copy"):
        parse_readout_copy("lots")
