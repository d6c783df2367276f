"""Compare an open safetensors file with the tensors a model expects to load from it."""

from __future__ import annotations

import torch


def fit_problems(f, own: dict[str, torch.Tensor]) -> list[str]:
    """What stops `f` (a `safetensors.safe_open` handle) from filling `own` exactly, one line each.

    Keys missing in the file, keys the model does not have, and shape mismatches; [] when it fits.
    Shapes are read from the header, so nothing is loaded.
    """
    keys = set(f.keys())
    problems = [f"missing in file: {k}" for k in sorted(set(own) - keys)]
    problems += [f"unexpected in file: {k}" for k in sorted(keys - set(own))]
    for k in sorted(keys & set(own)):
        shape = tuple(f.get_slice(k).get_shape())
        if shape != tuple(own[k].shape):
            problems.append(f"shape of {k}: file {shape}, model {tuple(own[k].shape)}")
    return problems
