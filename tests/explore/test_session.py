"""The explorer's session logic without a browser: moves -> poses, chunks, undo, replay, save."""

import math

import pytest
import torch
from typer.testing import CliRunner

from mirage.data.trajectories import load_trajectory
from mirage.explore.session import ExploreSession, Move, move_cameras, move_pose, save_session
from mirage.explore.start import (
    check_model,
    frame_size,
    generation_config,
    load_model,
    scene_start,
)
from mirage.geometry import Cameras

SCENE = 900_005


def _pose(gen) -> torch.Tensor:
    """A random rigid pose (not axis-aligned, so a swapped axis shows)."""
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.det(q))  # a rotation, det +1
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :3], out[:3, 3] = q, torch.randn(3, generator=gen, dtype=torch.float64)
    return out


@pytest.mark.parametrize(
    ("key", "axis", "sign"),
    [("D", 0, 1), ("A", 0, -1), ("F", 1, 1), ("R", 1, -1), ("W", 2, 1), ("S", 2, -1)],
)
def test_translation_moves_follow_the_camera_axes(gen, key, axis, sign):
    c2w = _pose(gen)
    out = move_pose(c2w, Move(key, step=0.7, turn=10.0))
    expected = c2w[:3, 3] + sign * 0.7 * c2w[:3, axis]
    torch.testing.assert_close(out[:3, 3], expected, rtol=0, atol=1e-12)
    assert torch.equal(out[:3, :3], c2w[:3, :3])  # a step does not turn


def test_e_turns_right_about_the_camera_vertical_and_q_undoes_it(gen):
    c2w = _pose(gen)
    right = move_pose(c2w, Move("E", step=1.0, turn=90.0))
    # a right turn by 90 degrees: the new forward (z) is the old right (x); y stays
    torch.testing.assert_close(right[:3, 2], c2w[:3, 0], rtol=0, atol=1e-12)
    torch.testing.assert_close(right[:3, 1], c2w[:3, 1], rtol=0, atol=1e-12)
    assert torch.equal(right[:3, 3], c2w[:3, 3])
    back = move_pose(right, Move("Q", step=1.0, turn=90.0))
    torch.testing.assert_close(back, c2w, rtol=0, atol=1e-12)


def test_move_cameras_start_exactly_end_at_the_move_and_are_evenly_spaced(gen):
    c2w = _pose(gen).float()
    K = torch.tensor([[50.0, 0, 30], [0, 60, 20], [0, 0, 1]])
    start = Cameras(K[None], c2w[None], 40, 64)
    move = Move("W", step=0.8, turn=10.0)
    cams = move_cameras(start, move, 9)
    assert len(cams) == 9 and (cams.height, cams.width) == (40, 64)
    assert torch.equal(cams.c2w[0], c2w)
    torch.testing.assert_close(cams.c2w[-1], move_pose(c2w, move), rtol=0, atol=1e-6)
    gaps = (cams.c2w[1:, :3, 3] - cams.c2w[:-1, :3, 3]).norm(dim=-1)
    torch.testing.assert_close(gaps, torch.full((8,), 0.1), rtol=0, atol=1e-5)
    turned = move_cameras(start, Move("E", step=1.0, turn=40.0), 5)
    z = turned.c2w[:, :3, 2].double()  # new forward axes in the start camera's x-z plane
    yaw = [math.degrees(math.atan2(f @ c2w[:3, 0].double(), f @ c2w[:3, 2].double())) for f in z]
    assert yaw == pytest.approx([0, 10, 20, 30, 40], abs=1e-3)


@pytest.mark.parametrize("bad", [{"key": "X"}, {"step": 0.0}, {"step": float("nan")},
                                 {"turn": 0.0}, {"turn": 270.0}])  # fmt: skip
def test_bad_moves_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Move(**{"key": "D", "step": 0.3, "turn": 15.0, **bad})


# --- with the embedded mirage-tiny --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    model = check_model(None, "latent")
    return model, load_model(model)


def _session(tiny, memory="latent", steps=2):
    model, pipe = tiny
    image, camera = scene_start(pipe, SCENE, "indoor", frame_size(model), 60.0)
    return ExploreSession(pipe, image, camera, generation_config(model, memory, steps, seed=3))


def _memory_tensors(memory) -> dict:
    return {k: v.clone() for k, v in vars(memory).items() if isinstance(v, torch.Tensor)}


