"""Projection, back-projection and the exact z-buffer against hand values and a loop twin."""

import pytest
import torch
from camera_factory import intrinsics, pose, random_cameras, rotation
from hypothesis import given, settings
from hypothesis import strategies as st

from mirage.geometry import Cameras, backproject, pixel_centers, project, unproject, zbuffer
from mirage.geometry.projection import _zbuffer

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_pixel_centers_follow_continuous_convention():
    uv = pixel_centers(2, 3)
    assert uv.shape == (2, 3, 2)
    assert uv[1, 2].tolist() == [2.5, 1.5]  # (u, v) = (j + .5, i + .5)


def test_project_hand_value_with_asymmetric_K():
    K = torch.tensor([[[100.0, 0, 40.5], [0, 150.0, 20.25], [0, 0, 1]]])
    w2c = torch.eye(4)[None]
    uv, z = project(torch.tensor([[0.2, -0.1, 2.0]]), K, w2c)
    assert z.item() == 2.0
    torch.testing.assert_close(uv[0, 0], torch.tensor([100 * 0.1 + 40.5, 150 * -0.05 + 20.25]))


def test_backproject_gives_z_depth_not_ray_length():
    H, W = 5, 7
    K = intrinsics(H, W)[None]
    depth = torch.full((1, H, W), 3.0)
    pts = backproject(depth, K, torch.eye(4)[None])
    assert torch.all(pts[..., 2] == 3.0)  # every point, off-axis too, at z = 3
    corner = pts[0, 0, 0]
    assert corner.norm() > 3.0


@pytest.mark.parametrize("H, W", [(1, 9), (9, 1), (6, 11)])
def test_backproject_then_project_is_identity(gen, H, W):
    cams = random_cameras(gen, 3, H, W)
    depth = 0.5 + 4 * torch.rand(3, H, W, generator=gen)
    pts = backproject(depth, cams.K, cams.c2w)  # [3,H,W,3]
    for t in range(3):
        uv, z = project(pts[t].reshape(-1, 3), cams.K[t : t + 1], cams.w2c[t : t + 1])
        torch.testing.assert_close(uv[0].reshape(H, W, 2), pixel_centers(H, W), atol=1e-4, rtol=0)
        torch.testing.assert_close(z[0].reshape(H, W), depth[t], atol=1e-5, rtol=1e-5)


@settings(max_examples=60, deadline=None)
@given(
    u=st.floats(0.0, 63.99),
    v=st.floats(0.0, 47.99),
    z=st.floats(0.05, 100.0),
    yaw=st.floats(-3.1, 3.1),
    pitch=st.floats(-1.5, 1.5),
    tx=st.floats(-5, 5),
    fx=st.floats(10, 500),
    fy=st.floats(10, 500),
)
def test_project_of_unproject_property(u, v, z, yaw, pitch, tx, fx, fy):
    K = torch.tensor([[[fx, 0, 31.7], [0, fy, 24.2], [0, 0, 1]]])
    cams = Cameras(K, pose(rotation(yaw, pitch), [tx, 0.5, -1.0]), 48, 64)
    p = unproject(torch.tensor([[[u, v]]]), torch.tensor([[z]]), cams.K, cams.c2w)
    uv, zz = project(p[0], cams.K, cams.w2c)
    # float32: camera coordinates carry an absolute error of ~eps * |p|, magnified by f / z
    eps = 2.0**-23
    scale = 1 + float(p.norm()) + abs(tx)
    pixel_tol = 8 * eps * max(fx, fy) * scale / z + 1e-4
    torch.testing.assert_close(uv[0, 0], torch.tensor([u, v]), atol=pixel_tol, rtol=0)
    assert abs(zz.item() - z) <= 8 * eps * scale


def _adversarial_scene(gen, T=3, N=600, H=5, W=7):
    """Many points per cell, exact depth ties, points behind the camera and out of frame."""
    uv = torch.rand(T, N, 2, generator=gen) * torch.tensor([W + 4.0, H + 4.0]) - 2.0
    uv[:, :50] = torch.tensor([3.0, 2.0])  # exactly on a cell corner, all in one cell
    z = torch.randint(-3, 6, (T, N), generator=gen).float() / 2  # few values: many ties
    z[:, 60:70] = float("inf")
    z[:, 70:80] = float("nan")
    uv[:, 80:90, 0] = float("nan")
    return uv, z


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(5))
def test_zbuffer_matches_brute_force_loop(seed, device):
    gen = torch.Generator().manual_seed(seed)
    uv, z = _adversarial_scene(gen)
    index, depth = zbuffer(uv.to(device), z.to(device), 5, 7)
    ref_index, ref_depth = _zbuffer(uv, z, 5, 7)
    assert torch.equal(index.cpu(), ref_index)
    assert torch.equal(depth.cpu(), ref_depth)


