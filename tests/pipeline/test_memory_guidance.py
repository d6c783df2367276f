"""Memory guidance: in the target cells the readout sees, each step's velocity is
v_empty + w (v - v_empty), v_empty being the model's velocity with a readout that sees nothing;
elsewhere v. Checked against sampling with an all-zero readout (w = 0, every cell seen),
against a transformer that does the mixing itself (w = 2, at every step or only at the
low-noise steps `memory_guidance_sigma` keeps), and on input."""

import pytest
import torch

from mirage.models.loading import make_scheduler, tiny_components
from mirage.models.transformer import MirageTransformer
from mirage.pipeline import GenerationConfig
from mirage.pipeline.sampling import sample_chunk


@pytest.fixture(scope="module")
def transformer():
    tr = MirageTransformer.from_base(tiny_components(0).transformer).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a fresh branch adds exactly zero: give it something to say
        for block in tr.side_blocks:
            block.proj_out.weight.normal_(0, 0.05, generator=gen)
    return tr


def _inputs(tr, seed=0, seen=0.6):
    gen = torch.Generator().manual_seed(seed)
    C = tr.config.in_channels
    clean, noise = torch.randn(1, C, 4, 4, generator=gen), torch.randn(2, C, 4, 4, generator=gen)
    mask = (torch.rand(1, 3, 4, 4, generator=gen) < seen).float()
    readout = torch.randn(C, 3, 4, 4, generator=gen) * mask
    text = torch.zeros(1, 1, tr.config.text_dim)
    return clean, noise, text, torch.cat([readout, mask])  # condition [C+1,F,h,w]


class _Mixed(torch.nn.Module):
    """The transformer with the guidance done inside, in the cells the readout's mask (its last
    channel) sees, on steps of timestep <= 1000 max_sigma (the flow schedule's t = 1000 sigma):
    what sample_chunk should compute."""

    def __init__(self, tr, w, max_sigma=1.0):
        super().__init__()
        self.tr, self.w, self.max_t, self.dtype = tr, w, 1000 * max_sigma, tr.dtype

    def forward(self, latents, timestep, text, readout, **kw):
        v = self.tr(latents, timestep, text, readout, **kw)
        if timestep.max() > self.max_t:
            return v
        v_empty = self.tr(latents, timestep, text, torch.zeros_like(readout), **kw)
        seen = readout[:, -1:].to(v.dtype)  # [1,1,F,h,w]
        return v_empty + (1 + (self.w - 1) * seen) * (v - v_empty)


def _sample(tr, clean, noise, text, cond, w=1.0, max_sigma=1.0):
    return sample_chunk(tr, make_scheduler(5.0), clean, noise, text, cond, 3, memory_guidance=w,
                        memory_guidance_sigma=max_sigma)  # fmt: skip


def test_weight_zero_is_sampling_with_an_empty_readout_where_all_is_seen(transformer):
    clean, noise, text, cond = _inputs(transformer, seen=1.1)
    assert cond[-1].all()
    got = _sample(transformer, clean, noise, text, cond, w=0.0)
    want = _sample(transformer, clean, noise, text, torch.zeros_like(cond))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert not torch.allclose(got, _sample(transformer, clean, noise, text, cond), atol=1e-3)


def test_weight_two_mixes_the_two_velocities_at_every_step_in_seen_cells(transformer):
    clean, noise, text, cond = _inputs(transformer, seed=3)
    assert 0 < cond[-1].mean() < 1
    got = _sample(transformer, clean, noise, text, cond, w=2.0)
    want = _sample(_Mixed(transformer, 2.0), clean, noise, text, cond)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    plain = _sample(transformer, clean, noise, text, cond)
    assert (got - plain).abs().max() > 1e-3  # the guidance changed the sample


def test_sigma_bound_guides_only_the_low_noise_steps(transformer):
    # 3 steps at shift 5 have sigmas 1, 0.91, 0.71: a bound of 0.8 guides the last step alone
    clean, noise, text, cond = _inputs(transformer, seed=5)
    got = _sample(transformer, clean, noise, text, cond, w=2.0, max_sigma=0.8)
    want = _sample(_Mixed(transformer, 2.0, max_sigma=0.8), clean, noise, text, cond)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    every_step = _sample(transformer, clean, noise, text, cond, w=2.0)
    plain = _sample(transformer, clean, noise, text, cond)
    assert (got - every_step).abs().max() > 1e-3 and (got - plain).abs().max() > 1e-3


def test_bad_weights_fail_before_any_work():
    with pytest.raises(ValueError, match="memory_guidance"):
        GenerationConfig(memory_guidance=-0.5)
    with pytest.raises(ValueError, match="needs a memory"):
        GenerationConfig(memory="none", memory_guidance=1.5)
    for bound in (0.0, 1.5):
        with pytest.raises(ValueError, match="memory_guidance_sigma"):
            GenerationConfig(memory_guidance_sigma=bound)
