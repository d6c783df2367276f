"""MirageTransformer: Wan's DiT plus a VACE-style side branch fed by the memory readout.

The model holds a diffusers `WanTransformer3DModel` (`self.base`, untouched) and a list of
side blocks (`MirageSideBlock`, a `WanVACETransformerBlock` subclass) that sit beside every
k-th main block (layers 0, k, 2k, ...; default k = 2). Its input is the memory readout
latents concatenated with the visibility mask at latent resolution, `[B,C+1,F,h,w]`, embedded
by `side_patch_embedding` (a Conv3d with the base's patch size). No VAE sits in between, and
the mask is a real input (not replaced by a constant).

`forward` runs the main blocks itself (not `base.forward`) so that

- **per-token timesteps** work: `timestep` is `[B]` (one t per sample) or `[B,F]` (one t per
  latent frame, expanded to the tokens of that frame inside, Wan2.2 TI2V style). The TI2V
  first frame and the **preceding-context latents** are simply earlier frames in F with
  timestep 0: they get temporal RoPE positions before the target frames naturally;
- each side block's hint is added after the main block it sits beside:
  `x_i = block_i(x_{i-1}) + side_scale * hint_i`. The loop runs through `layers`, one
  parameter-free `MirageLayer` (mirage.models.step_cache) per main block doing exactly that,
  so diffusers' block caches (`enable_cache`, e.g. First Block Cache) wrap block and hint
  together and a cached residual includes the hints.

Initialisation (`from_base`): each side block is built on the meta device and receives a
**copy** of the weights of the main block it sits beside (`load_state_dict(..., assign=True)`;
the only keys it may lack are `proj_in.*` / `proj_out.*`, anything else raises). `proj_out`
is **zero** (weight and bias), so a fresh branch leaves the output bit-identical to the base;
`proj_in` (first side block only, as in VACE) and `side_patch_embedding` use PyTorch's
**standard** Linear/Conv3d initialisation drawn from `seed`, so the readout reaches the side
stream from the first step and every side parameter receives gradient once `proj_out` moves.
No parameter is left on the meta device (checked).

Conditioning profiles (`PROFILES`) say what the side branch was trained to read:
`mirage` (ours) readout + visibility mask, C + 1 channels; `official` (microsoft/
LatentSpatialMemory) readout + the VAE latent of a constant "score" video, 2C; `spatia` the
VAE latents of the rendered RGB point cloud and of its coverage-mask video, 2C
(`mirage.pipeline.conditioning` builds each). The profile is part of `side_config`.

**Reference slots** (`num_ref` leading latent frames, clean, retrieved from earlier chunks)
get RoPE positions of their own, as the official code places them: temporal -R .. -1 (before
every chunk slot) and rows shifted by the patch grid's height, columns as usual. The side
input covers only the other F - R slots; the side branch runs on those tokens and its hints
are added to them only. With `num_ref=0` the computation is exactly the one without
references.

The side branch is saved and loaded on its own (`save_side_branch` / `load_side_branch`):
one safetensors file whose header holds the side-branch config (profile included) as JSON;
loading refuses a file made for another configuration and names the keys and shapes that do
not fit. Files written before profiles existed have no profile and are `mirage`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
from diffusers.models.cache_utils import CacheMixin
from diffusers.models.transformers.transformer_wan import (
    WanTransformer3DModel,
    WanTransformerBlock,
)
from diffusers.models.transformers.transformer_wan_vace import WanVACETransformerBlock
from torch.utils.checkpoint import checkpoint

from mirage.atomic import atomic_path
from mirage.models._checkpoint import fit_problems
from mirage.models.step_cache import MirageLayer, SideStream

SIDE_CONFIG_KEY = "mirage_side_branch_config"
PROFILES = ("mirage", "official", "spatia")


def side_in_channels(profile: str, latent_channels: int) -> int:
    """Side-input channels of a profile: C + 1 (readout + mask) for `mirage`, else 2C."""
    if profile not in PROFILES:
        raise ValueError(f"`profile` must be one of {PROFILES}, got {profile!r}")
    return latent_channels + 1 if profile == "mirage" else 2 * latent_channels


SIDE_INPUT_OF = {
    "mirage": "readout latents + visibility mask",
    "official": "readout latents + encoded constant score video",
    "spatia": "encoded RGB point-cloud render + encoded mask video",
}


def read_side_config(path: str | Path) -> dict:
    """The side-branch config in a side-branch file's header; a file without a profile (written
    before profiles existed) is `mirage`. Reads the header only."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"side-branch checkpoint not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if SIDE_CONFIG_KEY not in meta:
        raise ValueError(f"{path} is not a Mirage side-branch file (no {SIDE_CONFIG_KEY} header)")
    config = {"profile": "mirage", **json.loads(meta[SIDE_CONFIG_KEY])}
    if config["profile"] not in PROFILES:
        raise ValueError(f"{path} names an unknown profile {config['profile']!r} ({PROFILES})")
    return config