def test_zbuffer_hand_cases():
    uv = torch.tensor([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.7], [1.0, 0.0], [0.5, 0.5]]])
    z = torch.tensor([[2.0, 1.0, 1.0, 0.5, -1.0]])
    index, depth = zbuffer(uv, z, 1, 2)
    # cell (0,0): z 2, 1, 1 -> the nearer pair ties, the smaller index (1) wins; behind ignored
    # cell (0,1): u = 1.0 belongs to column 1 (floor), alone at z 0.5
    assert index.tolist() == [[[1, 3]]]
    assert depth.tolist() == [[[1.0, 0.5]]]


def test_zbuffer_empty_and_no_points():
    index, depth = zbuffer(torch.zeros(2, 0, 2), torch.zeros(2, 0), 3, 4)
    assert torch.all(index == -1) and torch.all(depth == 0)


def test_render_index_in_passes_equals_one_pass(gen, monkeypatch):
    import mirage.geometry.projection as projection

    monkeypatch.setattr(projection.native, "_kernel", None)  # the torch path takes passes
    cams = random_cameras(gen, 5, 12, 20)
    points = (torch.rand(400, 3, generator=gen) - 0.5) * 2 + torch.tensor([0.0, 0.0, 3.0])
    whole = projection.render_index(points, cams.K, cams.w2c, 12, 20)
    monkeypatch.setattr(projection, "CPU_POINTS_PER_PASS", 150)  # passes of 150, 150, 100 points
    sliced = projection.render_index(points, cams.K, cams.w2c, 12, 20)
    assert torch.equal(whole[0], sliced[0]) and torch.equal(whole[1], sliced[1])
    assert (whole[0] >= 0).any()


def _tie_scene(gen, N=600, H=5, W=7, finite=False):
    """Cameras and points for render_index: exact depth ties, duplicates, behind, non-finite.

    One camera has w2c = I, so its z is the point's Z exactly and Z from a few values gives
    exact ties between different points; the others are rotated, where duplicated points tie.
    """
    cams = random_cameras(gen, 3, H, W)
    K = torch.cat([cams.K, intrinsics(H, W)[None]])
    w2c = torch.cat([cams.w2c, torch.eye(4)[None]])
    Z = torch.randint(-2, 5, (N,), generator=gen).float() / 2  # -1 .. 2: behind, at 0, in front
    XY = (torch.rand(N, 2, generator=gen) - 0.5) * 1.6 * Z.abs().clamp(min=0.5)[:, None]
    points = torch.cat([XY, Z[:, None]], 1)
    points[300:400] = points[200:300]  # duplicates: equal z in every view, the smaller index wins
    points[400:420] = torch.tensor([0.01, 0.02, 1.0])  # twenty points in one cell, one z
    if finite:  # every point finite: the fast path skips the test for infinite z
        return points, K, w2c
    points[420:425, 0] = float("inf")
    points[425:430, 2] = float("nan")
    points[430:435, 2] = float("inf")
    points[435:440] = torch.tensor([0.0, 0.0, 0.0])  # at the camera centre (z = 0, uv = NaN)
    return points, K, w2c


# The CPU paths: the compiled loop (`mirage.geometry.native`), and the torch ops it falls back
# to with their alternatives: passes over the points, float64 cell ids, keys without the
# little-endian word layout, no exact GEMM. Each must give the loop twin's result.
PATHS = {
    "native": {},
    "torch": {"torch": True},
    "passes": {"torch": True, "CPU_POINTS_PER_PASS": 97},
    "float64_cells": {"torch": True, "_FLOAT32_CELLS": 1},
    "shifted_keys": {"torch": True, "_LITTLE_ENDIAN": False},
    "elementwise": {"torch": True, "_GEMM_IS_EXACT": False},  # a BLAS that fails the probe
}


def _take_path(path, monkeypatch):
    import mirage.geometry.projection as projection

    for name, value in PATHS[path].items():
        if name == "torch":
            monkeypatch.setattr(projection.native, "_kernel", None)
        else:
            monkeypatch.setattr(projection, name, value)
    if path == "native" and projection.native.kernel() is None:
        pytest.skip("no C compiler: the compiled z-buffer is not built")