def test_moves_grow_the_video_and_the_memory(tiny):
    s = _session(tiny)
    points0 = s.memory.num_points
    step = s.move(Move("D", 0.3, 15.0))
    assert step.frames.shape == (8, 3, 64, 64) and len(s.frames) == len(s.cameras) == 9
    assert s.memory.num_points > points0  # a strafe uncovers new surface
    assert not torch.equal(s.frames[-1], s.frames[0])
    torch.testing.assert_close(s.current.c2w[0], move_pose(s.camera.c2w[0], step.move))
    image, mask = s.readout()
    grid = 64 // s.pipeline.vae.spatial_factor  # the model's latent grid
    assert image.shape == (3, 64, 64) and mask.shape == (grid, grid) and mask.any()
    positions, colors = s.points()
    assert positions.shape == (s.memory.num_points, 3) and colors.dtype == torch.uint8


def test_undo_restores_the_memory_bit_for_bit_and_a_redo_repeats_the_chunk(tiny):
    s = _session(tiny)
    s.move(Move("D", 0.3, 15.0))
    before, frames_before = _memory_tensors(s.memory), s.frames.clone()
    first = s.move(Move("W", 0.3, 15.0)).frames
    assert s.memory.num_points != len(before["positions"]) or not torch.equal(
        s.memory.features, before["features"]
    )  # the chunk changed the memory, so the restore below is not trivially true
    assert s.undo()
    after = _memory_tensors(s.memory)
    assert after.keys() == before.keys()
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name
    assert torch.equal(s.frames, frames_before) and len(s.cameras) == len(frames_before)
    again = s.move(Move("W", 0.3, 15.0)).frames  # same noise, same memory: the same chunk
    assert torch.equal(again, first)
    assert s.undo() and s.undo() and not s.undo()
    assert len(s.frames) == 1 and s.memory.num_points == len(_session(tiny).memory.positions)


def test_switching_memory_replays_the_same_moves(tiny):
    s = _session(tiny)
    for key in "DE":
        s.move(Move(key, 0.3, 15.0))
    cameras = s.cameras.c2w.clone()
    s.set_memory("none")
    assert [m.move.key for m in s.steps] == ["D", "E"] and s.memory.num_points == 0
    assert torch.equal(s.cameras.c2w, cameras)
    s.set_memory("rgb")
    assert s.memory.num_points > 0 and len(s.frames) == 17


def test_save_writes_files_and_the_trajectory_reloads_into_mirage_generate(tiny, tmp_path):
    from mirage.cli import app

    s = _session(tiny)
    with pytest.raises(ValueError, match="make a move"):
        save_session(s, tmp_path / "session")
    for key in "DD":
        s.move(Move(key, 0.3, 15.0))
    out = save_session(s, tmp_path / "session")
    assert out == tmp_path / "session" / "001"
    names = {p.name for p in out.iterdir()}
    assert names == {"trajectory.json", "video.mp4", "memory.safetensors", "memory.ply",
                     "session.json"}  # fmt: skip
    assert save_session(s, tmp_path / "session").name == "002"  # a save never overwrites
    loaded = load_trajectory(out / "trajectory.json")
    assert torch.equal(loaded.c2w, s.cameras.c2w) and torch.equal(loaded.K, s.cameras.K)
    result = CliRunner().invoke(app, [
        "generate", "--trajectory", str(out / "trajectory.json"), "--scene", str(SCENE),
        "--steps", "2", "--out", str(tmp_path / "gen"), "--no-progress",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "gen" / "video.mp4").is_file()
    assert len(list((tmp_path / "gen" / "frames").iterdir())) == len(s.frames)


def test_undo_restores_the_reference_bank_so_a_redo_repeats_the_chunk(tiny):
    """With references on, undo must also restore what the conditioner retrieved from (its
    bank of written latents and the last chunk's slots), not only the memory."""
    from dataclasses import replace

    s = _session(tiny)
    s.config = replace(s.config, references="on")
    s.reset()
    s.move(Move("D", 0.3, 15.0))
    s.move(Move("A", 0.3, 15.0))
    first = s.move(Move("A", 0.3, 15.0)).frames
    assert s.undo() and s.undo()
    s.move(Move("A", 0.3, 15.0))
    again = s.move(Move("A", 0.3, 15.0)).frames
    assert torch.equal(again, first)