class MirageSideBlock(WanVACETransformerBlock):
    """A VACE block whose modulation also accepts per-token `temb` `[B,S,6,D]` (Wan2.2 TI2V).

    diffusers' VACE block only handles `[B,6,D]`. The block body is the same computation as
    `WanTransformerBlock.forward` (same submodule names), which handles both layouts, so we
    reuse that function rather than copy it.
    """

    def forward(
        self, hidden_states, encoder_hidden_states, control_hidden_states, temb, rotary_emb
    ):
        # hidden_states [B,S,D] (patch-embedded latents), control_hidden_states [B,S,D]
        if self.proj_in is not None:
            control_hidden_states = self.proj_in(control_hidden_states) + hidden_states
        control_hidden_states = WanTransformerBlock.forward(
            self, control_hidden_states, encoder_hidden_states, temb, rotary_emb
        )
        return self.proj_out(control_hidden_states), control_hidden_states  # hint, stream


class SequenceSplit(nn.Module):
    """Identity on token tensors [B,S,...]: the point where context parallelism cuts the
    sequence (`mirage.models.parallel` hooks its outputs; alone it does nothing)."""

    def forward(self, *tensors: torch.Tensor):
        return tensors if len(tensors) > 1 else tensors[0]


def side_layer_indices(num_layers: int, side_every: int) -> list[int]:
    """Main-block indices a side block sits beside: 0, k, 2k, ... < num_layers."""
    if side_every < 1:
        raise ValueError(f"`side_every` must be >= 1, got {side_every}")
    return list(range(0, num_layers, side_every))


