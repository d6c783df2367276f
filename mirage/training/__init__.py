"""Two-stage flow-matching training on accelerate: shards, samples, loop, checkpoints.

Submodules: `config` (TrainConfig, lr_at, presets), `preprocess` (clips -> shards),
`samples` (shard chunks -> model inputs, built like generation), `flow` (the loss), `train`
(the loop), `checkpoint` (save/resume/export). `autoencoder` (the tiny VAE's training) is not
imported here. Names are re-exported lazily so `import mirage.training` stays light.
"""

from importlib import import_module

_EXPORTS = {
    "TrainConfig": "config",
    "lr_at": "config",
    "tiny_stages": "config",
    "PreprocessConfig": "preprocess",
    "preprocess": "preprocess",
    "tiny_preprocess": "preprocess",
    "ShardDataset": "samples",
    "chunk_sample": "samples",
    "flow_matching_loss": "flow",
    "train": "train",
    "build_model": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"mirage.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'mirage.training' has no attribute {name!r}")
