"""Step caching of the main blocks (diffusers' First Block Cache) with the side-branch hints inside.

diffusers' block caches find a model's blocks as a child `ModuleList` named `blocks`,
`layers`, ... and hook each block's forward. First Block Cache (`FirstBlockCacheConfig`,
applied by `CacheMixin.enable_cache`): the first block always runs; when its residual
(output - input) changed by less than `threshold` (mean |difference| / mean |last residual|)
since the last step that ran everything, each other block returns its input unchanged and
the first block's output gets the cached residual of all the others added.

MirageTransformer adds a side block's hint *after* the main block it sits beside, outside
that block's forward. Hooking `base.blocks` directly would therefore (a) add this step's
hints on top of a cached residual that already holds the last step's hints (counted twice)
and (b) still run every side block on a skipped step. So MirageTransformer runs its block
loop through `layers`: one parameter-free `MirageLayer` per main block that runs the side
block beside it (if any), the main block, and adds the hint. The cache hooks wrap these:
a cached residual includes the hints, and a skipped step runs no side block either.

A `MirageLayer` owns no weights (they stay `base.blocks.i` and `side_blocks.j`, so state
dicts, LoRA names and FSDP units are unchanged) and looks its blocks up at call time, so a
wrapper put around a block later (FSDP1 replaces `base.blocks[i]`) is the one that runs.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

CACHE_MODES = ("off", "fbc")  # no caching | diffusers' First Block Cache on `layers`


@dataclass
class SideStream:
    """The side branch's running state through one forward pass."""

    c: torch.Tensor  # [B,S-R,D] the side stream between side blocks
    x0: torch.Tensor  # [B,S-R,D] patch-embedded latents of the non-reference tokens
    ctx: torch.Tensor  # [B,L,D] text
    temb: torch.Tensor  # [B,6,D] or [B,S-R,6,D] modulation of those tokens
    rope: tuple  # (cos, sin) [1,S-R,1,d]
    num_ref_tokens: int  # R: leading reference tokens, which get no hint
    scale: float  # side_scale
    run: Callable  # MirageTransformer._run (gradient checkpointing or not)

    def hint(self, block: nn.Module) -> torch.Tensor:  # -> [B,S-R,D]
        hint, self.c = self.run(block, self.x0, self.ctx, self.c, self.temb, self.rope)
        return hint

    def add(self, x: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:  # [B,S,D] -> [B,S,D]
        R = self.num_ref_tokens
        if R:
            return torch.cat([x[:, :R], x[:, R:] + hint * self.scale], dim=1)
        return x + hint * self.scale


class MirageLayer(nn.Module):
    """Main block `index` of `owner.base` plus the hint of the side block beside it, if any."""

    def __init__(self, owner: nn.Module, index: int, side_index: int | None):
        super().__init__()
        self.index, self.side_index = index, side_index
        self._owner = [owner]  # a list, so not a submodule: no cycle, no second weight names

    def forward(self, hidden_states, encoder_hidden_states, temb, rotary_emb, side=None):
        # hidden_states [B,S,D] -> [B,S,D]; `side` a SideStream or None (no side branch)
        owner = self._owner[0]
        hint = None
        if side is not None and self.side_index is not None:
            hint = side.hint(owner.side_blocks[self.side_index])
        block = owner.base.blocks[self.index]
        x = owner._run(block, hidden_states, encoder_hidden_states, temb, rotary_emb)
        return x if hint is None else side.add(x, hint)


_registered = False


def _register_layer() -> None:
    """Tell diffusers' block hooks where MirageLayer's hidden states are (argument and output)."""
    global _registered
    if _registered:
        return
    from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry

    TransformerBlockRegistry.register(
        MirageLayer,
        TransformerBlockMetadata(return_hidden_states_index=0,
                                 return_encoder_hidden_states_index=None),
    )  # fmt: skip
    _registered = True


def cache_config(mode: str, threshold: float):
    """The diffusers cache config of `mode` (None for "off")."""
    if mode not in CACHE_MODES:
        raise ValueError(f"`cache` must be one of {CACHE_MODES}, got {mode!r}")
    if not threshold >= 0:
        raise ValueError(f"`cache_threshold` must be >= 0, got {threshold}")
    if mode == "off":
        return None
    from diffusers.hooks import FirstBlockCacheConfig

    return FirstBlockCacheConfig(threshold=float(threshold))


@contextmanager
def step_cache(model, mode: str = "off", threshold: float = 0.05):
    """Block caching on `model.layers` for one denoising loop (fresh state), off after it.

    Inside, wrap each denoiser call in `model.cache_context(name)` ("cond", "uncond"): each
    name keeps its own cached residuals.
    """
    config = cache_config(mode, threshold)
    if config is None:
        yield
        return
    if getattr(model, "context_parallel", None) is not None:
        # each process would judge its own slice of the tokens and skip on its own
        raise ValueError("`cache` must be 'off' under context parallelism (--ulysses/--ring)")
    if model.is_cache_enabled:
        raise RuntimeError("a step cache is already on for this transformer")
    _register_layer()
    model.enable_cache(config)
    try:
        yield
    finally:
        model.disable_cache()
