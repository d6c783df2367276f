"""Stand-in LPIPS weights: a random AlexNet in torchvision's key layout, random positive heads."""

import pytest
import torch

# (index in alexnet.features, out, in, kernel) of torchvision's AlexNet convolutions
ALEX_CONVS = [
    (0, 64, 3, 11),
    (3, 192, 64, 5),
    (6, 384, 192, 3),
    (8, 256, 384, 3),
    (10, 256, 256, 3),
]


@pytest.fixture
def lpips_weights(tmp_path):
    """Paths (backbone, heads) of stand-in weight files in the real files' formats."""
    g = torch.Generator().manual_seed(1)
    backbone = {}
    for idx, cout, cin, k in ALEX_CONVS:
        fan_in = cin * k * k
        backbone[f"features.{idx}.weight"] = torch.randn(cout, cin, k, k, generator=g) / fan_in**0.5
        backbone[f"features.{idx}.bias"] = 0.1 * torch.randn(cout, generator=g)
    # torchvision's file also holds the classifier; the loader must ignore it
    backbone["classifier.1.weight"] = torch.randn(8, 4, generator=g)
    heads = {
        f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) + 0.01
        for i, c in enumerate([64, 192, 384, 256, 256])
    }
    bpath, hpath = tmp_path / "alexnet-owt-7be5be79.pth", tmp_path / "alex.pth"
    torch.save(backbone, bpath)
    torch.save(heads, hpath)
    return bpath, hpath, backbone, heads
