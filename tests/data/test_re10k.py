"""RealEstate10K camera files and frame loading: hand-made lines, round trips, bad files."""

import math

import numpy as np
import pytest
import torch

from mirage.data.re10k import (
    load_frames,
    read_re10k_cameras,
    resize_clip,
    write_re10k_cameras,
)
from mirage.data.video import write_video
from mirage.geometry import Cameras

LINE = "1000 0.5 0.8 0.25 0.5 0 0 0 -1 0 1 1 0 0 2 0 0 1 3"


def test_hand_made_line_gives_expected_K_and_c2w(tmp_path):
    # w2c rotation = 90 degrees about z, t = (1, 2, 3): c2w = [R^T | -R^T t] worked out by hand.
    path = tmp_path / "cam.txt"
    path.write_text("https://www.youtube.com/watch?v=abc\n" + LINE + "\n")
    stamps, cams = read_re10k_cameras(path, 100, 200)
    assert stamps.dtype == torch.int64 and stamps.tolist() == [1000]
    K = torch.tensor([[100.0, 0, 50.0], [0, 80.0, 50.0], [0, 0, 1]])  # fx, cx by W; fy, cy by H
    assert torch.equal(cams.K[0], K)
    c2w = torch.tensor([[0.0, 1, 0, -2], [-1, 0, 0, 1], [0, 0, 1, -3], [0, 0, 0, 1]])
    assert torch.equal(cams.c2w[0], c2w)
    assert (cams.height, cams.width) == (100, 200)


def random_cameras(gen, T, H, W):
    q = torch.randn(T, 4, generator=gen, dtype=torch.float64)
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        1,
    ).view(T, 3, 3)  # fmt: skip
    c2w = torch.eye(4, dtype=torch.float64).repeat(T, 1, 1)
    c2w[:, :3, :3], c2w[:, :3, 3] = R, torch.randn(T, 3, generator=gen, dtype=torch.float64) * 5
    K = torch.zeros(T, 3, 3)
    K[:, 0, 0] = torch.rand(T, generator=gen) * 300 + 50
    K[:, 1, 1] = torch.rand(T, generator=gen) * 300 + 50
    K[:, 0, 2] = torch.rand(T, generator=gen) * W
    K[:, 1, 2] = torch.rand(T, generator=gen) * H
    K[:, 2, 2] = 1
    return Cameras(K, c2w.float(), H, W)


def test_write_read_round_trip_is_exact(tmp_path, gen):
    cams = random_cameras(gen, 20, 90, 160)
    stamps = torch.randint(0, 10**12, (20,), generator=gen)
    path = tmp_path / "sub" / "cameras.txt"
    write_re10k_cameras(path, "https://example.com/v", stamps, cams)
    lines = path.read_text().splitlines()
    assert lines[0] == "https://example.com/v" and len(lines) == 21
    assert all(len(line.split()) == 19 for line in lines[1:])
    back_stamps, back = read_re10k_cameras(path, 90, 160)
    assert torch.equal(back_stamps, stamps)
    assert torch.equal(back.K, cams.K)
    assert torch.equal(back.c2w, cams.c2w)


def test_normalised_intrinsics_follow_the_image_size(tmp_path, gen):
    cams = random_cameras(gen, 3, 90, 160)
    path = tmp_path / "c.txt"
    write_re10k_cameras(path, "u", torch.arange(3), cams)
    _, half = read_re10k_cameras(path, 45, 80)
    torch.testing.assert_close(half.K, torch.diag(torch.tensor([0.5, 0.5, 1.0])) @ cams.K)


