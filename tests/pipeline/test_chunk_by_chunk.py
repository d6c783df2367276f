"""`start_chunks` + `next_chunk` (the explorer's loop) give `generate`'s output bit for bit."""

import pytest
import torch

from mirage.data.trajectories import make_trajectory
from mirage.pipeline import GenerationConfig
from mirage.pipeline.loading import build_pipeline
from mirage.pipeline.runner import resolve_model
from mirage.synthetic import make_scene


@pytest.mark.parametrize("memory", ["latent", "rgb"])
def test_chunk_by_chunk_equals_generate(memory):
    scene = make_scene(900_005)
    pipe = build_pipeline(resolve_model("tiny"), depth="gt", scene=scene)
    cams = make_trajectory("orbit", scene.start_camera(64, 64), 25, degrees=40.0)
    image = scene.render(cams[0]).rgb[0]
    cfg = GenerationConfig(chunk_frames=9, num_inference_steps=2, memory=memory, seed=5)
    whole = pipe.generate(image, cams, config=cfg, progress=False)

    state = pipe.start_chunks(image, cams[0], config=cfg)
    frames = [image[None]]
    for start in (0, 8, 16):
        out = pipe.next_chunk(state, cams[start : start + 9])
        frames.append(out.frames)
        assert out.times["cache_points"] == state.memory.num_points
    assert torch.equal(torch.cat(frames), whole.frames)
    assert torch.equal(out.readout.latents, whole.readouts[-1].latents)
    assert torch.equal(state.memory.positions, whole.memory.positions)
    assert state.frames == len(cams) and state.chunks == 3


def test_next_chunk_refuses_a_wrong_number_of_cameras():
    scene = make_scene(900_005)
    pipe = build_pipeline(resolve_model("tiny"), depth="gt", scene=scene)
    cam = scene.start_camera(64, 64)
    cfg = GenerationConfig(chunk_frames=9, num_inference_steps=1)
    state = pipe.start_chunks(scene.render(cam).rgb[0], cam, config=cfg)
    with pytest.raises(ValueError, match="9 cameras"):
        pipe.next_chunk(state, cam[[0] * 5])
