"""Shared test setup: offline, deterministic, and small thread counts (2-core CI machine)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# pytest-xdist runs two workers on two cores; more threads per worker only contend.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def scene():
    """A small outdoor synthetic scene with two moving objects (and sky)."""
    from mirage.synthetic import make_scene

    return make_scene(3, "outdoor", num_dynamic=2)


@pytest.fixture
def gen():
    """A seeded torch.Generator, so every test draws the same random inputs."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A Wan-layout folder (transformer/, vae/, scheduler/, a fresh side branch) of the tiny
    random model."""
    from mirage.models.loading import tiny_components
    from mirage.models.transformer import MirageTransformer

    root = tmp_path_factory.mktemp("tiny-model")
    parts = tiny_components(0)
    parts.transformer.save_pretrained(root / "transformer")
    parts.vae.save_pretrained(root / "vae")
    parts.scheduler.save_pretrained(root / "scheduler")
    MirageTransformer.from_base(parts.transformer).save_side_branch(
        root / "side_branch.safetensors"
    )
    return root
