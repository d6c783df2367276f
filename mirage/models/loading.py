"""Load Wan2.2 components from a local diffusers folder, or build tiny ones in code.

Public names:

- `WanComponents(vae, transformer, text_encoder, tokenizer, scheduler)`: what a pipeline needs.
- `load_wan_components(model_dir, ...)`: a local `Wan2.2-TI2V-5B-Diffusers` folder, loaded with
  `from_pretrained(local_dir)` only (never a download). A missing or incomplete folder raises
  `FileNotFoundError` listing *every* missing file or subfolder before anything is loaded.
- `tiny_components(seed=0)`: the same classes at toy size with random weights (no text
  encoder) for tests and for the embedded default model `mirage-tiny`.
- `wan22_ti2v_transformer_config()`, `wan22_vae_config()`: the full-size Wan2.2-TI2V-5B
  configurations (as in the diffusers folder's `config.json` files).
- `tiny_transformer_config(**overrides)`, `tiny_vae_config(**overrides)`: toy configurations.
- `make_scheduler(shift=5.0)`: the flow-matching UniPC scheduler Wan2.2 uses.
- `weight_hashes(folder)`: SHA-256 of every .safetensors file of a model folder (what a model
  card quotes and a benchmark records, so a figure names the weights it measured).

diffusers and transformers are imported inside the functions so `import mirage` stays fast.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# The embedded default world model, shipped inside the package (no download).
TINY_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "mirage-tiny"

# Wan2.2-TI2V-5B VAE latent statistics (vae/config.json of Wan-AI/Wan2.2-TI2V-5B-Diffusers).
_WAN22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.157, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.123,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.052, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]  # fmt: skip
_WAN22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.499, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.06, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]  # fmt: skip


@dataclass
class WanComponents:
    """The parts of a Wan2.2 model a Mirage pipeline uses.

    `text_encoder` and `tokenizer` are None for models without a text encoder (the tiny
    default model, or `load_text_encoder=False`); use `mirage.models.text.null_embedding` or
    precomputed embeddings then.
    """

    vae: Any  # diffusers AutoencoderKLWan
    transformer: Any  # diffusers WanTransformer3DModel
    text_encoder: Any | None  # transformers UMT5EncoderModel
    tokenizer: Any | None  # transformers tokenizer for UMT5
    scheduler: Any  # diffusers UniPCMultistepScheduler (flow prediction)


# ---------------------------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------------------------


def wan22_ti2v_transformer_config() -> dict:
    """The `WanTransformer3DModel` config of Wan2.2-TI2V-5B (dim 3072 = 24 x 128, 30 layers)."""
    return {
        "patch_size": [1, 2, 2],
        "num_attention_heads": 24,
        "attention_head_dim": 128,
        "in_channels": 48,
        "out_channels": 48,
        "text_dim": 4096,
        "freq_dim": 256,
        "ffn_dim": 14336,
        "num_layers": 30,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "image_dim": None,
        "added_kv_proj_dim": None,
        "rope_max_seq_len": 1024,
        "pos_embed_seq_len": None,
    }


def wan22_vae_config() -> dict:
    """The Wan2.2 `AutoencoderKLWan` config (z_dim 48, 16x spatial incl. 2x2 patchify, 4x time)."""
    return {
        "base_dim": 160,
        "decoder_base_dim": 256,
        "z_dim": 48,
        "dim_mult": [1, 2, 4, 4],
        "num_res_blocks": 2,
        "attn_scales": [],
        "temperal_downsample": [False, True, True],
        "dropout": 0.0,
        "latents_mean": list(_WAN22_LATENTS_MEAN),
        "latents_std": list(_WAN22_LATENTS_STD),
        "is_residual": True,
        "in_channels": 12,
        "out_channels": 12,
        "patch_size": 2,
        "scale_factor_temporal": 4,
        "scale_factor_spatial": 16,
    }


def tiny_vae_config(**overrides) -> dict:
    """A toy Wan2.1-style `AutoencoderKLWan`: z_dim 16, 8x spatial, 4x temporal, base_dim 16.

    Latent statistics are the identity (mean 0, std 1): the weights are random, so Wan2.1's
    statistics would mean nothing; a trained tiny VAE stores its own.
    """
    z_dim = overrides.get("z_dim", 16)
    cfg = {
        "base_dim": 16,
        "decoder_base_dim": None,
        "z_dim": z_dim,
        "dim_mult": [1, 2, 4, 4],
        "num_res_blocks": 1,
        "attn_scales": [],
        "temperal_downsample": [False, True, True],
        "dropout": 0.0,
        "latents_mean": [0.0] * z_dim,
        "latents_std": [1.0] * z_dim,
        "is_residual": False,
        "in_channels": 3,
        "out_channels": 3,
        "patch_size": None,
        "scale_factor_temporal": 4,
        "scale_factor_spatial": 8,
    }
    cfg.update(overrides)
    return cfg


def tiny_transformer_config(**overrides) -> dict:
    """A toy `WanTransformer3DModel`: dim 128 (2 x 64), 4 layers, 16 channels, patch (1,2,2)."""
    cfg = {
        "patch_size": [1, 2, 2],
        "num_attention_heads": 2,
        "attention_head_dim": 64,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": 64,
        "freq_dim": 64,
        "ffn_dim": 256,
        "num_layers": 4,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "image_dim": None,
        "added_kv_proj_dim": None,
        "rope_max_seq_len": 256,
        "pos_embed_seq_len": None,
    }
    cfg.update(overrides)
    return cfg


def weight_hashes(folder: str | Path) -> dict[str, str]:
    """SHA-256 of every .safetensors file under `folder`, by relative path."""
    folder = Path(folder)
    return {
        f.relative_to(folder).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*.safetensors"))
    }


def make_scheduler(shift: float = 5.0):
    """Flow-matching UniPC (`UniPCMultistepScheduler`, flow prediction, flow sigmas, `shift`)."""
    if not shift > 0:
        raise ValueError(f"`shift` must be > 0, got {shift}")
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        num_train_timesteps=1000,
        solver_order=2,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=float(shift),
        solver_type="bh2",
        lower_order_final=True,
        final_sigmas_type="zero",
    )


def tiny_components(seed: int = 0, **transformer_overrides) -> WanComponents:
    """Tiny VAE + transformer with random weights (seeded), flow UniPC; no text encoder.

    The transformer's channels follow the VAE's z_dim. Same `seed`, same weights.
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    vae_cfg = tiny_vae_config()
    tr_cfg = tiny_transformer_config(
        in_channels=vae_cfg["z_dim"], out_channels=vae_cfg["z_dim"], **transformer_overrides
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKLWan(**vae_cfg)
        transformer = WanTransformer3DModel(**tr_cfg)
    vae.eval()
    transformer.eval()
    return WanComponents(
        vae=vae, transformer=transformer, text_encoder=None, tokenizer=None,
        scheduler=make_scheduler(5.0),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Loading a local diffusers folder
# ---------------------------------------------------------------------------------------------


def _missing_weights(folder: Path, stem: str) -> list[str]:
    """Missing weight files of one component: a single safetensors file or an indexed shard set."""
    single = folder / f"{stem}.safetensors"
    index = folder / f"{stem}.safetensors.index.json"
    if single.is_file():
        return []
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as err:
            return [f"{index} (unreadable shard index: {err})"]
        shards = sorted(set(weight_map.values()))
        return [str(folder / s) for s in shards if not (folder / s).is_file()]
    return [f"{single} (or {index.name} with its shards)"]


def check_model_dir(model_dir: str | Path, load_text_encoder: bool = True) -> None:
    """Raise FileNotFoundError listing every missing file/subfolder of a Wan diffusers folder."""
    root = Path(model_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"`model_dir` must be a local Wan2.2 diffusers folder, got {str(root)!r} (not a "
            "directory). Expected subfolders: transformer/, vae/, scheduler/"
            + (", text_encoder/, tokenizer/" if load_text_encoder else "")
        )
    missing: list[str] = []
    parts = [
        ("transformer", "diffusion_pytorch_model", "config.json"),
        ("vae", "diffusion_pytorch_model", "config.json"),
        ("scheduler", None, "scheduler_config.json"),
    ]
    if load_text_encoder:
        parts.append(("text_encoder", "model", "config.json"))
    for sub, stem, cfg_name in parts:
        folder = root / sub
        if not folder.is_dir():
            missing.append(f"{folder}/ (subfolder)")
            continue
        if not (folder / cfg_name).is_file():
            missing.append(str(folder / cfg_name))
        if stem is not None:
            missing.extend(_missing_weights(folder, stem))
    if load_text_encoder:
        tok = root / "tokenizer"
        if not tok.is_dir():
            missing.append(f"{tok}/ (subfolder)")
        else:
            if not (tok / "tokenizer_config.json").is_file():
                missing.append(str(tok / "tokenizer_config.json"))
            if not ((tok / "tokenizer.json").is_file() or (tok / "spiece.model").is_file()):
                missing.append(f"{tok / 'tokenizer.json'} (or spiece.model)")
    if missing:
        raise FileNotFoundError(
            f"`model_dir` {str(root)!r} is not a complete Wan2.2 diffusers folder; missing:\n  "
            + "\n  ".join(missing)
        )


def load_wan_components(
    model_dir: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    load_text_encoder: bool = True,
    enable_vae_tiling: bool = False,
    cpu_offload: bool = False,
    vae_dtype: torch.dtype = torch.float32,
) -> WanComponents:
    """Load a local Wan2.2 diffusers folder (transformer, VAE, scheduler, UMT5 + tokenizer).

    `dtype` applies to the transformer and text encoder; the VAE runs in `vae_dtype` (fp32 by
    default, as Wan recommends). `cpu_offload=True` leaves the models on the CPU (the pipeline
    moves each to `device` for the stage that runs it: `mirage.pipeline.offload`); it needs an
    accelerator `device`. `enable_vae_tiling` turns
    on diffusers' spatial VAE tiling for large frames. Raises FileNotFoundError listing every
    missing file before loading anything.
    """
    device = torch.device(device)
    if cpu_offload and device.type == "cpu":
        raise ValueError("`cpu_offload=True` needs an accelerator `device`, got 'cpu'")
    check_model_dir(model_dir, load_text_encoder)
    from diffusers import UniPCMultistepScheduler, WanTransformer3DModel

    from mirage.models.vae import load_autoencoder

    root = Path(model_dir)
    load_device = torch.device("cpu") if cpu_offload else device
    transformer = WanTransformer3DModel.from_pretrained(
        root, subfolder="transformer", torch_dtype=dtype, local_files_only=True
    ).to(load_device)
    vae = load_autoencoder(root / "vae", vae_dtype).to(load_device)
    if enable_vae_tiling:
        vae.enable_tiling()
    scheduler = UniPCMultistepScheduler.from_pretrained(
        root, subfolder="scheduler", local_files_only=True
    )
    text_encoder = tokenizer = None
    if load_text_encoder:
        from transformers import AutoTokenizer, UMT5EncoderModel

        text_encoder = UMT5EncoderModel.from_pretrained(
            root / "text_encoder", dtype=dtype, local_files_only=True
        ).to(load_device)
        tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    for m in (transformer, vae, text_encoder):
        if m is not None:
            m.eval()
            m.requires_grad_(False)
    return WanComponents(
        vae=vae, transformer=transformer, text_encoder=text_encoder, tokenizer=tokenizer,
        scheduler=scheduler,
    )  # fmt: skip
