"""scripts/add_side_branches.py: branches in, hashes and how the branches read memory recorded."""

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from mirage.models.loading import TINY_MODEL_DIR

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "add_side_branches.py"


def _script():
    spec = importlib.util.spec_from_file_location("add_side_branches", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _export(root: Path, memory: str, sky, fusion="mean") -> Path:
    """A `mirage train` export folder: the shipped branch and a metadata.json saying how."""
    root.mkdir()
    shutil.copy(TINY_MODEL_DIR / "side_branch.safetensors", root / "side_branch.safetensors")
    fusion = fusion if memory == "latent" else None  # the RGB cache has no fusion
    config = {"memory": memory, "sky_distance": sky, "fusion": fusion}
    (root / "metadata.json").write_text(json.dumps({"config": config}))
    return root


@pytest.fixture
def model(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(TINY_MODEL_DIR, folder)
    return folder


def test_the_branches_sky_distance_and_fusion_become_the_folders_defaults(model, tmp_path):
    latent = _export(tmp_path / "latent", "latent", 1000.0, fusion="first")
    rgb = _export(tmp_path / "rgb", "rgb", 1000.0)
    _script().main(["--model", str(model), "--latent", str(latent), "--rgb", str(rgb)])
    info = json.loads((model / "mirage.json").read_text())
    assert info["generation"]["sky_distance"] == 1000.0 and info["generation"]["fusion"] == "first"
    digest = hashlib.sha256((model / "side_branch_rgb.safetensors").read_bytes()).hexdigest()
    assert info["sha256"]["side_branch_rgb.safetensors"] == digest
    # branches trained without the dome: the folder's default goes again
    latent_off = _export(tmp_path / "latent-off", "latent", None)
    rgb_off = _export(tmp_path / "rgb-off", "rgb", None)
    _script().main(["--model", str(model), "--latent", str(latent_off), "--rgb", str(rgb_off)])
    generation = json.loads((model / "mirage.json").read_text())["generation"]
    assert "sky_distance" not in generation and generation["fusion"] == "mean"


def test_branches_trained_on_different_skies_are_refused(model, tmp_path):
    latent = _export(tmp_path / "latent", "latent", 1000.0)
    rgb = _export(tmp_path / "rgb", "rgb", None)
    # a latent branch other than the folder's: copied, it would change the folder
    shutil.copy(TINY_MODEL_DIR / "side_branch_rgb.safetensors", latent / "side_branch.safetensors")
    before = {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()}
    with pytest.raises(SystemExit, match="sky"):
        _script().main(["--model", str(model), "--latent", str(latent), "--rgb", str(rgb)])
    assert {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()} == before


def test_sampling_defaults_are_set_kept_and_removed(model):
    def generation(*extra):
        _script().main(["--model", str(model), *extra])
        return json.loads((model / "mirage.json").read_text())["generation"]

    got = generation("--readout-copy", "0.3", "--memory-guidance", "1.5")
    assert got["readout_copy"] == 0.3 and got["memory_guidance"] == 1.5
    assert generation()["readout_copy"] == 0.3  # not given: unchanged
    got = generation("--readout-copy", "0", "--memory-guidance", "1")  # the off values
    assert "readout_copy" not in got and "memory_guidance" not in got
    before = (model / "mirage.json").read_bytes()
    for bad in (["--readout-copy", "1.5"], ["--memory-guidance", "-1"]):
        with pytest.raises(SystemExit, match=bad[0][2:].replace("-", "_")):
            generation(*bad)
    assert (model / "mirage.json").read_bytes() == before
