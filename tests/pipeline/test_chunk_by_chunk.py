"""`next_chunk` (the explorer's loop) refuses a chunk of the wrong length.

`generate` is `start_chunks` + one `next_chunk` per chunk, so comparing the two would compare
the code with itself: the loop's reference is the plain pre-profile loop written out in
tests/pipeline/test_retrieval.py, and the explorer's undo / redo is tested against a replay
in tests/explore/test_session.py."""

import pytest

from mirage.pipeline import GenerationConfig
from mirage.pipeline.loading import build_pipeline
from mirage.pipeline.runner import resolve_model
from mirage.synthetic import make_scene


def test_next_chunk_refuses_a_wrong_number_of_cameras():
    scene = make_scene(900_005)
    pipe = build_pipeline(resolve_model("tiny"), depth="gt", scene=scene)
    cam = scene.start_camera(64, 64)
    cfg = GenerationConfig(chunk_frames=9, num_inference_steps=1)
    state = pipe.start_chunks(scene.render(cam).rgb[0], cam, config=cfg)
    with pytest.raises(ValueError, match="9 cameras"):
        pipe.next_chunk(state, cam[[0] * 5])
