"""3D convolutions on the CPU as sums of 2D ones: the same result, faster (1.3-1.8x here).

PyTorch's CPU build runs `conv3d` through its reference kernel (`slow_conv3d`, im2col + GEMM)
while `conv2d` gets oneDNN. A 3D convolution with a time kernel of k taps is k 2D convolutions
of time-shifted frames, summed; `split_conv3d` makes every `nn.Conv3d` of a model compute it
that way when its input is on the CPU (CUDA keeps cuDNN's conv3d). `VideoVAE` and the VAE
trainer apply it to the Wan VAE, whose causal convolutions pad in time themselves and then call
`nn.Conv3d.forward`. (The transformer's only 3D convolutions are its two patch embeddings, too
small to matter.) Results agree with `F.conv3d` to float rounding (the sums run in another
order).
`benchmarks/cpu_conv3d.py` measures the gain.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def conv3d_as_conv2d(x, weight, bias=None, stride=(1, 1, 1), padding=(0, 0, 0),
                     dilation=(1, 1, 1), groups: int = 1) -> torch.Tensor:  # fmt: skip
    """`F.conv3d` (tuple arguments) as one batched `F.conv2d` per time tap.

    # x [B,C,T,H,W], weight [O,C/groups,kt,kh,kw] -> [B,O,T',H',W']
    """
    st, pt, dt = stride[0], padding[0], dilation[0]
    if pt:
        x = F.pad(x, (0, 0, 0, 0, pt, pt))
    B, C, T, H, W = x.shape
    kt = weight.shape[2]
    t_out = (T - dt * (kt - 1) - 1) // st + 1
    if t_out <= 0:
        raise ValueError(f"input of {T} frames is shorter than the time kernel ({kt} taps)")
    # tap k: the input frames t * st + k * dt that output frames t read, [B,C,T',H,W] each
    taps = [x[:, :, k * dt : k * dt + st * (t_out - 1) + 1 : st] for k in range(kt)]
    # a tap that reads only zeros (the causal padding of a first frame: 2 of 3 taps for an
    # image) adds nothing
    live = [k for k in range(kt) if taps[k].any()] or [0]
    out = None
    for k in live:
        frames = taps[k].transpose(1, 2).reshape(B * t_out, C, H, W)
        y = F.conv2d(frames, weight[:, :, k], None, stride[1:], padding[1:], dilation[1:], groups)
        out = y if out is None else out.add_(y)
    if bias is not None:
        out += bias[:, None, None]
    return out.view(B, t_out, *out.shape[1:]).transpose(1, 2).contiguous()


def _conv_forward(self, input, weight, bias):
    if input.device.type != "cpu":
        return type(self)._conv_forward(self, input, weight, bias)
    return conv3d_as_conv2d(input, weight, bias, self.stride, self.padding, self.dilation,
                            self.groups)  # fmt: skip


def split_conv3d(model: torch.nn.Module, enabled: bool = True) -> int:
    """Make every zero-padded `nn.Conv3d` in `model` use `conv3d_as_conv2d` on CPU inputs
    (`enabled` False: back to `F.conv3d`).

    Weights, names and state dicts are untouched (only the instance's `_conv_forward` is
    replaced); calling it twice changes nothing. Returns the number of layers changed.
    """
    changed = 0
    for m in model.modules():
        if not isinstance(m, torch.nn.Conv3d) or m.padding_mode != "zeros":
            continue
        if isinstance(m.padding, str):  # "same" / "valid": left to F.conv3d
            continue
        split = getattr(m._conv_forward, "__func__", None) is _conv_forward
        if enabled and not split:
            m._conv_forward = types.MethodType(_conv_forward, m)
        elif split and not enabled:
            del m._conv_forward  # the class's method again
        changed += split != enabled
    return changed
