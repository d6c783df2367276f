"""Trajectory presets, slerp keyframes and JSON files against closed forms."""

import math

import pytest
import torch

from mirage.data.trajectories import (
    PRESETS,
    interpolate_keyframes,
    load_trajectory,
    make_trajectory,
    matrix_to_quaternion,
    quaternion_to_matrix,
    save_trajectory,
)
from mirage.geometry import Cameras


def rodrigues(axis, angle):
    """Closed-form rotation matrix about a unit axis (written out, float64)."""
    x, y, z = axis
    c, s, C = math.cos(angle), math.sin(angle), 1 - math.cos(angle)
    return torch.tensor(
        [
            [c + x * x * C, x * y * C - z * s, x * z * C + y * s],
            [y * x * C + z * s, c + y * y * C, y * z * C - x * s],
            [z * x * C - y * s, z * y * C + x * s, c + z * z * C],
        ],
        dtype=torch.float64,
    )


def pose(R, t):
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3], T[:3, 3] = R, torch.as_tensor(t, dtype=torch.float64)
    return T.float()


AXIS = (2 / 7, 3 / 7, 6 / 7)  # a unit axis


@pytest.fixture
def start():
    R = rodrigues(AXIS, 0.7)
    K = torch.tensor([[50.0, 0, 31.0], [0, 45.0, 25.0], [0, 0, 1]])  # fx != fy, cx != cy
    return Cameras(K, pose(R, (0.3, -0.2, 1.1)), 48, 64)