@pytest.mark.parametrize("finite", [False, True])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("seed", range(3))
def test_render_index_matches_loop_twin_with_ties_and_points_behind(
    seed, path, finite, monkeypatch
):
    import mirage.geometry.projection as projection

    _take_path(path, monkeypatch)
    gen = torch.Generator().manual_seed(seed)
    points, K, w2c = _tie_scene(gen, finite=finite)
    index, depth = projection.render_index(points, K, w2c, 5, 7)
    uv, z = project(points, K, w2c)
    ref_index, ref_depth = _zbuffer(uv, z, 5, 7)
    assert torch.equal(index, ref_index) and torch.equal(depth, ref_depth)
    assert index.dtype == torch.int64 and depth.dtype == torch.float32
    assert (z == z[:, :1]).sum() > 1 and (z < 0).any() and (z == 0).any()
    assert finite == bool(torch.isfinite(z).all())
    assert (index[-1] >= 0).sum() >= 10  # the w2c = I view sees its share of the scene
    zb_index, zb_depth = zbuffer(uv, z, 5, 7)  # the vectorised z-buffer agrees as well
    assert torch.equal(index, zb_index) and torch.equal(depth, zb_depth)


@pytest.mark.parametrize("path", PATHS)
def test_render_index_view_does_not_depend_on_the_others(gen, path, monkeypatch):
    import mirage.geometry.projection as projection

    _take_path(path, monkeypatch)
    cams = random_cameras(gen, 6, 12, 20)
    points = (torch.rand(3000, 3, generator=gen) - 0.5) * 2 + torch.tensor([0.0, 0.0, 3.0])
    index, depth = projection.render_index(points, cams.K, cams.w2c, 12, 20)
    for t in range(6):
        one = projection.render_index(points, cams.K[t : t + 1], cams.w2c[t : t + 1], 12, 20)
        assert torch.equal(one[0][0], index[t]) and torch.equal(one[1][0], depth[t])
    uv, z = project(points, cams.K, cams.w2c)
    for t in range(6):
        uv1, z1 = project(points, cams.K[t : t + 1], cams.w2c[t : t + 1])
        assert torch.equal(uv1[0], uv[t]) and torch.equal(z1[0], z[t])


def test_cpu_gemm_is_used_only_where_it_equals_the_elementwise_sums(gen):
    import mirage.geometry.projection as projection

    pts = torch.randn(5000, 3, generator=gen) * 50
    P = torch.randn(3, 4, generator=gen) * 200
    cols = projection._columns(P)
    want = projection._camera_rows(pts.T, cols, torch.empty(3, 5000), None)
    got = projection._camera_rows_cpu(projection._homogeneous(pts), P, torch.empty(3, 5000), None)
    assert torch.equal(want, got)  # whichever the probe chose


@pytest.mark.parametrize("path", PATHS)
def test_render_index_edges_match_loop_twin(gen, path, monkeypatch):
    """Grids of one row or one column, every point behind, points on the frame's edges."""
    import mirage.geometry.projection as projection

    _take_path(path, monkeypatch)
    for H, W in ((1, 9), (7, 1), (1, 1)):
        w2c = random_cameras(gen, 3, H, W, spread=0.1).w2c
        K = torch.tensor([[2.0 * W, 0, W / 2 + 0.1], [0, 2.5 * H, H / 2 - 0.2], [0, 0, 1]])
        K = K.expand(3, 3, 3)
        points = (torch.rand(500, 3, generator=gen) - 0.5) * 2 + torch.tensor([0.0, 0.0, 3.0])
        uv, z = project(points, K, w2c)
        assert ((uv >= 0) & (uv < torch.tensor([W, H]))).all(-1).sum() > 20  # some land
        index, depth = projection.render_index(points, K, w2c, H, W)
        ref_index, ref_depth = _zbuffer(uv, z, H, W)
        assert torch.equal(index, ref_index) and torch.equal(depth, ref_depth)
    # every point behind the camera (z < 0) projects into the frame; none may show
    K, w2c = intrinsics(5, 7)[None], torch.eye(4)[None]
    behind = torch.rand(200, 3, generator=gen) - torch.tensor([0.5, 0.5, 1.5])  # z in -1.5..-0.5
    uv, _ = project(behind, K, w2c)
    assert ((uv >= 0) & (uv < torch.tensor([7, 5]))).all(-1).any()
    index, depth = projection.render_index(behind, K, w2c, 5, 7)
    assert torch.all(index == -1) and torch.all(depth == 0)
    # points exactly on the cell borders u, v = 0, 1, ..., W (floor: u = W is outside)
    grid = torch.stack(torch.meshgrid(torch.arange(8.0), torch.arange(6.0), indexing="xy"), -1)
    uv1 = grid.reshape(-1, 2)  # u in 0..7, v in 0..5 on a 5 x 7 grid
    f, c = 10.0, torch.tensor([0.0, 0.0])
    K1 = torch.tensor([[[f, 0, 0], [0, f, 0], [0, 0, 1.0]]])
    on_edges = torch.cat([(uv1 - c) / f * 2.0, torch.full((len(uv1), 1), 2.0)], 1)
    uv, z = project(on_edges, K1, w2c)
    index, depth = projection.render_index(on_edges, K1, w2c, 5, 7)
    ref_index, ref_depth = _zbuffer(uv, z, 5, 7)
    assert torch.equal(index, ref_index) and torch.equal(depth, ref_depth)
    assert (index >= 0).sum() == 35  # every cell has its corner point


