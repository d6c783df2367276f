"""LatentSpatialMemory: read-back, closed-form views, fusion, persistence and bad input."""

import struct

import pytest
import torch
from camera_factory import intrinsics, pose, random_cameras, rotation

from mirage.geometry import Cameras
from mirage.memory import LatentSpatialMemory
from mirage.memory.pooling import _pool_depth

C, s, h, w = 6, 4, 6, 10
H, W = h * s, w * s


def _observation(gen, T=2):
    cams = random_cameras(gen, T, H, W)
    latents = torch.randn(T, C, h, w, generator=gen)
    depth = 1 + 3 * torch.rand(T, H, W, generator=gen)
    depth[:, :3, :5] = 0.0  # holes: the top-left cells lose their majority
    return latents, depth, cams


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_read_back_from_insert_camera_is_exact(gen, dtype):
    latents, depth, cams = _observation(gen, T=1)
    mem = LatentSpatialMemory(C, dtype=dtype)
    added = mem.insert(latents, depth, cams)
    pooled, valid = _pool_depth(depth, s)
    assert added == int(valid.sum()) and 0 < added < h * w
    out = mem.read(cams)
    assert torch.equal(out.mask[:, 0], valid)
    expect = torch.where(valid[:, None], latents.to(dtype), 0)
    assert torch.equal(out.latents, expect)  # bit-exact in the stored dtype
    torch.testing.assert_close(out.depth[:, 0], pooled, rtol=1e-5, atol=0)


def test_shifted_camera_sees_neighbour_cell_closed_form():
    # Fronto-parallel plane at Z = 2, latent fx = 4 cells per unit at Z = 1: moving the camera
    # by 0.5 to the right shifts the image by exactly one cell to the left.
    K = torch.tensor([[4.0 * s, 0, W / 2], [0, 4.0 * s, H / 2], [0, 0, 1]])
    a = Cameras(K, torch.eye(4), H, W)
    b = Cameras(K, pose(torch.eye(3), [0.5, 0, 0]), H, W)
    lat = torch.randn(1, C, h, w)
    mem = LatentSpatialMemory(C, dtype=torch.float32)
    mem.insert(lat, torch.full((1, H, W), 2.0), a)
    out = mem.read(b)
    assert torch.equal(out.latents[0, :, :, : w - 1], lat[0, :, :, 1:])
    assert not out.mask[0, 0, :, w - 1].any() and out.mask[0, 0, :, : w - 1].all()
    torch.testing.assert_close(out.depth[0, 0, :, : w - 1], torch.full((h, w - 1), 2.0))


def test_nearer_surface_occludes_farther_one():
    # A box-like scene: view A inserts a far wall (Z = 5), view B (turned, same centre) a near
    # panel that sits in front of the wall as seen from A. Reading A shows the panel's latents.
    K = intrinsics(H, W)
    a = Cameras(K, torch.eye(4), H, W)
    mem = LatentSpatialMemory(C, dtype=torch.float32)
    far = torch.zeros(1, C, h, w)
    near = torch.ones(1, C, h, w)
    mem.insert(far, torch.full((1, H, W), 5.0), a)
    mem.insert(near, torch.full((1, H, W), 1.0), a)  # same view, nearer: must win everywhere
    out = mem.read(a)
    assert torch.equal(out.latents, near) and torch.all(out.depth == 1.0)


def test_batched_read_equals_one_view_at_a_time(gen):
    latents, depth, cams = _observation(gen, T=3)
    mem = LatentSpatialMemory(C, dtype=torch.float32)
    mem.insert(latents, depth, cams)
    targets = random_cameras(gen, 4, H, W)
    batched = mem.read(targets)
    for t in range(4):
        single = mem.read(targets[t])
        assert torch.equal(batched.latents[t], single.latents[0])
        assert torch.equal(batched.mask[t], single.mask[0])


def test_excluded_pixels_never_enter(gen):
    latents, depth, cams = _observation(gen, T=1)
    depth[:] = 2.0
    exclude = torch.zeros(1, H, W, dtype=torch.bool)
    exclude[0, 5, 13] = True  # one pixel poisons its whole cell (1, 3)
    mem = LatentSpatialMemory(C, dtype=torch.float32)
    assert mem.insert(latents, depth, cams, exclude=exclude) == h * w - 1
    assert not mem.read(cams).mask[0, 0, 1, 3]


def test_empty_memory_reads_zero(gen):
    mem = LatentSpatialMemory(C)
    cams = random_cameras(gen, 2, H, W)
    with pytest.raises(ValueError, match="latent_hw"):
        mem.read(cams)
    out = mem.read(cams, latent_hw=(h, w))
    assert out.latents.shape == (2, C, h, w) and not out.mask.any()


def _loop_poses(n):
    """Out along a short arc and back over the same poses."""
    out = [pose(rotation(0.04 * k), [0.05 * k, 0, 0]) for k in range(n)]
    return out + out[::-1]


def test_fusion_loop_adds_nothing_on_the_way_back(gen):
    K = intrinsics(H, W)
    mem = LatentSpatialMemory(C, voxel_size=0.05)
    poses = _loop_poses(6)
    added = []
    for c2w in poses:
        cam = Cameras(K, c2w, H, W)
        z = 2 + 0.5 * torch.sin(torch.linspace(0, 6, W)).expand(1, H, W)  # fixed wavy wall
        added.append(mem.insert(torch.randn(1, C, h, w, generator=gen), z, cam))
    outbound, back = sum(added[:6]), sum(added[6:])
    assert back == 0, "exact revisits must not grow the cache"
    assert mem.num_points == outbound