def test_slerp_midpoint_is_half_angle_rotation_and_translation_midpoint():
    theta = 1.9
    kf = torch.stack(
        [pose(torch.eye(3), (0, 0, 0)), pose(rodrigues(AXIS, theta), (2.0, -4.0, 6.0))]
    )
    out = interpolate_keyframes(kf, 5)
    torch.testing.assert_close(
        out[2, :3, :3].double(), rodrigues(AXIS, theta / 2), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        out[1, :3, :3].double(), rodrigues(AXIS, theta / 4), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(out[2, :3, 3], torch.tensor([1.0, -2.0, 3.0]))
    assert torch.equal(out[0], kf[0]) and torch.equal(out[-1], kf[1])


def test_slerp_takes_the_short_way_and_handles_three_keyframes():
    # 0 -> 170 -> 340 degrees about z: each segment is a 170 degree turn, never the long way
    kf = torch.stack(
        [pose(rodrigues((0, 0, 1), math.radians(a)), (0, 0, 0)) for a in (0, 170, 340)]
    )
    out = interpolate_keyframes(kf, 5)
    for i, a in enumerate((0, 85, 170, 255, 340)):
        torch.testing.assert_close(
            out[i, :3, :3].double(), rodrigues((0, 0, 1), math.radians(a)), atol=1e-6, rtol=0
        )


def test_quaternion_round_trip_near_180_degrees():
    for angle in (0.0, 1.0, math.pi - 1e-3, math.pi):
        R = rodrigues(AXIS, angle)
        torch.testing.assert_close(
            quaternion_to_matrix(matrix_to_quaternion(R)), R, atol=1e-9, rtol=0
        )


@pytest.mark.parametrize("n", [7, 8, 1, 2])
def test_loop_return_half_visits_outbound_poses_in_reverse(start, n):
    cams = make_trajectory("loop", start, n, path="orbit", radius=1.5, degrees=50)
    assert len(cams) == n
    for k in range(n):
        assert torch.equal(cams.c2w[k], cams.c2w[n - 1 - k])
    m = (n + 1) // 2
    outbound = make_trajectory("orbit", start, m, radius=1.5, degrees=50)
    assert torch.equal(cams.c2w[:m], outbound.c2w)
    if n >= 7:
        assert (cams.centers[m - 1] - cams.centers[0]).norm() > 0.5  # it really went somewhere


def test_push_pull_move_are_straight_lines_along_camera_axes(start):
    R, c0 = start.c2w[0, :3, :3], start.c2w[0, :3, 3]
    for preset, axis, sign in (
        ("push_in", 2, 1),
        ("pull_out", 2, -1),
        ("move_left", 0, -1),
        ("move_right", 0, 1),
    ):
        cams = make_trajectory(preset, start, 5, distance=0.8)
        expected = c0 + sign * 0.8 * torch.linspace(0, 1, 5)[:, None] * R[:, axis]
        torch.testing.assert_close(cams.centers, expected, atol=1e-6, rtol=0)
        assert torch.allclose(cams.c2w[:, :3, :3], R.expand(5, 3, 3))
        assert torch.equal(cams.K, start.K.expand(5, 3, 3))


def test_pan_turns_in_place_by_the_angle(start):
    R0 = start.c2w[0, :3, :3]
    for preset, side in (("pan_left", -1), ("pan_right", 1)):
        cams = make_trajectory(preset, start, 3, degrees=40)
        assert torch.allclose(cams.centers, start.centers.expand(3, 3))
        fwd = cams.c2w[-1, :3, 2]
        assert float(fwd @ R0[:, 2]) == pytest.approx(math.cos(math.radians(40)), abs=1e-6)
        assert side * float(fwd @ R0[:, 0]) == pytest.approx(math.sin(math.radians(40)), abs=1e-6)
        assert float(cams.c2w[-1, :3, 1] @ R0[:, 1]) == pytest.approx(1.0, abs=1e-6)  # same up


def test_orbit_keeps_distance_and_looks_at_the_target(start):
    cams = make_trajectory("orbit", start, 6, radius=2.0, degrees=90, up=(0.0, 1.0, 0.0))
    target = start.centers[0] + 2.0 * start.c2w[0, :3, 2]
    to_target = target - cams.centers
    torch.testing.assert_close(to_target.norm(dim=1), torch.full((6,), 2.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(to_target / 2.0, cams.c2w[:, :3, 2], atol=1e-5, rtol=0)
    # the camera centres turn 90 degrees about the world up axis around the target
    a, b = (start.centers[0] - target), (cams.centers[-1] - target)
    assert float(a[1]) == pytest.approx(float(b[1]), abs=1e-5)
    a2, b2 = a[[0, 2]], b[[0, 2]]
    assert float(a2 @ b2) == pytest.approx(0.0, abs=1e-5)


def test_random_walk_is_seeded_and_stays_in_bounds(start):
    lo, hi = (0.0, -0.5, 0.5), (1.0, 0.0, 2.0)
    a = make_trajectory("random_walk", start, 40, seed=3, bounds=(lo, hi), step=0.8)
    b = make_trajectory("random_walk", start, 40, seed=3, bounds=(lo, hi), step=0.8)
    c = make_trajectory("random_walk", start, 40, seed=4, bounds=(lo, hi), step=0.8)
    assert torch.equal(a.c2w, b.c2w) and not torch.equal(a.c2w, c.c2w)
    assert (a.centers >= torch.tensor(lo) - 1e-6).all() and (
        a.centers <= torch.tensor(hi) + 1e-6
    ).all()
    assert (a.centers[1:] - a.centers[:-1]).norm(dim=1).max() < 0.5  # smooth, no jumps
    assert torch.equal(a.c2w[0], start.c2w[0])
    with pytest.raises(ValueError, match="inside `bounds`"):
        make_trajectory("random_walk", start, 5, bounds=((5, 5, 5), (6, 6, 6)))


def test_every_preset_starts_at_the_start_pose(start):
    for preset in PRESETS:
        cams = make_trajectory(preset, start, 4)
        assert len(cams) == 4 and torch.equal(cams.c2w[0], start.c2w[0]), preset


def test_bad_arguments_raise_clear_errors(start):
    with pytest.raises(ValueError, match="preset"):
        make_trajectory("spiral", start, 4)
    with pytest.raises(ValueError, match="unknown keyword"):
        make_trajectory("push_in", start, 4, degrees=3)
    with pytest.raises(ValueError, match="num_frames"):
        make_trajectory("orbit", start, 0)


def test_json_round_trip_is_exact(tmp_path, start):
    cams = make_trajectory("orbit", start, 9, degrees=73)
    path = tmp_path / "traj.json"
    save_trajectory(path, cams)
    back = load_trajectory(path)
    assert torch.equal(back.c2w, cams.c2w) and torch.equal(back.K, cams.K)
    assert (back.height, back.width) == (48, 64)
    path.write_text('{"format": "mirage-trajectory", "version": 1, "height": 4}')
    with pytest.raises(ValueError, match="missing keys"):
        load_trajectory(path)
    with pytest.raises(FileNotFoundError):
        load_trajectory(tmp_path / "nope.json")
