"""LPIPS (AlexNet variant) in plain torch: no torchvision, weights loaded from local files only.

LPIPS (Zhang et al. 2018, version 0.1) compares two images through the five ReLU outputs of
an ImageNet AlexNet: inputs in [0, 1] are mapped to [-1, 1], shifted and scaled per channel,
each feature map is unit-normalised along channels, the squared difference is weighted per
channel by a learned non-negative 1x1 convolution (the "linear heads"), averaged over space
and summed over the five layers.

Two weight files are needed, both read with `torch.load(weights_only=True)`:
  * the AlexNet backbone, torchvision's `alexnet-owt-7be5be79.pth` (keys `features.0.weight`
    ...), looked up at `$TORCH_HOME/hub/checkpoints/` (TORCH_HOME defaults to
    ~/.cache/torch) unless a path is given. It is not shipped with any pip package we use;
    when it is missing LPIPS is *unavailable* (`MetricUnavailable`), never approximated.
  * the linear heads `alex.pth` (keys `lin0.model.1.weight` ... `lin4.model.1.weight`),
    shipped inside torchmetrics (`torchmetrics/functional/image/lpips_models/alex.pth`) and
    the `lpips` package (`lpips/weights/v0.1/alex.pth`); found automatically.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from mirage.eval.frames import check_frames

BACKBONE_FILE = "alexnet-owt-7be5be79.pth"
BACKBONE_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
HEAD_CHANNELS = (64, 192, 384, 256, 256)  # channels of the five AlexNet ReLU outputs
# Input scaling of LPIPS v0.1 (ScalingLayer): (x - shift) / scale on inputs in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10  # unit-normalisation: x / (||x||_2 over channels + eps), as in lpips
MIN_SIZE = 31  # smallest H, W for which all five AlexNet stages have a non-empty output


class MetricUnavailable(FileNotFoundError):
    """A metric cannot be computed because a weight file is missing (message says which)."""


def default_backbone_path() -> Path:
    """Where the AlexNet backbone is looked up: $TORCH_HOME/hub/checkpoints/<file>."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints" / BACKBONE_FILE


def default_heads_path() -> Path | None:
    """The LPIPS AlexNet linear heads shipped in torchmetrics or lpips, or None if neither."""
    candidates = []
    for package, rel in (
        ("torchmetrics", ("functional", "image", "lpips_models", "alex.pth")),
        ("lpips", ("weights", "v0.1", "alex.pth")),
    ):
        spec = importlib.util.find_spec(package)  # locates the package without importing it
        if spec is not None and spec.submodule_search_locations:
            for root in spec.submodule_search_locations:
                candidates.append(Path(root).joinpath(*rel))
    return next((p for p in candidates if p.is_file()), None)


def _alexnet_features() -> nn.Sequential:
    # Same indices as torchvision's alexnet().features, so its state-dict keys load directly.
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # 0
        nn.ReLU(),  # 1 -> relu1
        nn.MaxPool2d(kernel_size=3, stride=2),  # 2
        nn.Conv2d(64, 192, kernel_size=5, padding=2),  # 3
        nn.ReLU(),  # 4 -> relu2
        nn.MaxPool2d(kernel_size=3, stride=2),  # 5
        nn.Conv2d(192, 384, kernel_size=3, padding=1),  # 6
        nn.ReLU(),  # 7 -> relu3
        nn.Conv2d(384, 256, kernel_size=3, padding=1),  # 8
        nn.ReLU(),  # 9 -> relu4
        nn.Conv2d(256, 256, kernel_size=3, padding=1),  # 10
        nn.ReLU(),  # 11 -> relu5
    )


_TAPS = (1, 4, 7, 9, 11)  # indices in `features` whose outputs LPIPS compares


