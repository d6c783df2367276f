"""A model folder's `side_branch_rgb.safetensors` is the branch `--memory rgb` runs with; every
other memory kind keeps `side_branch.safetensors`, and a branch of another shape is refused."""

import shutil

import pytest
import torch

from mirage.data.trajectories import make_trajectory
from mirage.models.transformer import MirageTransformer
from mirage.pipeline import GenerationConfig
from mirage.pipeline.loading import RGB_SIDE_BRANCH_FILE, SIDE_BRANCH_FILE, build_pipeline
from mirage.pipeline.runner import resolve_model
from mirage.synthetic import make_scene


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """mirage-tiny with an RGB branch: the shipped branch with every weight moved."""
    root = tmp_path_factory.mktemp("model") / "tiny"
    shutil.copytree(resolve_model("tiny"), root)
    (root / RGB_SIDE_BRANCH_FILE).unlink(missing_ok=True)
    pipe = build_pipeline(root, depth=None)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in pipe.transformer.side_branch_parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    pipe.transformer.save_side_branch(root / RGB_SIDE_BRANCH_FILE)
    return root


def _frames(pipe, memory, scene):
    cams = make_trajectory("orbit", scene.start_camera(64, 64), 9, degrees=30.0)
    cfg = GenerationConfig(chunk_frames=9, num_inference_steps=2, memory=memory, seed=1)
    res = pipe.generate(scene.render(cams[0]).rgb[0], cams, config=cfg, progress=False)
    return res.frames, res.metadata["branch"]


def test_rgb_memory_runs_the_rgb_branch_and_latent_the_default(folder):
    scene = make_scene(900_005)
    auto = build_pipeline(folder, depth="gt", scene=scene)
    rgb, rgb_file = _frames(auto, "rgb", scene)
    latent, latent_file = _frames(auto, "latent", scene)  # swapped back
    again, _ = _frames(auto, "rgb", scene)
    assert rgb_file.endswith(RGB_SIDE_BRANCH_FILE) and latent_file.endswith(SIDE_BRANCH_FILE)
    # the same frames as pipelines that load one branch each, explicitly
    only_rgb = build_pipeline(folder, branch=folder / RGB_SIDE_BRANCH_FILE, depth="gt", scene=scene)
    only_default = build_pipeline(folder, branch=folder / SIDE_BRANCH_FILE, depth="gt", scene=scene)
    assert torch.equal(rgb, _frames(only_rgb, "rgb", scene)[0])
    assert torch.equal(again, rgb)
    assert torch.equal(latent, _frames(only_default, "latent", scene)[0])
    assert not torch.equal(rgb, _frames(only_default, "rgb", scene)[0])  # the branch matters


def test_an_rgb_branch_of_another_shape_is_refused_before_loading(folder, tmp_path):
    other = tmp_path / "tiny"
    shutil.copytree(folder, other)
    base = build_pipeline(other, depth=None).transformer.base
    MirageTransformer.from_base(base, side_every=3).save_side_branch(other / RGB_SIDE_BRANCH_FILE)
    with pytest.raises(ValueError, match="side_every"):
        build_pipeline(other, depth=None)
