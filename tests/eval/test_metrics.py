"""PSNR / SSIM against closed forms, LPIPS against a functional re-implementation."""

import math

import pytest
import torch
import torch.nn.functional as F

from mirage.eval.lpips import LPIPS, MetricUnavailable, default_backbone_path, default_heads_path
from mirage.eval.metrics import lpips_score, psnr, ssim

# (index in alexnet.features, out, in, kernel): torchvision's AlexNet convolutions
ALEX_CONVS = [
    (0, 64, 3, 11),
    (3, 192, 64, 5),
    (6, 384, 192, 3),
    (8, 256, 384, 3),
    (10, 256, 256, 3),
]


def test_psnr_constant_offset_is_20db(gen):
    target = 0.8 * torch.rand(3, 3, 16, 20, generator=gen)
    s = psnr(target + 0.1, target)  # MSE = 0.01 -> 10 log10(1 / 0.01) = 20 dB
    assert torch.allclose(s.per_frame, torch.full((3,), 20.0), atol=1e-4)
    assert s.mean == pytest.approx(20.0, abs=1e-4)


def test_psnr_per_frame_closed_form_and_data_range(gen):
    target = torch.full((2, 3, 8, 8), 0.5)
    pred = target.clone()
    pred[0] += 0.05  # MSE 0.0025 -> 26.0206 dB
    pred[1, :, :4] += 0.2  # half the pixels off by 0.2: MSE 0.02 -> 16.9897 dB
    s = psnr(pred, target)
    expected = [10 * math.log10(1 / 0.0025), 10 * math.log10(1 / 0.02)]
    assert s.per_frame.tolist() == pytest.approx(expected, abs=1e-3)
    assert s.mean == pytest.approx(sum(expected) / 2, abs=1e-3)
    # data_range 2 adds 20 log10(2) dB
    s2 = psnr(pred, target, data_range=2.0)
    assert s2.per_frame.tolist() == pytest.approx(
        [e + 20 * math.log10(2) for e in expected], abs=1e-3
    )


def test_psnr_identical_is_inf(gen):
    x = torch.rand(2, 3, 8, 8, generator=gen)
    assert torch.isinf(psnr(x, x).per_frame).all()


def test_ssim_identity_and_noise(gen):
    x = torch.rand(2, 3, 32, 24, generator=gen)
    assert ssim(x, x).per_frame.tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    s = ssim(noisy, x)
    assert (s.per_frame < 0.9).all()
    # more noise, lower SSIM
    noisier = (x + 0.4 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    assert ssim(noisier, x).mean < s.mean


@pytest.mark.parametrize(
    "pred_shape, msg",
    [((2, 3, 8), "[T,3,H,W]"), ((2, 1, 8, 8), "[T,3,H,W]"), ((3, 3, 8, 8), "same shape")],
)
def test_metrics_reject_bad_shapes(pred_shape, msg):
    with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        psnr(torch.zeros(pred_shape), torch.zeros(2, 3, 8, 8))


def test_metrics_reject_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ssim(torch.full((1, 3, 16, 16), 255.0), torch.zeros(1, 3, 16, 16))


def _lpips_reference(pred, target, backbone, heads):
    """LPIPS written out with functional calls straight from the state dicts."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    out = []
    for x in (pred, target):
        h = ((2 * x - 1) - shift) / scale
        feats = []
        for idx, _, _, k in ALEX_CONVS:
            if idx in (3, 6):  # max-pool before conv2 and conv3
                h = F.max_pool2d(h, 3, 2)
            stride, pad = (4, 2) if idx == 0 else (1, k // 2)
            w, b = backbone[f"features.{idx}.weight"], backbone[f"features.{idx}.bias"]
            h = F.relu(F.conv2d(h, w, b, stride=stride, padding=pad))
            feats.append(h)
        out.append(feats)
    total = torch.zeros(len(pred))
    for i, (a, b) in enumerate(zip(*out, strict=True)):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        w = heads[f"lin{i}.model.1.weight"].view(1, -1, 1, 1)
        total += ((a - b) ** 2 * w).sum(1).mean(dim=(1, 2))
    return total


def test_lpips_zero_for_identical_and_positive_otherwise(lpips_weights, gen):
    bpath, hpath, backbone, heads = lpips_weights
    model = LPIPS(bpath, hpath)
    x = torch.rand(2, 3, 40, 48, generator=gen)
    assert model(x, x).tolist() == pytest.approx([0.0, 0.0], abs=1e-7)
    y = torch.rand(2, 3, 40, 48, generator=gen)
    d = model(x, y)
    assert (d > 1e-4).all()
    assert torch.allclose(d, _lpips_reference(x, y, backbone, heads), rtol=1e-4, atol=1e-6)
    assert torch.allclose(model(x, y, batch_size=1), d, rtol=1e-5, atol=1e-7)


def test_lpips_score_and_unavailable(lpips_weights, gen, tmp_path):
    bpath, hpath, *_ = lpips_weights
    x, y = torch.rand(2, 1, 3, 32, 32, generator=gen)
    s = lpips_score(x, y, backbone_path=bpath, heads_path=hpath)
    assert s is not None and s.mean > 0
    assert lpips_score(x, y, backbone_path=tmp_path / "nope" / "alexnet.pth") is None


def test_lpips_refuses_without_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    expected = tmp_path / "th" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert default_backbone_path() == expected
    with pytest.raises(MetricUnavailable, match="alexnet-owt-7be5be79.pth") as info:
        LPIPS()
    assert isinstance(info.value, FileNotFoundError)
    assert str(expected.parent) in str(info.value)


def test_lpips_finds_shipped_heads_under_torch_home(lpips_weights, tmp_path, monkeypatch):
    """With the backbone placed at $TORCH_HOME, the heads come from torchmetrics by default."""
    if default_heads_path() is None:
        pytest.skip("neither torchmetrics nor lpips ships alex.pth here")
    bpath = lpips_weights[0]
    target = tmp_path / "th" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(bpath.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    model = LPIPS()
    shipped = torch.load(default_heads_path(), map_location="cpu", weights_only=True)
    assert torch.equal(model.heads[2].weight, shipped["lin2.model.1.weight"])
    assert (model.heads[0].weight >= 0).all()  # the published heads are non-negative


def test_lpips_rejects_wrong_backbone(tmp_path, lpips_weights):
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, bad)
    with pytest.raises(ValueError, match="features"):
        LPIPS(bad, lpips_weights[1])