@pytest.mark.parametrize(
    "line, message",
    [
        ("1000 0.5 0.8 0.25 0.5 0 0 0 -1 0 1 1 0 0 2 0 0 1", "expected 19 numbers, got 18"),
        ("1000 0.5 0.8 0.25 0.5 0 0 0 -1 0 1 1 0 0 2 0 0 1 3 4", "expected 19 numbers, got 20"),
        ("1000 0.5 0.8 0.25 abc 0 0 0 -1 0 1 1 0 0 2 0 0 1 3", "non-numeric"),
        ("1000.5 0.5 0.8 0.25 0.5 0 0 0 -1 0 1 1 0 0 2 0 0 1 3", "non-numeric"),
        ("1000 0.5 0.8 0.25 0.5 0 0 0 -1.2 0 1 1.2 0 0 2 0 0 1 3", "not rigid"),
        ("1000 0.5 0.8 0.25 0.5 0 0 0 1 0 1 1 0 0 2 0 0 1 3", "not rigid"),  # det = -1
        ("1000 -0.5 0.8 0.25 0.5 0 0 0 -1 0 1 1 0 0 2 0 0 1 3", "positive"),
        ("1000 nan 0.8 0.25 0.5 0 0 0 -1 0 1 1 0 0 2 0 0 1 3", "non-finite"),
    ],
)
def test_malformed_lines_raise_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(f"url\n{LINE}\n{line}\n{LINE}\n")
    with pytest.raises(ValueError, match=message) as err:
        read_re10k_cameras(path, 10, 10)
    assert "line 3" in str(err.value) and "bad.txt" in str(err.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_re10k_cameras(tmp_path / "none.txt", 10, 10)
    (tmp_path / "e.txt").write_text("url\n\n")
    with pytest.raises(ValueError, match="no camera lines"):
        read_re10k_cameras(tmp_path / "e.txt", 10, 10)


def flat_frames(T, H, W):
    """Frames of flat colours (exact under resizing and nearly exact through H.264)."""
    colours = torch.tensor([[0.9, 0.1, 0.2], [0.1, 0.8, 0.3], [0.2, 0.3, 0.9], [0.7, 0.7, 0.1]])
    return colours[torch.arange(T) % 4][:, :, None, None].expand(T, 3, H, W).contiguous()


def test_load_frames_from_image_folder_resized_with_indices(tmp_path):
    import imageio.v3 as iio

    frames = flat_frames(4, 16, 24)
    for i, f in enumerate(frames):
        arr = (f.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        iio.imwrite(tmp_path / f"{i:04d}.{'png' if i % 2 else 'jpg'}", arr)
    out = load_frames(tmp_path, 8, 12, indices=[3, 1])
    assert out.shape == (2, 3, 8, 12)
    torch.testing.assert_close(out[1], frames[1, :, :8, :12], atol=1 / 255 + 1e-6, rtol=0)  # PNG
    torch.testing.assert_close(out[0], frames[3, :, :8, :12], atol=1 / 255 + 1e-6, rtol=0)  # PNG
    with pytest.raises(ValueError, match="out of range"):
        load_frames(tmp_path, 8, 12, indices=[4])


def test_load_frames_from_mp4(tmp_path):
    frames = flat_frames(5, 32, 48)
    write_video(tmp_path / "v.mp4", frames, fps=10)
    out = load_frames(tmp_path / "v.mp4", 16, 24)
    assert out.shape == (5, 3, 16, 24)
    assert (out - frames[:, :, :16, :24]).abs().mean() < 0.03  # lossy codec, flat colours
    some = load_frames(tmp_path / "v.mp4", 16, 24, indices=[4, 0])
    torch.testing.assert_close(some, out[[4, 0]])


def test_resize_clip_keeps_a_pixel_on_its_ray():
    # a bright pixel block in a 40x60 image at known pixels: after halving, the block centre
    # projects to the same normalised position, and K follows exactly
    K = torch.tensor([[50.0, 0, 30.0], [0, 50.0, 20.0], [0, 0, 1]])
    cams = Cameras(K, torch.eye(4), 40, 60)
    frames = torch.zeros(1, 3, 40, 60)
    frames[:, :, 10:14, 36:40] = 1.0  # centre at continuous (38, 12)
    small, scams = resize_clip(frames, cams, 20, 30)
    mass = small[0, 0]
    ii, jj = torch.meshgrid(torch.arange(20) + 0.5, torch.arange(30) + 0.5, indexing="ij")
    u, v = float((mass * jj).sum() / mass.sum()), float((mass * ii).sum() / mass.sum())
    assert u == pytest.approx(19.0, abs=1e-4) and v == pytest.approx(6.0, abs=1e-4)
    x_big = (38 - K[0, 2]) / K[0, 0]
    x_small = (u - scams.K[0, 0, 2]) / scams.K[0, 0, 0]
    assert float(x_small) == pytest.approx(float(x_big), abs=1e-6)
    assert math.isclose(float(scams.K[0, 0, 0]), 25.0)
    assert np.isclose(float(scams.K[0, 1, 2]), 10.0)
