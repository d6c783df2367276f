"""Text conditioning: UMT5 prompt embeddings, precomputed embedding files, null embeddings.

- `encode_prompts(text_encoder, tokenizer, prompts, max_length=512) -> [B,L,D]` follows the
  Wan pipeline: pad/truncate to `max_length`, run the encoder with the attention mask, then set
  every padding position to exactly zero.
- `save_prompt_embeddings(path, prompts, embeddings)` / `load_prompt_embeddings(path)`: a
  safetensors file with `embeddings [N,L,D]` and the prompt list as JSON in the header, so a
  machine without the 11 GB UMT5 can still run prompted generation.
- `null_embedding(dim, length)`: zeros `[B,L,D]`, the fixed "no text" condition for models
  without a text encoder (the tiny default model); `LearnedNullEmbedding` is the trainable
  alternative (zero-initialised, so it starts equal to the fixed one).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import torch
import torch.nn as nn

from mirage.atomic import atomic_path

PROMPTS_KEY = "mirage_prompts"


def _clean(prompt: str) -> str:
    """Unescape HTML twice and collapse whitespace (the Wan pipeline's cleaning, minus ftfy)."""
    text = html.unescape(html.unescape(prompt))
    return re.sub(r"\s+", " ", text).strip()


@torch.no_grad()
def encode_prompts(
    text_encoder, tokenizer, prompts: str | list[str], max_length: int = 512
) -> torch.Tensor:  # -> [B,max_length,D] in the encoder's dtype, padding rows zero
    """Encode prompts with UMT5 as the Wan pipeline does (padding positions set to zero)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"`prompts` must be a non-empty list of strings, got {prompts!r}")
    if max_length < 1:
        raise ValueError(f"`max_length` must be >= 1, got {max_length}")
    tok = tokenizer(
        [_clean(p) for p in prompts],
        padding="max_length",
        max_length=max_length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    device = next(text_encoder.parameters()).device
    ids, mask = tok.input_ids.to(device), tok.attention_mask.to(device)
    hidden = text_encoder(ids, mask).last_hidden_state  # [B,L,D]
    return hidden * mask.unsqueeze(-1).to(hidden.dtype)


def null_embedding(
    dim: int,
    length: int,
    batch_size: int = 1,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> torch.Tensor:  # -> [B,length,dim] zeros
    """The fixed null text condition: zeros of shape [batch_size, length, dim]."""
    for name, v in (("dim", dim), ("length", length), ("batch_size", batch_size)):
        if v < 1:
            raise ValueError(f"`{name}` must be >= 1, got {v}")
    return torch.zeros(batch_size, length, dim, dtype=dtype, device=device)


class LearnedNullEmbedding(nn.Module):
    """A trainable null text condition [length, dim], zero at init; `forward(B) -> [B,L,D]`."""

    def __init__(self, dim: int, length: int):
        super().__init__()
        self.embedding = nn.Parameter(null_embedding(dim, length)[0])

    def forward(self, batch_size: int = 1) -> torch.Tensor:
        return self.embedding.unsqueeze(0).expand(batch_size, -1, -1)


def save_prompt_embeddings(path: str | Path, prompts: list[str], embeddings: torch.Tensor) -> None:
    """Write precomputed embeddings [N,L,D] for N prompts to one safetensors file (atomic)."""
    from safetensors.torch import save_file

    if embeddings.ndim != 3 or embeddings.shape[0] != len(prompts):
        raise ValueError(
            f"`embeddings` must be [N,L,D] with N=len(prompts)={len(prompts)}, "
            f"got {tuple(embeddings.shape)}"
        )
    meta = {"format": "pt", PROMPTS_KEY: json.dumps(list(prompts))}
    with atomic_path(path, ".safetensors") as tmp:
        save_file({"embeddings": embeddings.detach().contiguous().cpu()}, tmp, metadata=meta)


def load_prompt_embeddings(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a file from `save_prompt_embeddings`: prompt -> embedding [L,D]."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt-embedding file not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if PROMPTS_KEY not in meta or "embeddings" not in f.keys():
            raise ValueError(f"{path} is not a Mirage prompt-embedding file")
        prompts = json.loads(meta[PROMPTS_KEY])
        emb = f.get_tensor("embeddings")
    if emb.ndim != 3 or emb.shape[0] != len(prompts):
        raise ValueError(f"{path}: {len(prompts)} prompts but embeddings {tuple(emb.shape)}")
    return {p: emb[i] for i, p in enumerate(prompts)}
