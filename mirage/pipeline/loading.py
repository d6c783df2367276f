"""Build a MiragePipeline from local files: model folder, side branch, LoRA, perception."""

from __future__ import annotations

from pathlib import Path

import torch

from mirage.pipeline.world_model import MiragePipeline

SIDE_BRANCH_FILE = "side_branch.safetensors"  # looked up inside the model folder by default
RGB_SIDE_BRANCH_FILE = "side_branch_rgb.safetensors"  # trained on RGB-cache readouts (optional)
LORA_FILE = "lora.safetensors"


def side_every_of(branch: str | Path) -> int:
    """The `side_every` a side-branch file was saved with (read from its header only)."""
    from mirage.models.transformer import read_side_config

    return int(read_side_config(branch)["side_every"])


def profile_of(branch: str | Path) -> str:
    """The conditioning profile a side-branch file records (`mirage` when it records none)."""
    from mirage.models.transformer import read_side_config

    return read_side_config(branch)["profile"]


def build_pipeline(
    model_dir: str | Path,
    branch: str | Path | None = None,
    lora: str | Path | None = None,
    depth="gt",
    masks="none",
    scene=None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    offload: bool = False,
    side_every: int = 2,
) -> MiragePipeline:
    """Load every part, checking every file first.

    `branch` / `lora` default to `side_branch.safetensors` / `lora.safetensors` inside
    `model_dir` when those exist; without a branch the side branch is freshly initialised (it
    then adds exactly nothing). With the default branch, a `side_branch_rgb.safetensors` in
    `model_dir` (a branch of the same shape trained on RGB-cache readouts) is swapped in for
    generations with memory "rgb", so `--memory rgb` compares best against best. The branch
    file's conditioning profile (`mirage`, `official`, `spatia`) is read from its header and
    the transformer built for it. `depth` and `masks` are specs for
    `mirage.perception.load_depth_provider` / `load_mask_provider` ("gt", "none" or a folder);
    "gt" needs the synthetic `scene`; `depth=None` loads none (for memory "none"). A text
    encoder is loaded when the folder has one.
    """
    from mirage.models.loading import load_wan_components
    from mirage.models.lora import load_lora
    from mirage.models.transformer import MirageTransformer
    from mirage.models.vae import VideoVAE
    from mirage.perception import load_depth_provider, load_mask_provider
    from mirage.pipeline.model_info import model_defaults

    root = Path(model_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"model folder not found: {root}")
    branches = {}
    if branch is None and (root / RGB_SIDE_BRANCH_FILE).is_file():
        branches["rgb"] = root / RGB_SIDE_BRANCH_FILE
    branch = branch or (root / SIDE_BRANCH_FILE if (root / SIDE_BRANCH_FILE).is_file() else None)
    lora = lora or (root / LORA_FILE if (root / LORA_FILE).is_file() else None)
    profile = "mirage"  # a fresh branch reads our input
    if branch is not None:  # the file says how it was built and what it reads
        side_every, profile = side_every_of(branch), profile_of(branch)
    _check_same_branch(branch, branches.values())
    if lora is not None and not Path(lora).is_file():
        raise FileNotFoundError(f"LoRA file not found: {lora}")
    depth_provider = None if depth is None else load_depth_provider(depth, scene, device)
    mask_provider = load_mask_provider(masks, scene=scene, device=device)

    has_text = (root / "text_encoder").is_dir()
    parts = load_wan_components(
        root, dtype=dtype, device=device, load_text_encoder=has_text, cpu_offload=offload
    )
    transformer = MirageTransformer.from_base(
        parts.transformer, side_every=side_every, profile=profile
    )
    if branch is not None:
        transformer.load_side_branch(branch)
    if lora is not None:
        load_lora(transformer, lora)
    transformer.eval()
    files = {"model": str(root), "branch": branch and str(branch), "lora": lora and str(lora)}
    return MiragePipeline(
        transformer, VideoVAE(parts.vae), parts.scheduler, depth_provider, mask_provider,
        parts.text_encoder, parts.tokenizer, device=device, offload=offload, files=files,
        branches=branches, defaults=model_defaults(root),
    )  # fmt: skip


def _check_same_branch(branch, others) -> None:
    """Every swapped-in branch must have the configuration of the default one (checked on the
    file headers before anything loads)."""
    from mirage.models.transformer import read_side_config

    if branch is None and others:
        raise FileNotFoundError(
            f"{next(iter(others))} needs {SIDE_BRANCH_FILE} beside it (the branch of every other "
            "memory kind)"
        )
    want = branch and read_side_config(branch)
    for other in others:
        got = read_side_config(other)
        if got != want:
            diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            raise ValueError(
                f"side branch {other} differs from {branch} in {', '.join(diff)}: a branch "
                "swapped in for one memory kind must have the default branch's configuration"
            )
