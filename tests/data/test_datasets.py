"""Clip datasets: deterministic synthetic clips and RealEstate10K-layout folders."""

import pytest
import torch

from mirage.data import Re10kClipDataset, SyntheticClipDataset, write_re10k_cameras
from mirage.data.video import write_png, write_video
from mirage.geometry import Cameras


def test_synthetic_clips_have_ground_truth_and_are_deterministic_per_index():
    ds = SyntheticClipDataset(4, 5, 24, 32, seed=1, kind="mixed", num_dynamic=1)
    assert len(ds) == 4
    a = ds[2]
    assert a["frames"].shape == (5, 3, 24, 32) and a["frames"].dtype == torch.float32
    assert a["depth"].shape == (5, 24, 32)
    assert a["dynamic_mask"].dtype == torch.bool and a["sky_mask"].shape == (5, 24, 32)
    assert a["K"].shape == (5, 3, 3) and a["c2w"].shape == (5, 4, 4)
    Cameras(a["K"], a["c2w"], 24, 32)  # valid cameras
    b = SyntheticClipDataset(4, 5, 24, 32, seed=1, kind="mixed", num_dynamic=1)[2]
    for key in ("frames", "depth", "dynamic_mask", "sky_mask", "K", "c2w"):
        assert torch.equal(a[key], b[key]), key
    assert a["scene_seed"] == b["scene_seed"]
    assert not torch.equal(ds[1]["frames"], a["frames"])
    assert a["sky_mask"].any() == (a["kind"] == "outdoor")
    assert (a["depth"][a["sky_mask"]] == float("inf")).all()


def test_synthetic_clip_cameras_stay_in_free_space():
    from mirage.synthetic import make_scene

    ds = SyntheticClipDataset(6, 9, 8, 8, seed=5, trajectories=("orbit", "loop", "random_walk"))
    for i in range(len(ds)):
        item = ds[i]
        scene = make_scene(item["scene_seed"], item["kind"])
        assert scene.free(item["c2w"][:, :3, 3]).all(), i


def test_synthetic_dataset_rejects_bad_arguments():
    with pytest.raises(ValueError, match="trajectories"):
        SyntheticClipDataset(2, 5, 8, 8, trajectories=("zoom",))
    with pytest.raises(ValueError, match="kind"):
        SyntheticClipDataset(2, 5, 8, 8, kind="space")
    with pytest.raises(IndexError):
        SyntheticClipDataset(2, 5, 8, 8)[2]


def make_clip(root, name, T, H, W, as_video):
    frames = torch.rand(T, 3, 1, 1).expand(T, 3, H, W).contiguous()  # flat colours
    clip = root / name
    if as_video:
        write_video(clip / "video.mp4", frames, fps=10)
    else:
        for i, f in enumerate(frames):
            write_png(clip / "frames" / f"{i:05d}.png", f)
    K = torch.tensor([[30.0, 0, 16.0], [0, 28.0, 12.0], [0, 0, 1]])
    c2w = torch.eye(4).repeat(T, 1, 1)
    c2w[:, 0, 3] = torch.arange(T, dtype=torch.float32)  # frame i sits at x = i
    write_re10k_cameras(clip / "cameras.txt", "url", torch.arange(T) * 100, Cameras(K, c2w, H, W))
    return frames


def test_re10k_folder_dataset_windows_frames_and_cameras(tmp_path):
    frames = make_clip(tmp_path, "a", 7, 24, 32, as_video=False)
    make_clip(tmp_path, "b", 8, 24, 32, as_video=True)
    make_clip(tmp_path, "short", 2, 24, 32, as_video=False)
    ds = Re10kClipDataset(tmp_path, num_frames=3, height=12, width=16, stride=2)
    # span 5: clip a (7 frames) -> start 0; clip b (8 frames) -> start 0; short is skipped
    assert len(ds) == 2 and ds.skipped == ["short"]
    item = ds[0]
    assert item["clip"] == "a" and item["start"] == 0
    assert item["frames"].shape == (3, 3, 12, 16)
    torch.testing.assert_close(item["frames"], frames[[0, 2, 4], :, :12, :16], atol=1 / 255, rtol=0)
    assert item["c2w"][:, 0, 3].tolist() == [0.0, 2.0, 4.0]
    assert item["timestamps_us"].tolist() == [0, 200, 400]
    torch.testing.assert_close(
        item["K"][0], torch.tensor([[15.0, 0, 8.0], [0, 14.0, 6.0], [0, 0, 1]])
    )
    assert len(Re10kClipDataset(tmp_path, num_frames=3, height=12, width=16, stride=1)) == 4
    assert ds[1]["frames"].shape == (3, 3, 12, 16)
    with pytest.raises(FileNotFoundError):
        Re10kClipDataset(tmp_path / "none", 3, 12, 16)


def test_check_clip_size_names_the_bad_argument():
    from mirage.data.datasets import check_clip_size

    check_clip_size(2, 4, 6, min_frames=2)  # at the bounds: fine
    with pytest.raises(ValueError, match=r"`num_frames` must be an integer >= 2, got 1"):
        check_clip_size(1, 4, 6, min_frames=2)
    with pytest.raises(ValueError, match="`num_frames`"):
        check_clip_size(2.5, 4, 6)
    for h, w in ((0, 6), (4, -1), (4.5, 6)):
        with pytest.raises(ValueError, match="`height` and `width`"):
            check_clip_size(3, h, w)
