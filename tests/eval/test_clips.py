"""Evaluation clip sources: RealEstate10K windows and held-out synthetic clips."""

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from mirage.data.re10k import write_re10k_cameras
from mirage.eval.clips import EVAL_SCENE_SEED_START, Re10kEvalClips, SyntheticEvalClips
from mirage.eval.run import EvalJob, eval_clips
from mirage.geometry import Cameras

H, W = 16, 24


def _re10k_folder(root, n=12):
    """One clip `room`: frame i is a flat grey of value i / 20, camera i at x = 0.1 i."""
    clip = root / "room"
    (clip / "frames").mkdir(parents=True)
    for i in range(n):
        iio.imwrite(
            clip / "frames" / f"{i:03d}.png", np.full((H, W, 3), round(255 * i / 20), np.uint8)
        )
    c2w = torch.eye(4).repeat(n, 1, 1)
    c2w[:, 0, 3] = 0.1 * torch.arange(n)
    K = torch.tensor([[20.0, 0, W / 2], [0, 18.0, H / 2], [0, 0, 1]]).expand(n, 3, 3)
    write_re10k_cameras(
        clip / "cameras.txt", "https://example.com/v", torch.arange(n) * 1000, Cameras(K, c2w, H, W)
    )
    return root


def test_re10k_windows_and_loop_lengths(tmp_path):
    root = _re10k_folder(tmp_path / "re")
    clips = Re10kEvalClips(root, 5, H, W, stride=2)  # windows of 9 source frames: start 0 only
    assert len(clips) == 1
    clip = clips[0]
    assert clip.name == "room_000000" and clip.frames.shape == (5, 3, H, W)
    assert torch.allclose(clip.cameras.c2w[:, 0, 3], torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8]))
    assert torch.allclose(clip.frames[:, 0, 0, 0], torch.tensor([0, 2, 4, 6, 8]) / 20, atol=1 / 255)
    with pytest.raises(IndexError):
        clips[1]
    # closed loop of F = 9 generated frames: outbound windows of 5, loop built from them
    job = EvalJob("closed_loop", tmp_path, tmp_path / "o", re10k=root, size=(H, W), frames=9)
    loops, args = eval_clips(job)
    assert args == {"clips_are_loops": False, "loop_frames": 9}
    assert len(loops[0].frames) == 5 and len(loops) == 2  # windows starting at 0 and 5


def test_synthetic_clips_are_held_out_loops(tmp_path):
    clips = SyntheticEvalClips(2, 5, H, W, protocol="closed_loop")
    c = clips[1]
    assert c.name == f"indoor{EVAL_SCENE_SEED_START + 1}" and c.scene.seed == 2**31 + 1
    assert torch.equal(c.cameras.c2w, c.cameras.c2w.flip(0))  # a palindrome
    assert torch.equal(c.frames, c.scene.render(c.cameras).rgb)
    with pytest.raises(ValueError, match="protocol"):
        SyntheticEvalClips(1, 5, H, W, protocol="loop")


def test_synthetic_eval_clips_reject_bad_sizes():
    with pytest.raises(ValueError, match="num_frames"):
        SyntheticEvalClips(1, 1, H, W)  # a clip needs a context frame and a target
    with pytest.raises(ValueError, match="height"):
        SyntheticEvalClips(1, 5, 0, W)
    with pytest.raises(ValueError, match="num_clips"):
        SyntheticEvalClips(0, 5, H, W)
