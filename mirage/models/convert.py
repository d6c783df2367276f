"""Convert DiffSynth-named checkpoints (official Mirage trainer, Spatia) to Mirage's own files.

`convert_checkpoint(src, out, kind="auto", lora_alpha=None)` is what `mirage convert` calls.
It reads one checkpoint (safetensors, or a torch pickle read with `weights_only=True`) and
writes one safetensors file:

- **side branch** (`kind` "official" or "spatia"): keys `vace_patch_embedding.*` and
  `vace_blocks.{j}.*` become `side_patch_embedding.*` / `side_blocks.{j}.*` under the rename
  diffusers uses for Wan VACE blocks (`SIDE_BLOCK_RENAMES`). The side-branch config
  (`MirageTransformer.side_config` plus `"profile"`) is inferred from the shapes and block count
  and written as JSON in the header under `SIDE_CONFIG_KEY`, so the file is exactly what
  `MirageTransformer.load_side_branch` reads.
- **LoRA** (`kind` "lora"): `blocks.{i}.{self_attn|cross_attn}.{q,k,v,o}.lora_{A,B}.weight` and
  `blocks.{i}.ffn.{0,2}.lora_{A,B}.weight` become diffusers' Wan LoRA keys
  (`transformer.blocks.{i}.attn1.to_q.lora_A.weight`, ...), with rank and alpha in the
  `lora_adapter_metadata` header (as `mirage.models.lora.save_lora` writes it). The official
  files store no alpha; their fuse uses alpha / r = 1, so alpha defaults to r.

Wrappers are unwrapped first: nested dicts under `state_dict`, `generator`, `vace` or
`generator.vace`, and key prefixes `module.`, `model.`, `generator.`, `pipe.vace.`,
`pipe.dit.`, `vace.`, `dit.`. Every key must then be known, every expected key present and
every shape right; otherwise a `ValueError` lists the offending keys by name (the official
loader skips them silently). Nothing is written unless the whole checkpoint fits.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

KINDS = ("auto", "official", "spatia", "lora")
PROFILE_OF_SIDE_EVERY = {2: "official", 4: "spatia"}  # 15 blocks / 30 layers; 8 blocks / 30
WAN_HEAD_DIM = 128  # every Wan2.1 / Wan2.2 DiT
WAN_NUM_LAYERS = {1536: 30, 3072: 30, 5120: 40}  # dim -> layers (1.3B, TI2V-5B, 14B / A14B)
WAN_EPS = 1e-6
WAN_QK_NORM = "rms_norm_across_heads"

WRAPPERS = ("state_dict", "generator.vace", "generator", "vace")
PREFIXES = ("module.", "model.", "generator.", "pipe.vace.", "pipe.dit.", "vace.", "dit.")

# DiffSynth sub-module of a VACE / DiT block -> diffusers sub-module (Wan VACE conversion).
SIDE_BLOCK_RENAMES = {
    "before_proj": "proj_in",
    "after_proj": "proj_out",
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
# The DiT modules an official LoRA sits on (the same renames).
LORA_RENAMES = {
    k: SIDE_BLOCK_RENAMES[k]
    for k in (
        *(f"{a}.{p}" for a in ("self_attn", "cross_attn") for p in "qkvo"),
        "ffn.0",
        "ffn.2",
    )
}

_SIDE_BLOCK_RE = re.compile(r"vace_blocks\.(\d+)\.(.+)")
_SIDE_PARAM_RE = re.compile(r"(.+)\.(weight|bias)")
_LORA_RE = re.compile(r"blocks\.(\d+)\.(.+)\.lora_(A|B)\.weight")


# ---------------------------------------------------------------------------------------------
# Reading a checkpoint
# ---------------------------------------------------------------------------------------------


def _unwrap(obj, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Descend known wrapper dicts until a flat name -> tensor dict is left."""
    while isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        name = next((w for w in WRAPPERS if isinstance(obj.get(w), dict)), None)
        if name is None:
            odd = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
            raise ValueError(
                f"{where} holds non-tensor entries {odd[:5]} and none of the known wrappers "
                f"{list(WRAPPERS)}"
            )
        obj, where = obj[name], f"{where}[{name!r}]"
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{where} is not a non-empty dict of tensors")
    return obj


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def read_state_dict(src: str | Path) -> dict[str, torch.Tensor]:
    """Read `src` (safetensors or torch pickle), unwrap wrappers and strip prefixes."""
    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(f"checkpoint not found: {src}")
    if src.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw = load_file(str(src))
    else:
        try:  # weights_only: never run code from a pickle; mmap needs the zip format
            obj = torch.load(src, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - retried without mmap, then reported
            try:
                obj = torch.load(src, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - any unreadable file is a bad input
                raise ValueError(
                    f"cannot read {src} as safetensors or a torch checkpoint: {e}"
                ) from e
        raw = _unwrap(obj, str(src))
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for k, v in raw.items():
        s = _strip(str(k))
        if s in out:
            raise ValueError(f"{src}: keys {origin[s]!r} and {k!r} both name {s!r}")
        out[s], origin[s] = v, str(k)
    return out


def _is_lora_key(key: str) -> bool:
    return ".lora_A." in key or ".lora_B." in key


def _is_side_key(key: str) -> bool:
    return key.startswith(("vace_blocks.", "vace_patch_embedding."))


def detect_kind(keys) -> str:
    """ "lora", "side_branch" (profile decided later from the block count) or "both"; else refuse.

    "both": a trainer's file with the side branch and the LoRA together (stage 2); convert it
    twice, once with kind "official" / "spatia" and once with kind "lora".
    """
    keys = list(keys)
    lora, side = any(map(_is_lora_key, keys)), any(map(_is_side_key, keys))
    if lora or side:
        return "both" if lora and side else "lora" if lora else "side_branch"
    raise ValueError(
        "not a DiffSynth side-branch or LoRA checkpoint: no vace_blocks.* / "
        f"vace_patch_embedding.* or *.lora_A.* keys (first keys: {keys[:3]})"
    )


# ---------------------------------------------------------------------------------------------
# Side branch
# ---------------------------------------------------------------------------------------------


def rename_side_key(key: str) -> str | None:
    """DiffSynth side-branch key -> Mirage key, or None when the name is unknown."""
    if key in ("vace_patch_embedding.weight", "vace_patch_embedding.bias"):
        return "side_" + key[len("vace_") :]
    m = _SIDE_BLOCK_RE.fullmatch(key)
    if m is None:
        return None
    j, rest = m.groups()
    if rest == "modulation":
        return f"side_blocks.{j}.scale_shift_table"
    p = _SIDE_PARAM_RE.fullmatch(rest)
    if p is None or p.group(1) not in SIDE_BLOCK_RENAMES:
        return None
    return f"side_blocks.{j}.{SIDE_BLOCK_RENAMES[p.group(1)]}.{p.group(2)}"


def infer_side_every(num_blocks: int, num_layers: int) -> int:
    """The spacing k with len(range(0, num_layers, k)) == num_blocks; refuse none or several."""
    fits = [k for k in range(1, num_layers + 1) if len(range(0, num_layers, k)) == num_blocks]
    if len(fits) != 1:
        what = "no spacing" if not fits else f"several spacings {fits}"
        raise ValueError(
            f"{num_blocks} side blocks beside {num_layers} layers fit {what}; "
            "pass side_every (and check num_layers)"
        )
    return fits[0]


def _shape_of(sd, key):
    return tuple(sd[key].shape) if key in sd else None


def side_branch_config(
    sd: dict[str, torch.Tensor],
    profile: str | None = None,
    num_layers: int | None = None,
    num_attention_heads: int | None = None,
    side_every: int | None = None,
) -> dict:
    """Infer the Mirage side-branch config (plus "profile") from DiffSynth-named tensors."""
    pe = _shape_of(sd, "vace_patch_embedding.weight")
    if pe is None:
        raise ValueError("missing key: vace_patch_embedding.weight (side-branch input embedding)")
    if len(pe) != 5:
        raise ValueError(
            f"shape of vace_patch_embedding.weight: {pe}, expected [dim, in, pt, ph, pw]"
        )
    dim, in_channels = int(pe[0]), int(pe[1])
    ffn = _shape_of(sd, "vace_blocks.0.ffn.0.weight")
    if ffn is None:
        raise ValueError("missing key: vace_blocks.0.ffn.0.weight (gives the FFN width)")
    if len(ffn) != 2:
        raise ValueError(f"shape of vace_blocks.0.ffn.0.weight: {ffn}, expected [ffn_dim, dim]")
    blocks = {int(m.group(1)) for k in sd if (m := _SIDE_BLOCK_RE.fullmatch(k))}
    if not blocks:
        raise ValueError("no vace_blocks.* keys in the checkpoint")
    num_blocks = max(blocks) + 1
    if num_layers is None:
        if dim not in WAN_NUM_LAYERS:
            raise ValueError(
                f"dim {dim} is not a Wan DiT width {sorted(WAN_NUM_LAYERS)}: pass num_layers"
            )
        num_layers = WAN_NUM_LAYERS[dim]
    if num_attention_heads is None:
        if dim % WAN_HEAD_DIM:
            raise ValueError(
                f"dim {dim} is not a multiple of {WAN_HEAD_DIM}: pass num_attention_heads"
            )
        num_attention_heads = dim // WAN_HEAD_DIM
    if dim % num_attention_heads:
        raise ValueError(f"dim {dim} is not divisible by num_attention_heads {num_attention_heads}")
    if side_every is None:
        side_every = infer_side_every(num_blocks, num_layers)
    layers = list(range(0, num_layers, side_every))
    if len(layers) != num_blocks:
        raise ValueError(
            f"side_every {side_every} beside {num_layers} layers gives {len(layers)} side "
            f"blocks; the checkpoint has {num_blocks}"
        )
    if profile is None:
        if side_every not in PROFILE_OF_SIDE_EVERY:
            raise ValueError(
                f"side blocks every {side_every} layers match neither the official layout (2) "
                "nor Spatia's (4): pass kind='official' or kind='spatia'"
            )
        profile = PROFILE_OF_SIDE_EVERY[side_every]
    has_qk_norm = any(k.endswith(".self_attn.norm_q.weight") for k in sd)
    return {
        "side_every": int(side_every),
        "side_layers": layers,
        "in_channels": in_channels,
        "dim": dim,
        "ffn_dim": int(ffn[0]),
        "num_attention_heads": int(num_attention_heads),
        "num_layers": int(num_layers),
        "patch_size": [int(p) for p in pe[2:]],
        "cross_attn_norm": any(k.endswith(".norm3.weight") for k in sd),
        "qk_norm": WAN_QK_NORM if has_qk_norm else None,
        "eps": WAN_EPS,
        "profile": profile,
    }


def expected_side_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Mirage side-branch key -> shape for `config`, from real modules built on the meta device."""
    import torch.nn as nn

    from mirage.models.transformer import MirageSideBlock

    shapes: dict[str, tuple[int, ...]] = {}
    with torch.device("meta"):
        pe = nn.Conv3d(
            config["in_channels"], config["dim"], kernel_size=tuple(config["patch_size"]),
            stride=tuple(config["patch_size"]),
        )  # fmt: skip
        shapes.update(
            {f"side_patch_embedding.{k}": tuple(v.shape) for k, v in pe.state_dict().items()}
        )
        for j in range(len(config["side_layers"])):
            block = MirageSideBlock(
                config["dim"], config["ffn_dim"], config["num_attention_heads"],
                config["qk_norm"], config["cross_attn_norm"], config["eps"], None,
                apply_input_projection=(j == 0), apply_output_projection=True,
            )  # fmt: skip
            shapes.update(
                {f"side_blocks.{j}.{k}": tuple(v.shape) for k, v in block.state_dict().items()}
            )
    return shapes


def _diffsynth_side_name(ours: str) -> str:
    """Mirage side-branch key -> the DiffSynth key it comes from (for messages)."""
    if ours.startswith("side_patch_embedding."):
        return "vace_" + ours[len("side_") :]
    _, j, rest = ours.split(".", 2)
    if rest == "scale_shift_table":
        return f"vace_blocks.{j}.modulation"
    module, param = rest.rsplit(".", 1)
    theirs = {v: k for k, v in SIDE_BLOCK_RENAMES.items()}.get(module, module)
    return f"vace_blocks.{j}.{theirs}.{param}"


def convert_side_branch(
    sd: dict[str, torch.Tensor],
    profile: str | None = None,
    num_layers: int | None = None,
    num_attention_heads: int | None = None,
    side_every: int | None = None,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Rename and check a DiffSynth side branch; return (Mirage tensors, header config)."""
    config = side_branch_config(sd, profile, num_layers, num_attention_heads, side_every)
    expected = expected_side_shapes(config)
    renamed: dict[str, torch.Tensor] = {}
    problems = []
    for k in sorted(sd):
        ours = rename_side_key(k)
        if ours is None:
            problems.append(f"unknown key: {k}")
        elif ours not in expected:
            problems.append(f"unexpected key: {k} (would be {ours})")
        elif tuple(sd[k].shape) != expected[ours]:
            problems.append(f"shape of {k}: file {tuple(sd[k].shape)}, expected {expected[ours]}")
        else:
            renamed[ours] = sd[k]
    seen = {rename_side_key(k) for k in sd}
    problems += [
        f"missing key: {_diffsynth_side_name(k)} (Mirage {k})" for k in expected if k not in seen
    ]
    if problems:
        raise ValueError(_problem_text("side-branch checkpoint", problems))
    return {k: v.contiguous() for k, v in renamed.items()}, config


# ---------------------------------------------------------------------------------------------
# LoRA
# ---------------------------------------------------------------------------------------------


def convert_lora(
    sd: dict[str, torch.Tensor], lora_alpha: float | None = None
) -> tuple[dict[str, torch.Tensor], dict]:
    """Rename and check a DiffSynth DiT LoRA; return (diffusers-format tensors, LoRA config).

    The config is {"r", "lora_alpha", "target_modules"}; alpha defaults to r (the official fuse
    adds B @ A unscaled).
    """
    problems: list[str] = []
    mods: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for k in sorted(sd):
        m = _LORA_RE.fullmatch(k)
        if m is None or m.group(2) not in LORA_RENAMES:
            problems.append(f"unknown key: {k}")
            continue
        i, module, ab = m.groups()
        mods.setdefault((int(i), module), {})[ab] = sd[k]
    if problems:
        raise ValueError(_problem_text("LoRA checkpoint", problems))
    if not mods:
        raise ValueError("the LoRA checkpoint holds no lora_A / lora_B weights")

    def name(i, module, ab):
        return f"blocks.{i}.{module}.lora_{ab}.weight"

    ranks: dict[int, list[str]] = {}
    for (i, module), ab in sorted(mods.items()):
        for side in ("A", "B"):
            if side not in ab:
                problems.append(f"missing key: {name(i, module, side)}")
        bad = [s for s, t in ab.items() if t.ndim != 2]
        problems += [f"shape of {name(i, module, s)}: {tuple(ab[s].shape)}, not 2-D" for s in bad]
        if len(ab) == 2 and not bad:
            r_a, r_b = ab["A"].shape[0], ab["B"].shape[1]
            if r_a != r_b:
                problems.append(
                    f"shape of {name(i, module, 'B')}: {tuple(ab['B'].shape)} does not match "
                    f"{name(i, module, 'A')} {tuple(ab['A'].shape)} (rank {r_a} vs {r_b})"
                )
            ranks.setdefault(int(r_a), []).append(name(i, module, "A"))
    if not problems and len(ranks) > 1:
        rare = sorted(ranks.items(), key=lambda kv: len(kv[1]))[0]
        problems.append(f"ranks differ {sorted(ranks)}: rank {rare[0]} in e.g. {rare[1][:3]}")
    if problems:
        raise ValueError(_problem_text("LoRA checkpoint", problems))
    (r,) = ranks

    # widths: every projection is dim -> dim except ffn.0 (dim -> ffn) and ffn.2 (ffn -> dim)
    pairs = {key: (ab["A"].shape[1], ab["B"].shape[0]) for key, ab in mods.items()}
    dims = [io[0] for (_, m), io in pairs.items() if m != "ffn.2"]
    dim = max(set(dims), key=dims.count)
    ffns = [io[1] for (_, m), io in pairs.items() if m == "ffn.0"]
    ffns += [io[0] for (_, m), io in pairs.items() if m == "ffn.2"]
    ffn = max(set(ffns), key=ffns.count) if ffns else None
    want = {"ffn.0": (dim, ffn), "ffn.2": (ffn, dim)}
    for (i, module), (fan_in, fan_out) in sorted(pairs.items()):
        w_in, w_out = want.get(module, (dim, dim))
        if fan_in != w_in:
            shape = tuple(mods[i, module]["A"].shape)
            problems.append(f"shape of {name(i, module, 'A')}: {shape}, expected ({r}, {w_in})")
        if fan_out != w_out:
            shape = tuple(mods[i, module]["B"].shape)
            problems.append(f"shape of {name(i, module, 'B')}: {shape}, expected ({w_out}, {r})")
    # coverage: every block 0..max carries the same modules
    modules = sorted({m for _, m in mods})
    for i in range(max(i for i, _ in mods) + 1):
        for module in modules:
            if (i, module) not in mods:
                problems += [f"missing key: {name(i, module, s)}" for s in ("A", "B")]
    if problems:
        raise ValueError(_problem_text("LoRA checkpoint", problems))

    alpha = float(r if lora_alpha is None else lora_alpha)
    if not alpha > 0:
        raise ValueError(f"`lora_alpha` must be > 0, got {lora_alpha}")
    out: dict[str, torch.Tensor] = {}
    targets = []
    for (i, module), ab in sorted(mods.items()):
        target = f"blocks.{i}.{LORA_RENAMES[module]}"
        targets.append(target)
        for s in ("A", "B"):
            out[f"transformer.{target}.lora_{s}.weight"] = ab[s].contiguous()
    return out, {"r": int(r), "lora_alpha": alpha, "target_modules": targets}


def lora_metadata(config: dict) -> str:
    """The `lora_adapter_metadata` header value: LoraConfig fields prefixed `transformer.`."""
    cfg = {
        "r": config["r"],
        "lora_alpha": config["lora_alpha"],
        "target_modules": config["target_modules"],
        "lora_dropout": 0.0,
        "bias": "none",
    }
    return json.dumps({f"transformer.{k}": v for k, v in cfg.items()}, indent=2, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def _problem_text(what: str, problems: list[str]) -> str:
    shown = problems[:30] + ([f"... and {len(problems) - 30} more"] if len(problems) > 30 else [])
    return f"{what} does not convert ({len(problems)} problems):\n  " + "\n  ".join(shown)


def convert_checkpoint(
    src: str | Path,
    out: str | Path,
    kind: str = "auto",
    lora_alpha: float | None = None,
    *,
    overwrite: bool = False,
    num_layers: int | None = None,
    num_attention_heads: int | None = None,
    side_every: int | None = None,
) -> dict:
    """Convert one DiffSynth checkpoint `src` into Mirage's format at `out` (a .safetensors).

    `kind`: "auto" (from the keys and block count), "official" / "spatia" (side branch with
    that conditioning profile), or "lora". `lora_alpha` overrides a LoRA's alpha (default r).
    `num_layers` / `num_attention_heads` / `side_every` are needed only for DiT widths that are
    not Wan's. Returns a summary dict (kind, profile, out, tensors, config).
    """
    from safetensors.torch import save_file

    from mirage.atomic import atomic_path
    from mirage.models.transformer import SIDE_CONFIG_KEY

    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {list(KINDS)}, got {kind!r}")
    src, out = Path(src), Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"`out` must be a .safetensors file, got {out}")
    if out.exists() and not overwrite:
        raise ValueError(f"`out` {out} already exists (pass overwrite=True to replace it)")
    if out.exists() and out.is_dir():
        raise ValueError(f"`out` {out} is a folder")
    if src.exists() and out.exists() and src.resolve() == out.resolve():
        raise ValueError(f"`out` must differ from `src` ({src})")
    sd = read_state_dict(src)
    found = detect_kind(sd)
    if found == "both":
        if kind == "auto":
            raise ValueError(
                f"{src} holds a side branch and a LoRA: convert it twice, with kind='lora' "
                "and with kind='official' or 'spatia'"
            )
        # keep the part asked for; every other key is checked (and refused) as part of it
        if kind == "lora":
            sd, found = {k: v for k, v in sd.items() if not _is_side_key(k)}, "lora"
        else:
            sd, found = {k: v for k, v in sd.items() if not _is_lora_key(k)}, "side_branch"
    if found == "lora" and kind in ("official", "spatia"):
        raise ValueError(f"{src} is a LoRA checkpoint, not a side branch (kind={kind!r})")
    if found == "side_branch" and kind == "lora":
        raise ValueError(f"{src} is a side-branch checkpoint, not a LoRA (kind='lora')")

    if found == "lora":
        if (num_layers, num_attention_heads, side_every) != (None, None, None):
            raise ValueError("num_layers / num_attention_heads / side_every apply to side branches")
        tensors, config = convert_lora(sd, lora_alpha)
        meta = {"format": "pt", "lora_adapter_metadata": lora_metadata(config)}
        summary = {
            "kind": "lora",
            "profile": None,
            "config": {k: config[k] for k in ("r", "lora_alpha")},
        }
        summary["config"]["modules"] = len(config["target_modules"])
    else:
        if lora_alpha is not None:
            raise ValueError("`lora_alpha` applies to LoRA checkpoints only")
        profile = None if kind == "auto" else kind
        tensors, config = convert_side_branch(
            sd, profile, num_layers, num_attention_heads, side_every
        )
        meta = {"format": "pt", SIDE_CONFIG_KEY: json.dumps(config, sort_keys=True)}
        summary = {"kind": config["profile"], "profile": config["profile"], "config": config}
    meta["mirage_converted_from"] = src.name
    with atomic_path(out, ".safetensors") as tmp:
        save_file(tensors, tmp, metadata=meta)
    return {**summary, "src": str(src), "out": str(out), "tensors": len(tensors)}