def test_fusion_bound_under_pose_jitter(gen):
    # Revisiting a wall with 1 mm / 0.3 mrad of pose noise (voxel 5 cm) adds at most 10 % new
    # points. The bound is geometric: a point moves ~1.6 mm, so it leaves its voxel through an
    # x or y face with probability about (1.6 + 1.6) / 50 = 6.4 %; the wall sits mid-voxel in z.
    hh, ww = 24, 40
    K = intrinsics(hh * s, ww * s)
    mem = LatentSpatialMemory(C, voxel_size=0.05)
    depth = torch.full((1, hh * s, ww * s), 2.025)
    cam = Cameras(K, torch.eye(4), hh * s, ww * s)
    first = mem.insert(torch.randn(1, C, hh, ww), depth, cam)
    jitter = pose(rotation(0.0003, -0.0003), [0.001, -0.001, 0.0005])
    again = mem.insert(torch.randn(1, C, hh, ww), depth, Cameras(K, jitter, hh * s, ww * s))
    assert first > 0.8 * hh * ww and again <= 0.10 * first


def test_fusion_latest_wins_and_mean_averages():
    K = intrinsics(H, W)
    cam = Cameras(K, torch.eye(4), H, W)
    depth = torch.full((1, H, W), 2.0)
    a, b = torch.zeros(1, C, h, w), torch.ones(1, C, h, w)
    latest = LatentSpatialMemory(C, voxel_size=0.01, dtype=torch.float32)
    mean = LatentSpatialMemory(C, voxel_size=0.01, dtype=torch.float32, fusion="mean")
    for mem in (latest, mean):
        mem.insert(a, depth, cam)
        mem.insert(b, depth, cam)
        mem.insert(b, depth, cam)
        assert mem.num_points == h * w and torch.all(mem.counts == 3)
    assert torch.all(latest.read(cam).latents == 1.0)
    torch.testing.assert_close(mean.read(cam).latents, torch.full((1, C, h, w), 2 / 3))


def test_nbytes_counts_positions_and_stored_latents(gen):
    latents, depth, cams = _observation(gen)
    mem = LatentSpatialMemory(C, dtype=torch.bfloat16)
    n = mem.insert(latents, depth, cams)
    assert mem.nbytes == n * (3 * 4 + C * 2)


def test_save_load_round_trip_and_refusals(gen, tmp_path):
    latents, depth, cams = _observation(gen)
    mem = LatentSpatialMemory(C, voxel_size=0.02)
    mem.insert(latents, depth, cams)
    path = tmp_path / "m.safetensors"
    mem.save(path)
    back = LatentSpatialMemory.load(path)
    assert torch.equal(back.positions, mem.positions) and torch.equal(back.features, mem.features)
    assert back.config() == mem.config()
    assert back.insert(latents, depth, cams) == 0  # voxel index rebuilt on load
    assert list(tmp_path.iterdir()) == [path]  # no temp files left behind

    from safetensors.torch import save_file

    save_file({"positions": mem.positions}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="not a Mirage latent memory"):
        LatentSpatialMemory.load(tmp_path / "other.safetensors")
    meta = {"format": "mirage.latent_spatial_memory", "version": "99", "config": "{}"}
    save_file({"positions": mem.positions}, tmp_path / "v99.safetensors", metadata=meta)
    with pytest.raises(ValueError, match="version '99'"):
        LatentSpatialMemory.load(tmp_path / "v99.safetensors")
    meta["version"] = "1"
    save_file({"positions": mem.positions}, tmp_path / "part.safetensors", metadata=meta)
    with pytest.raises(ValueError, match=r"lacks the tensors \['counts', 'features'\]"):
        LatentSpatialMemory.load(tmp_path / "part.safetensors")
    with pytest.raises(FileNotFoundError):
        LatentSpatialMemory.load(tmp_path / "missing.safetensors")


def test_export_ply_writes_every_point(gen, tmp_path):
    latents, depth, cams = _observation(gen)
    mem = LatentSpatialMemory(C)
    mem.insert(latents, depth, cams)
    path = tmp_path / "m.ply"
    mem.export_ply(path)
    raw = path.read_bytes()
    header, body = raw.split(b"end_header\n", 1)
    assert f"element vertex {mem.num_points}".encode() in header
    assert len(body) == mem.num_points * 15
    x, y, z = struct.unpack("<fff", body[:12])
    torch.testing.assert_close(torch.tensor([x, y, z]), mem.positions[0])


def _bad_inputs(gen):
    latents, depth, cams = _observation(gen)
    nan = depth.clone()
    nan[0, 0, 0] = float("nan")
    yield "NaN", (latents, nan, cams, None)
    yield ">= 0", (latents, -depth, cams, None)
    yield "must hold 1 frames", (latents[:1], depth, cams, None)
    yield "channels", (latents[:, :3], depth, cams, None)
    yield "integer multiple", (latents[..., :7], depth, cams, None)
    yield "exclude", (latents, depth, cams, torch.zeros(2, H, W - 1, dtype=torch.bool))
    yield "bool", (latents, depth, cams, torch.zeros(2, H, W))
    yield "belong to", (latents, depth, cams.scaled(0.5), None)


def test_bad_input_raises_before_any_work(gen):
    mem = LatentSpatialMemory(C)
    for match, (lat, dep, cams, ex) in _bad_inputs(gen):
        with pytest.raises(ValueError, match=match):
            mem.insert(lat, dep, cams, exclude=ex)
        assert mem.num_points == 0 and mem.latent_hw is None
