"""Flow-matching objective: shifted sigmas, clean slots held out, per-slot timesteps, dropout."""

import pytest
import torch

from mirage.training.flow import flow_matching_loss, sample_sigmas, shift_sigma


def test_shift_closed_form():
    u = torch.tensor([0.0, 0.25, 0.5, 1.0])
    assert torch.allclose(shift_sigma(u, 5.0), torch.tensor([0.0, 1.25 / 2.0, 2.5 / 3.0, 1.0]))
    assert torch.equal(shift_sigma(u, 1.0), u)
    g = torch.Generator().manual_seed(0)
    s = sample_sigmas(4000, 5.0, "uniform", g)
    # P(sigma <= 0.5) = P(u <= 1/6) for shift 5: u = s / (shift - (shift - 1) s)
    assert (s <= 0.5).float().mean() == pytest.approx(1 / 6, abs=0.02)
    ln = sample_sigmas(4000, 1.0, "logit_normal", g)
    assert ln.median() == pytest.approx(0.5, abs=0.03) and 0 < ln.min() and ln.max() < 1
    with pytest.raises(ValueError, match="sampling"):
        sample_sigmas(2, 5.0, "beta", g)


class Recorder(torch.nn.Module):
    """Stands in for the transformer: records its inputs, returns a fixed velocity."""

    def __init__(self, out):
        super().__init__()
        self.out, self.calls = out, []

    def forward(self, latents, timestep, text, readout):
        self.calls.append((latents, timestep, text, readout))
        return self.out


def _batch(B=3, C=4, F=6, nc=3, L=2, D=8):
    g = torch.Generator().manual_seed(1)
    return {
        "latents": torch.randn(B, C, F, 2, 2, generator=g),
        "condition": torch.randn(B, C + 1, F, 2, 2, generator=g),
        "num_clean": nc,
        "text": torch.randn(B, L, D, generator=g) + 3,
    }


def test_loss_on_target_slots_only():
    batch = _batch()
    x0, nc = batch["latents"], 3
    out = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    model = Recorder(out)
    loss = flow_matching_loss(model, batch, torch.Generator().manual_seed(3), prompt_dropout=0.0)
    latents, timestep, text, readout = model.calls[0]
    # clean slots enter unchanged with timestep 0; readout passed through
    assert torch.equal(latents[:, :, :nc], x0[:, :, :nc])
    assert torch.equal(timestep[:, :nc], torch.zeros(3, nc))
    assert torch.equal(readout, batch["condition"]) and torch.equal(text, batch["text"])
    # target slots: one t per sample; x_t = (1 - s) x0 + s noise with s = t / 1000
    t = timestep[:, nc:]
    assert torch.equal(t, t[:, :1].expand_as(t)) and ((t > 0) & (t < 1000)).all()
    s = (t[:, 0] / 1000).view(3, 1, 1, 1, 1)
    noise = (latents[:, :, nc:] - (1 - s) * x0[:, :, nc:]) / s
    expected = ((out[:, :, nc:] - (noise - x0[:, :, nc:])) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    # a different velocity on the clean slots does not move the loss
    out2 = out.clone()
    out2[:, :, :nc] += 100
    loss2 = flow_matching_loss(
        Recorder(out2), batch, torch.Generator().manual_seed(3), prompt_dropout=0.0
    )
    assert loss2.item() == loss.item()


def test_prompt_dropout_gives_the_null_embedding():
    batch = _batch(B=64)
    model = Recorder(torch.zeros_like(batch["latents"]))
    flow_matching_loss(model, batch, torch.Generator().manual_seed(0), prompt_dropout=1.0)
    assert not model.calls[0][2].any()  # all dropped: zeros
    flow_matching_loss(model, batch, torch.Generator().manual_seed(0), prompt_dropout=0.1)
    dropped = (model.calls[1][2].abs().sum(dim=(1, 2)) == 0).sum().item()
    assert 1 <= dropped <= 16  # about 10 % of 64


def test_readout_dropout_empties_whole_samples_and_keeps_the_other_draws():
    """A dropped sample's side input is all zero (latents and mask: the empty readout), a kept
    one is the batch's exactly; sigmas, noise and prompt drops are those of a run without it."""
    batch = _batch(B=64)
    model = Recorder(torch.zeros_like(batch["latents"]))
    flow_matching_loss(model, batch, torch.Generator().manual_seed(0), prompt_dropout=0.1)
    flow_matching_loss(model, batch, torch.Generator().manual_seed(0), prompt_dropout=0.1,
                       readout_dropout=0.25)  # fmt: skip
    flow_matching_loss(model, batch, torch.Generator().manual_seed(0), readout_dropout=1.0)
    (lat0, t0, text0, _), (lat1, t1, text1, cond1), cond_all = model.calls[0], model.calls[1], \
        model.calls[2][3]  # fmt: skip
    assert torch.equal(lat0, lat1) and torch.equal(t0, t1) and torch.equal(text0, text1)
    assert not cond_all.any()
    dropped = [b for b in range(64) if not cond1[b].any()]
    kept = [b for b in range(64) if b not in dropped]
    assert 6 <= len(dropped) <= 28  # about a quarter of 64
    assert torch.equal(cond1[kept], batch["condition"][kept])


def test_copy_fidelity_split_matches_a_loop_over_cells():
    """`parts` splits the squared velocity error by the readout's visibility mask (the last
    condition channel) on target slots; checked against a plain loop over every cell."""
    batch = _batch(B=2, C=3, F=5, nc=2)
    batch["condition"][:, -1] = (torch.arange(2 * 5 * 4).view(2, 5, 2, 2) % 3 == 0).float()
    out = torch.randn(batch["latents"].shape, generator=torch.Generator().manual_seed(4))
    model, parts = Recorder(out), {}
    loss = flow_matching_loss(model, batch, torch.Generator().manual_seed(5), 5.0, "uniform",
                              0.0, None, parts)  # fmt: skip
    latents, timestep = model.calls[0][:2]
    x0, nc = batch["latents"], 2
    seen, unseen = [], []
    for b in range(2):
        s = float(timestep[b, nc]) / 1000
        for c in range(3):
            for f in range(nc, 5):
                for i in range(2):
                    for j in range(2):
                        noise = (latents[b, c, f, i, j] - (1 - s) * x0[b, c, f, i, j]) / s
                        e = float((out[b, c, f, i, j] - (noise - x0[b, c, f, i, j])) ** 2)
                        (seen if batch["condition"][b, -1, f, i, j] else unseen).append(e)
    assert parts["covered"].item() == pytest.approx(sum(seen) / len(seen), rel=1e-3)
    assert parts["uncovered"].item() == pytest.approx(sum(unseen) / len(unseen), rel=1e-3)
    total = (sum(seen) + sum(unseen)) / (len(seen) + len(unseen))
    assert loss.item() == pytest.approx(total, rel=1e-3)