def test_native_kernel_falls_back_to_torch_without_a_compiler(gen, monkeypatch, tmp_path):
    import mirage.geometry.projection as projection

    monkeypatch.setattr(projection.native, "_kernel", False)  # not tried yet
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("MIRAGE_NATIVE_CACHE", str(tmp_path / "cache"))
    assert projection.native.kernel() is None
    cams = random_cameras(gen, 2, 12, 20)
    points = (torch.rand(300, 3, generator=gen) - 0.5) * 2 + torch.tensor([0.0, 0.0, 3.0])
    index, depth = projection.render_index(points, cams.K, cams.w2c, 12, 20)
    ref_index, ref_depth = _zbuffer(*project(points, cams.K, cams.w2c), 12, 20)
    assert torch.equal(index, ref_index) and torch.equal(depth, ref_depth)
    monkeypatch.setattr(projection.native, "_kernel", False)
    monkeypatch.setenv("MIRAGE_NATIVE", "0")  # disabled even where a compiler is found
    monkeypatch.delenv("CC")
    assert projection.native.kernel() is None


def test_a_native_kernel_that_fails_the_probe_is_not_used(monkeypatch):
    import mirage.geometry.projection as projection

    if projection.native.kernel() is None:
        pytest.skip("no C compiler: the compiled z-buffer is not built")
    real = projection.native.render_index_native

    def off_by_one(lib, points, P, H, W):  # as a compiler that rounds differently might be
        index, depth = real(lib, points, P, H, W)
        return index, depth.nextafter(torch.tensor(float("inf")))

    monkeypatch.setattr(projection.native, "render_index_native", off_by_one)
    monkeypatch.setattr(projection, "_NATIVE_PROBED", (None, False))
    assert projection._native_kernel() is None
    monkeypatch.setattr(projection.native, "render_index_native", real)
    monkeypatch.setattr(projection, "_NATIVE_PROBED", (None, False))
    assert projection._native_kernel() is projection.native.kernel()


def test_native_kernel_builds_into_its_cache(monkeypatch, tmp_path):
    import mirage.geometry.native as native

    if native.kernel() is None:
        pytest.skip("no C compiler: the compiled z-buffer is not built")
    monkeypatch.setattr(native, "_kernel", False)
    monkeypatch.setenv("MIRAGE_NATIVE_CACHE", str(tmp_path))
    assert native.kernel() is not None
    assert [p.suffix for p in tmp_path.iterdir()] == [".so"]  # the library, no leftovers


def test_render_index_ignores_a_point_whose_z_overflows_to_inf():
    from mirage.geometry import render_index

    # 45 degrees about y, f = 1, no principal point offset: the first point has x = 0 (the
    # products cancel) and z = inf (they add up past float32's range), so u = x / z = 0 would
    # land in cell (0, 0) if z = inf were not refused; the second point does land there.
    c = torch.tensor(0.5).sqrt().item()
    K = torch.eye(3)[None]
    w2c = torch.tensor([[[c, 0, c, 0], [0, 1, 0, 0], [-c, 0, c, 0], [0, 0, 0, 1.0]]])
    points = torch.tensor([[-3e38, 0.0, 3e38], [0.0, 0.0, 0.0]])
    points[1] = torch.tensor([0.1, 0.1, 5.0]) @ w2c[0, :3, :3]  # camera (0.1, 0.1, 5) in world
    uv, z = project(points, K, w2c)
    assert z[0, 0] == float("inf") and uv[0, 0].tolist() == [0.0, 0.0]
    for pts, expect in ((points, 1), (points[:1], -1)):
        index, depth = render_index(pts, K, w2c, 2, 3)
        ref_index, ref_depth = _zbuffer(*project(pts, K, w2c), 2, 3)
        assert torch.equal(index, ref_index) and torch.equal(depth, ref_depth)
        assert index[0, 0, 0] == expect


def test_render_index_of_no_points_and_no_views(gen):
    from mirage.geometry import render_index

    cams = random_cameras(gen, 2, 3, 4)
    index, depth = render_index(torch.zeros(0, 3), cams.K, cams.w2c, 3, 4)
    assert index.shape == (2, 3, 4) and torch.all(index == -1) and torch.all(depth == 0)
    index, depth = render_index(torch.ones(5, 3), cams.K[:0], cams.w2c[:0], 3, 4)
    assert index.shape == (0, 3, 4) and depth.shape == (0, 3, 4)