def _load_state(path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or non-tensor file: say which one
        raise ValueError(f"could not read the {what} weights from {path}: {e}") from e
    if not isinstance(state, dict):
        raise ValueError(f"the {what} file {path} must hold a state dict, got {type(state)}")
    return state


class LPIPS(nn.Module):
    """LPIPS-AlexNet distance, per frame.

    Args:
        backbone_path: torchvision AlexNet weights; default `default_backbone_path()`.
        heads_path: LPIPS v0.1 `alex.pth` linear heads; default the copy in torchmetrics.
    Raises:
        MetricUnavailable: a weight file is missing; the message names it and where to put it.
    """

    def __init__(self, backbone_path: str | Path | None = None, heads_path=None):
        super().__init__()
        backbone = Path(backbone_path) if backbone_path is not None else default_backbone_path()
        if not backbone.is_file():
            raise MetricUnavailable(
                f"LPIPS is unavailable: the AlexNet backbone weights {BACKBONE_FILE} were not "
                f"found at {backbone}. Download {BACKBONE_URL} and put it in "
                f"{default_backbone_path().parent} (or set TORCH_HOME, or pass its path)."
            )
        heads = Path(heads_path) if heads_path is not None else default_heads_path()
        if heads is None or not heads.is_file():
            raise MetricUnavailable(
                f"LPIPS is unavailable: the linear-head weights alex.pth were not found "
                f"(looked for {heads or 'torchmetrics/functional/image/lpips_models/alex.pth'}"
                "); install torchmetrics (`pip install mirage-world[eval]`) or pass heads_path."
            )
        self.features = _alexnet_features()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in HEAD_CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self._load(backbone, heads)
        self.requires_grad_(False)
        self.eval()

    def _load(self, backbone: Path, heads: Path) -> None:
        state = _load_state(backbone, "AlexNet backbone")
        feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        missing = set(self.features.state_dict()) - set(feats)
        if missing:
            raise ValueError(
                f"{backbone} is not a torchvision AlexNet state dict: missing "
                f"{sorted('features.' + k for k in missing)}"
            )
        feats = {k: v for k, v in feats.items() if k in self.features.state_dict()}
        self._copy(self.features, feats, backbone)
        state = _load_state(heads, "LPIPS linear heads")
        for i, head in enumerate(self.heads):
            key = next(
                (k for k in (f"lin{i}.model.1.weight", f"lin{i}.model.0.weight") if k in state),
                None,
            )
            if key is None:
                raise ValueError(
                    f"{heads} has no weight for LPIPS head {i} (key lin{i}.model.1.weight)"
                )
            self._copy(head, {"weight": state[key]}, heads)

    @staticmethod
    def _copy(module: nn.Module, state: dict, path: Path) -> None:
        for name, param in module.state_dict().items():
            if state[name].shape != param.shape:
                raise ValueError(
                    f"{path}: weight `{name}` must have shape {tuple(param.shape)}, got "
                    f"{tuple(state[name].shape)}"
                )
        module.load_state_dict({k: v.float() for k, v in state.items()})

    @torch.no_grad()
    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, batch_size: int = 8
    ) -> torch.Tensor:
        """pred, target: [T,3,H,W] in [0, 1] -> per-frame LPIPS distance [T] (>= 0).

        Frames go through the network `batch_size` at a time (bounded activation memory).
        """
        check_frames(pred, target)
        H, W = pred.shape[-2:]
        if H < MIN_SIZE or W < MIN_SIZE:
            raise ValueError(
                f"LPIPS-AlexNet needs frames of at least {MIN_SIZE}x{MIN_SIZE}, got {H}x{W}"
            )
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be at least 1, got {batch_size}")
        out = [
            self._distance(pred[i : i + batch_size], target[i : i + batch_size])
            for i in range(0, len(pred), batch_size)
        ]
        return torch.cat(out)

    def _distance(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # -> [T]
        device = self.shift.device
        T = len(pred)
        # 1. [0, 1] -> [-1, 1] -> LPIPS input scaling; both images in one batch
        x = torch.cat([pred, target]).to(device, torch.float32) * 2 - 1
        x = (x - self.shift) / self.scale
        # 2. the five ReLU outputs, unit-normalised along channels
        total = torch.zeros(T, device=device)
        layer = 0
        for i, module in enumerate(self.features):
            x = module(x)
            if i not in _TAPS:
                continue
            f = x / (x.pow(2).sum(1, keepdim=True).sqrt() + NORM_EPS)
            # 3. channel-weighted squared difference, averaged over space, summed over layers
            total += self.heads[layer]((f[:T] - f[T:]) ** 2).mean(dim=(1, 2, 3))
            layer += 1
        return total


_CACHE: dict[tuple, LPIPS] = {}


def lpips_or_none(
    pred: torch.Tensor, target: torch.Tensor, backbone_path=None, heads_path=None
) -> torch.Tensor | None:
    """Per-frame LPIPS [T] (CPU float32), or None when the weights are missing.

    The model is built once per (backbone, heads, device) and cached. Use `LPIPS` directly to
    get the `MetricUnavailable` error with the file name instead of None.
    """
    key = (str(backbone_path), str(heads_path), str(pred.device))
    if key not in _CACHE:
        try:
            _CACHE[key] = LPIPS(backbone_path, heads_path).to(pred.device)
        except MetricUnavailable:
            return None
    return _CACHE[key](pred, target).cpu()