class MirageTransformer(nn.Module, CacheMixin):
    """Base Wan DiT + memory side branch. Build with `MirageTransformer.from_base(base)`."""

    def __init__(self, base: WanTransformer3DModel, side_every: int = 2, profile: str = "mirage"):
        super().__init__()
        if not isinstance(base, WanTransformer3DModel):
            raise ValueError(f"`base` must be a WanTransformer3DModel, got {type(base).__name__}")
        cfg = base.config
        if cfg.image_dim is not None:
            raise ValueError("`base` must be a TI2V/T2V model without image embedding (image_dim)")
        self.base = base
        dim = cfg.num_attention_heads * cfg.attention_head_dim
        layers = side_layer_indices(cfg.num_layers, side_every)
        in_channels = side_in_channels(profile, int(cfg.in_channels))
        self.side_config = {
            "profile": profile,
            "side_every": int(side_every),
            "side_layers": layers,
            "in_channels": in_channels,
            "dim": int(dim),
            "ffn_dim": int(cfg.ffn_dim),
            "num_attention_heads": int(cfg.num_attention_heads),
            "num_layers": int(cfg.num_layers),
            "patch_size": [int(p) for p in cfg.patch_size],
            "cross_attn_norm": bool(cfg.cross_attn_norm),
            "qk_norm": cfg.qk_norm,
            "eps": float(cfg.eps),
        }
        with torch.device("meta"):
            self.side_patch_embedding = nn.Conv3d(
                in_channels, dim, kernel_size=tuple(cfg.patch_size),
                stride=tuple(cfg.patch_size),
            )  # fmt: skip
            self.side_blocks = nn.ModuleList(
                MirageSideBlock(
                    dim,
                    cfg.ffn_dim,
                    cfg.num_attention_heads,
                    cfg.qk_norm,
                    cfg.cross_attn_norm,
                    cfg.eps,
                    cfg.added_kv_proj_dim,
                    apply_input_projection=(j == 0),
                    apply_output_projection=True,
                )  # fmt: skip
                for j in range(len(layers))
            )
        self._side_of_layer = {i: j for j, i in enumerate(layers)}
        # main block i + its hint as one module, what block caches hook (no parameters)
        self.layers = nn.ModuleList(
            MirageLayer(self, i, self._side_of_layer.get(i)) for i in range(cfg.num_layers)
        )
        self.gradient_checkpointing = False
        # where context parallelism splits the main and the side tokens (no parameters)
        self.tokens, self.side_tokens = SequenceSplit(), SequenceSplit()
        self.context_parallel = None  # ParallelConfig once `enable_context_parallel` ran

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_base(
        cls, base: WanTransformer3DModel, side_every: int = 2, seed: int = 0,
        profile: str = "mirage",
    ) -> MirageTransformer:  # fmt: skip
        """Wrap `base` and initialise the side branch from it (copies; zero `proj_out`)."""
        if any("lora_" in k for k in base.state_dict()):
            raise ValueError("`base` already carries LoRA layers: build MirageTransformer first")
        model = cls(base, side_every, profile)
        model._init_side_branch(seed)
        return model

    @torch.no_grad()
    def _init_side_branch(self, seed: int) -> None:
        ref = self.base.patch_embedding.weight
        device, dtype = ref.device, ref.dtype
        dim = self.side_config["dim"]
        with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            torch.manual_seed(seed)
            pe = self.side_config["patch_size"]
            self.side_patch_embedding = nn.Conv3d(
                self.side_config["in_channels"], dim, kernel_size=tuple(pe), stride=tuple(pe)
            ).to(device=device, dtype=dtype)
            for j, layer in enumerate(self.side_config["side_layers"]):
                block = self.side_blocks[j]
                main = self.base.blocks[layer]
                sd = {k: v.detach().clone() for k, v in main.state_dict().items()}
                result = block.load_state_dict(sd, strict=False, assign=True)
                allowed = {"proj_out.weight", "proj_out.bias"}
                if block.proj_in is not None:
                    allowed |= {"proj_in.weight", "proj_in.bias"}
                if result.unexpected_keys or set(result.missing_keys) != allowed:
                    raise RuntimeError(
                        f"side block {j} does not match main block {layer}: missing "
                        f"{sorted(set(result.missing_keys) - allowed)}, unexpected "
                        f"{sorted(result.unexpected_keys)}"
                    )
                lin_dtype = main.attn1.to_q.weight.dtype
                if block.proj_in is not None:
                    block.proj_in = nn.Linear(dim, dim).to(device=device, dtype=lin_dtype)
                block.proj_out = nn.Linear(dim, dim, device=device, dtype=lin_dtype)
                nn.init.zeros_(block.proj_out.weight)
                nn.init.zeros_(block.proj_out.bias)
        meta = [n for n, p in self.named_parameters() if p.is_meta]
        meta += [n for n, b in self.named_buffers() if b.is_meta]
        if meta:
            raise RuntimeError(f"parameters left on the meta device: {meta[:5]}")

    # -- conveniences -----------------------------------------------------------------------
    @property
    def config(self):
        """The base model's diffusers config (patch_size, in_channels, text_dim, ...)."""
        return self.base.config

    @property
    def profile(self) -> str:
        """The conditioning profile the side branch reads (`PROFILES`)."""
        return self.side_config["profile"]

    @property
    def device(self) -> torch.device:
        return self.base.patch_embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.base.patch_embedding.weight.dtype

    def side_branch_parameters(self) -> list[nn.Parameter]:
        """Parameters of the side branch (patch embedding + side blocks)."""
        return list(self.side_patch_embedding.parameters()) + list(self.side_blocks.parameters())

    def side_branch_state_dict(self) -> dict[str, torch.Tensor]:
        return {
            k: v
            for k, v in self.state_dict().items()
            if k.startswith(("side_patch_embedding.", "side_blocks."))
        }

    def enable_gradient_checkpointing(self) -> None:
        """Recompute every main and side block in backward (torch.utils.checkpoint)."""
        self.gradient_checkpointing = True

    def disable_gradient_checkpointing(self) -> None:
        self.gradient_checkpointing = False

    def _run(self, fn, *args):
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    # -- forward ----------------------------------------------------------------------------
    def _rope(self, latents: torch.Tensor, num_ref: int):
        """(cos, sin) [1,S,1,d]: the base's RoPE, with reference slots at their own positions.

        The F - R chunk slots take temporal positions 0 .. F-R-1 as without references; a
        reference slot r takes temporal position r - R and rows shifted by the patch-grid
        height ph (the official placement). Negative positions come from the base's own
        table through cos(-p) = cos(p), sin(-p) = -sin(p), so the frequencies are the base's.
        """
        rope = self.base.rope
        if num_ref == 0:
            return rope(latents)
        chunk_cos, chunk_sin = rope(latents[:, :, num_ref:])  # [1,(F-R)*ph*pw,1,d]
        _, _, _, h, w = latents.shape
        p_t, p_h, p_w = self.base.config.patch_size
        ph, pw = h // p_h, w // p_w
        if 2 * ph > rope.max_seq_len or num_ref // p_t > rope.max_seq_len:
            raise ValueError(f"reference slots need RoPE positions past {rope.max_seq_len}")
        sizes = [rope.t_dim, rope.h_dim, rope.w_dim]
        cos_t, cos_h, cos_w = rope.freqs_cos.split(sizes, dim=1)
        sin_t, sin_h, sin_w = rope.freqs_sin.split(sizes, dim=1)
        nr = num_ref // p_t
        back = torch.arange(nr, 0, -1, device=cos_t.device)  # |r - R| for r = 0 .. R-1
        rows = torch.arange(ph, 2 * ph, device=cos_t.device)

        def grid(t, hh, ww):  # [nr,dt], [ph,dh], [pw,dw] -> [1,nr*ph*pw,1,d]
            shape = (nr, ph, pw)
            parts = [
                t.view(nr, 1, 1, -1).expand(*shape, -1),
                hh.view(1, ph, 1, -1).expand(*shape, -1),
                ww.view(1, 1, pw, -1).expand(*shape, -1),
            ]
            return torch.cat(parts, dim=-1).reshape(1, nr * ph * pw, 1, -1)

        ref_cos = grid(cos_t[back], cos_h[rows], cos_w[:pw])
        ref_sin = grid(-sin_t[back], sin_h[rows], sin_w[:pw])
        return torch.cat([ref_cos, chunk_cos], dim=1), torch.cat([ref_sin, chunk_sin], dim=1)

    def _check_inputs(self, latents, timestep, encoder_hidden_states, readout, num_ref) -> None:
        cfg = self.base.config
        if latents.ndim != 5 or latents.shape[1] != cfg.in_channels:
            raise ValueError(
                f"`latents` must be [B,{cfg.in_channels},F,h,w], got {tuple(latents.shape)}"
            )
        B, C, F, h, w = latents.shape
        p_t, p_h, p_w = cfg.patch_size
        if F % p_t or h % p_h or w % p_w:
            raise ValueError(
                f"`latents` F, h, w must be multiples of the patch size {tuple(cfg.patch_size)}, "
                f"got {(F, h, w)}"
            )
        if timestep.shape not in ((B,), (B, F)):
            raise ValueError(
                f"`timestep` must be [B]=[{B}] or per latent frame [B,F]=[{B},{F}], "
                f"got {tuple(timestep.shape)}"
            )
        if timestep.ndim == 2 and p_t != 1:
            raise ValueError(f"per-frame `timestep` needs a temporal patch of 1, got {p_t}")
        if (
            encoder_hidden_states.ndim != 3
            or encoder_hidden_states.shape[0] != B
            or encoder_hidden_states.shape[2] != cfg.text_dim
        ):
            raise ValueError(
                f"`encoder_hidden_states` must be [B,L,{cfg.text_dim}] with B={B}, "
                f"got {tuple(encoder_hidden_states.shape)}"
            )
        if not 0 <= num_ref < F:
            raise ValueError(f"`num_ref` must be in 0..F-1 = 0..{F - 1}, got {num_ref}")
        if readout is not None:
            self._check_side_input(readout, (B, C, F - num_ref, h, w))

    def _check_parallel_sequence(self, S: int, R: int) -> None:
        n = self.context_parallel._world_size
        if R:
            raise ValueError("reference slots (`num_ref` > 0) are not supported under context "
                             "parallelism")  # fmt: skip
        if S % n:
            raise ValueError(
                f"context parallelism over {n} processes needs a token count divisible by {n}; "
                f"this chunk has {S} (latent frames x patches per frame): choose another "
                "process count, frame size or context length"
            )

    def _check_side_input(self, readout, bcfhw) -> None:
        B, C, F, h, w = bcfhw
        cin, profile = self.side_config["in_channels"], self.profile
        want = (B, cin, F, h, w)
        if tuple(readout.shape) == want:
            return
        shape = tuple(readout.shape)
        if readout.ndim == 5 and shape[1] != cin:
            named = [p for p in PROFILES if side_in_channels(p, C) == shape[1]]
            hint = f" (the input of profile {' or '.join(map(repr, named))})" if named else ""
            raise ValueError(
                f"this side branch has profile {profile!r} and reads {cin} channels "
                f"({SIDE_INPUT_OF[profile]}); `readout` has {shape[1]}{hint}: build the side "
                f"input with mirage.pipeline.conditioning for profile {profile!r}"
            )
        raise ValueError(
            f"`readout` must be [B,{cin},F-num_ref,h,w]={want} ({SIDE_INPUT_OF[profile]}), "
            f"got {shape}"
        )

    def forward(
        self,
        latents: torch.Tensor,  # [B,C,F,h,w] noisy latents (context frames clean)
        timestep: torch.Tensor,  # [B] or [B,F] per latent frame
        encoder_hidden_states: torch.Tensor,  # [B,L,text_dim]
        readout: torch.Tensor | None = None,  # [B,Cin,F-num_ref,h,w]: the profile's side input
        side_scale: float = 1.0,
        num_ref: int = 0,  # leading reference slots (clean; own RoPE positions, no side input)
    ) -> torch.Tensor:  # -> [B,C,F,h,w] flow-matching velocity
        """Predict the flow-matching velocity; `readout=None` skips the side branch."""
        self._check_inputs(latents, timestep, encoder_hidden_states, readout, num_ref)
        base = self.base
        latents = latents.to(self.dtype)
        encoder_hidden_states = encoder_hidden_states.to(self.dtype)
        B, C, F, h, w = latents.shape
        p_t, p_h, p_w = base.config.patch_size
        pf, ph, pw = F // p_t, h // p_h, w // p_w

        # 1. rotary embedding and patchify
        rotary_emb = self._rope(latents, num_ref)
        x = base.patch_embedding(latents).flatten(2).transpose(1, 2).contiguous()  # [B,S,D]
        S, R = x.shape[1], num_ref * ph * pw  # R: reference tokens, first in the sequence

        # 2. time and text embedding; per-frame timesteps expanded to every token of the frame
        if timestep.ndim == 2:
            t_tokens = timestep.repeat_interleave(ph * pw, dim=1)  # [B,S], frame-major order
            temb, tproj, ctx, _ = base.condition_embedder(
                t_tokens.flatten(), encoder_hidden_states, None, timestep_seq_len=S
            )
            tproj = tproj.unflatten(2, (6, -1))  # [B,S,6,D]
        else:
            temb, tproj, ctx, _ = base.condition_embedder(timestep, encoder_hidden_states, None)
            tproj = tproj.unflatten(1, (6, -1))  # [B,6,D]

        # (under context parallelism each process keeps its slice of the sequence from here
        # on; attention exchanges what it needs and proj_out's output is gathered again)
        if self.context_parallel is not None:
            self._check_parallel_sequence(S, R)
        x, tproj, temb, *rope = self.tokens(x, tproj, temb, *rotary_emb)
        rotary_emb = tuple(rope)

        # 3. side-branch input (the profile's), over the tokens after the references
        side = None
        if readout is not None:
            r = readout.to(self.side_patch_embedding.weight.dtype)
            c = self.side_patch_embedding(r).flatten(2).transpose(1, 2).contiguous()  # [B,S-R,D]
            side_t, side_rope = tproj, rotary_emb
            if R:
                side_t = tproj[:, R:] if tproj.ndim == 4 else tproj
                side_rope = tuple(f[:, R:] for f in rotary_emb)
            side = SideStream(
                c=self.side_tokens(c), x0=x[:, R:], ctx=ctx, temb=side_t, rope=side_rope,
                num_ref_tokens=R, scale=side_scale, run=self._run,
            )  # fmt: skip

        # 4. main blocks, each side block's hint added after the block it sits beside
        for layer in self.layers:
            x = layer(x, ctx, tproj, rotary_emb, side)

        # 5. output norm, projection and unpatchify (as the base model)
        if temb.ndim == 3:  # [B,S,D]
            shift, scale = (base.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).chunk(2, dim=2)
            shift, scale = shift.squeeze(2), scale.squeeze(2)
        else:  # [B,D]
            shift, scale = (base.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
        x = (base.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
        x = base.proj_out(x)  # [B,S,C*p_t*p_h*p_w]
        x = x.reshape(B, pf, ph, pw, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)  # [B,C,F,h,w]

    # -- side-branch checkpoints ------------------------------------------------------------
    def save_side_branch(self, path: str | Path) -> None:
        """Write the side branch to one safetensors file (config as JSON in its header)."""
        from safetensors.torch import save_file

        sd = {k: v.detach().contiguous().cpu() for k, v in self.side_branch_state_dict().items()}
        meta = {"format": "pt", SIDE_CONFIG_KEY: json.dumps(self.side_config, sort_keys=True)}
        with atomic_path(path, ".safetensors") as tmp:
            save_file(sd, tmp, metadata=meta)

    @torch.no_grad()
    def load_side_branch(self, path: str | Path) -> None:
        """Load a side branch saved by `save_side_branch`; refuse another configuration."""
        from safetensors import safe_open

        path = Path(path)
        theirs = read_side_config(path)
        with safe_open(str(path), framework="pt") as f:
            diff = {
                k: (theirs.get(k), v) for k, v in self.side_config.items() if theirs.get(k) != v
            }
            if diff:
                lines = [f"{k}: file has {a!r}, model has {b!r}" for k, (a, b) in diff.items()]
                raise ValueError(
                    f"side-branch checkpoint {path} was made for another configuration:\n  "
                    + "\n  ".join(lines)
                )
            own = self.side_branch_state_dict()
            problems = fit_problems(f, own)
            if problems:
                raise ValueError(
                    f"side-branch checkpoint {path} does not fit:\n  " + "\n  ".join(problems)
                )
            for k, t in own.items():
                t.copy_(f.get_tensor(k))
