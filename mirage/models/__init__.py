"""Wan2.2 backbone from diffusers, the memory side branch and LoRA (see docs/models.md).

Submodules: `loading` (components, configs, scheduler), `vae` (VideoVAE), `transformer`
(MirageTransformer), `lora` (peft LoRA), `text` (prompt embeddings). Names are re-exported
lazily so `import mirage.models` does not import diffusers until one is used.
"""

from importlib import import_module

_EXPORTS = {
    "WanComponents": "loading",
    "load_wan_components": "loading",
    "tiny_components": "loading",
    "tiny_transformer_config": "loading",
    "tiny_vae_config": "loading",
    "wan22_ti2v_transformer_config": "loading",
    "wan22_vae_config": "loading",
    "make_scheduler": "loading",
    "VideoVAE": "vae",
    "MirageTransformer": "transformer",
    "add_lora": "lora",
    "set_lora_enabled": "lora",
    "save_lora": "lora",
    "load_lora": "lora",
    "trainable_parameters": "lora",
    "encode_prompts": "text",
    "null_embedding": "text",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"mirage.models.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'mirage.models' has no attribute {name!r}")
