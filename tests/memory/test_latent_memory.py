"""LatentSpatialMemory: read-back, closed-form views, fusion, persistence and bad input."""

import json
import struct

import pytest
import torch
from camera_factory import intrinsics, pose, random_cameras, rotation

from mirage.geometry import Cameras
from mirage.memory import FOOTPRINT, LatentSpatialMemory
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


@pytest.mark.parametrize("voxel_size", [0.01, FOOTPRINT])
def test_fusion_latest_wins_mean_averages_first_keeps(voxel_size):
    K = intrinsics(H, W)
    cam = Cameras(K, torch.eye(4), H, W)
    depth = torch.full((1, H, W), 2.0)
    a, b = torch.zeros(1, C, h, w), torch.ones(1, C, h, w)
    mems = {f: LatentSpatialMemory(C, voxel_size=voxel_size, dtype=torch.float32, fusion=f)
            for f in ("latest", "mean", "first")}  # fmt: skip
    for mem in mems.values():
        mem.insert(a, depth, cam)
        mem.insert(b, depth, cam)
        mem.insert(b, depth, cam)
        assert mem.num_points == h * w and torch.all(mem.counts == 3)
    assert torch.all(mems["latest"].read(cam).latents == 1.0)
    torch.testing.assert_close(mems["mean"].read(cam).latents, torch.full((1, C, h, w), 2 / 3))
    first = mems["first"].read(cam)
    assert first.mask.all() and torch.all(first.latents == 0.0)  # read, not an empty cell


def test_farther_surface_never_replaces_a_nearer_one_in_a_voxel():
    # A panel (z = 2, x < 0) in front of a wall (z = 2.9); 1-unit voxels hold both. View A sees
    # the panel head-on. View B, moved 0.6 right, has no depth on the panel (say its estimate
    # failed there) but sees past the panel's edge into the wall: its wall cell at x = -0.125
    # lands in the voxel of A's panel cell. Every panel cell must still read the panel.
    K = torch.tensor([[2.0 * s, 0, W / 2], [0, 2.0 * s, H / 2], [0, 0, 1]])  # 2 cells per unit
    a, b = Cameras(K, torch.eye(4), H, W), Cameras(K, pose(torch.eye(3), [0.6, 0, 0]), H, W)
    u = (torch.arange(W) + 0.5 - W / 2) / (2.0 * s)  # x / z of each pixel column
    panel_a = (2.0 * u < 0).expand(1, H, W)
    panel_b = (0.6 + 2.0 * u < 0).expand(1, H, W)  # B's rays that hit the panel first
    panel_cells = torch.arange(w) < w // 2
    lat_a = torch.where(panel_cells, 0.0, 1.0).expand(1, C, h, w)  # 0 = panel, 1 = wall
    for fusion in ("latest", "mean", "first"):
        mem = LatentSpatialMemory(C, voxel_size=1.0, dtype=torch.float32, fusion=fusion)
        mem.insert(lat_a, torch.where(panel_a, 2.0, 2.9), a)
        mem.insert(torch.ones(1, C, h, w), torch.where(panel_b, 0.0, 2.9), b)
        out = mem.read(a)
        assert torch.all(out.latents[0, 0][:, panel_cells] == 0), fusion
        assert torch.all(out.depth[0, 0][:, panel_cells] == 2.0), fusion
        assert torch.all(out.latents[0, 0][:, ~panel_cells] == 1), fusion


def test_mean_fusion_in_bf16_converges_to_the_mean():
    # 300 observations of 1.0 then 300 of 2.0: a bf16 running mean stalls at 1.0 (1/n rounds
    # away); the float32 accumulator reaches 1.5.
    K = intrinsics(H, W)
    cam = Cameras(K, torch.eye(4), H, W)
    depth = torch.full((1, H, W), 2.0)
    mem = LatentSpatialMemory(C, voxel_size=0.01, dtype=torch.bfloat16, fusion="mean")
    for value in [1.0] * 300 + [2.0] * 300:
        mem.insert(torch.full((1, C, h, w), value), depth, cam)
    assert torch.all(mem.counts == 600)
    assert torch.all(mem.read(cam).latents == 1.5)  # 1.5 is exact in bf16


def test_footprint_fusion_revisit_adds_nothing_and_read_is_unchanged(gen):
    K = intrinsics(H, W)
    mem = LatentSpatialMemory(C, voxel_size="footprint", dtype=torch.float32)
    z = 2 + 0.5 * torch.sin(torch.linspace(0, 6, W)).expand(1, H, W)
    poses = _loop_poses(5)
    added = [mem.insert(torch.randn(1, C, h, w, generator=gen), z, Cameras(K, c, H, W))
             for c in poses]  # fmt: skip
    assert sum(added[5:]) == 0 and mem.num_points == sum(added[:5])
    # one point per voxel: never more points than cells inserted, and at least one per view
    assert h * w <= mem.num_points <= 5 * h * w


def test_nbytes_counts_positions_and_stored_latents(gen):
    latents, depth, cams = _observation(gen)
    mem = LatentSpatialMemory(C, dtype=torch.bfloat16)  # appending: no running means
    n = mem.insert(latents, depth, cams)
    assert mem.nbytes == n * (3 * 4 + C * 2)
    # fused means keep a float32 copy of every latent, and it counts
    for fusion, per_point in (("mean", 3 * 4 + C * 2 + C * 4), ("latest", 3 * 4 + C * 2)):
        mem = LatentSpatialMemory(C, voxel_size=FOOTPRINT, dtype=torch.bfloat16, fusion=fusion)
        n = mem.insert(latents, depth, cams)
        assert mem.nbytes == n * per_point


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
    with pytest.raises(ValueError, match="not a mirage.latent_spatial_memory file"):
        LatentSpatialMemory.load(tmp_path / "other.safetensors")
    meta = {"format": "mirage.latent_spatial_memory", "version": "99", "config": "{}"}
    save_file({"positions": mem.positions}, tmp_path / "v99.safetensors", metadata=meta)
    with pytest.raises(ValueError, match="version '99'"):
        LatentSpatialMemory.load(tmp_path / "v99.safetensors")
    meta["version"] = "1"
    with pytest.raises(ValueError, match="unreadable memory config"):
        save_file({"positions": mem.positions}, tmp_path / "cfg.safetensors", metadata=meta)
        LatentSpatialMemory.load(tmp_path / "cfg.safetensors")
    meta["config"] = json.dumps(mem.config())
    save_file({"positions": mem.positions}, tmp_path / "part.safetensors", metadata=meta)
    with pytest.raises(ValueError, match=r"lacks the tensors \['counts', 'features'\]"):
        LatentSpatialMemory.load(tmp_path / "part.safetensors")
    # truncated, random and non-finite files: one ValueError each, nothing loaded
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:200])
    (tmp_path / "noise.safetensors").write_bytes(bytes(range(256)) * 8)
    for name in ("cut", "noise"):
        with pytest.raises(ValueError, match="not a readable safetensors file"):
            LatentSpatialMemory.load(tmp_path / f"{name}.safetensors")
    mem.positions[0, 0] = float("nan")
    mem.save(tmp_path / "nan.safetensors")
    with pytest.raises(ValueError, match=r"non-finite values in \['positions'\]"):
        LatentSpatialMemory.load(tmp_path / "nan.safetensors")
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


@pytest.mark.parametrize("voxel_size,fusion", [("footprint", "mean"), (0.05, "mean")])
def test_fused_memory_round_trips_and_keeps_fusing(gen, tmp_path, voxel_size, fusion):
    latents, depth, cams = _observation(gen)
    mem = LatentSpatialMemory(C, voxel_size=voxel_size, fusion=fusion)
    mem.insert(latents, depth, cams)
    mem.save(tmp_path / "m.safetensors")
    back = LatentSpatialMemory.load(tmp_path / "m.safetensors")
    assert torch.equal(back.means, mem.means) and back.config() == mem.config()
    assert back.nbytes == mem.nbytes == mem.num_points * (3 * 4 + C * 2 + C * 4)
    mem.insert(latents + 1, depth, cams)
    back.insert(latents + 1, depth, cams)  # same state, same next step
    assert torch.equal(back.features, mem.features) and torch.equal(back.counts, mem.counts)


def test_factory_makes_each_kind_and_no_memory_sees_nothing():
    from mirage.memory import LatentSpatialMemory as L
    from mirage.memory import NoMemory, Observation, RGBPointCache, SpatialMemory, make_memory

    enc = lambda x: torch.zeros(len(x), C, h, w)  # noqa: E731
    kinds = {k: make_memory(k, C, encode=enc) for k in ("latent", "rgb", "none")}
    assert isinstance(kinds["latent"], L) and kinds["latent"].voxel_size == "footprint"
    assert isinstance(kinds["rgb"], RGBPointCache) and isinstance(kinds["none"], NoMemory)
    assert all(isinstance(m, SpatialMemory) for m in kinds.values())
    cams = Cameras(intrinsics(H, W), torch.eye(4), H, W)
    obs = Observation(
        torch.rand(1, 3, H, W), torch.randn(1, C, h, w), torch.full((1, H, W), 2.0), cams
    )
    assert kinds["none"].observe(obs) == 0 and kinds["latent"].observe(obs) == h * w
    assert kinds["rgb"].observe(obs) == H * W
    out = kinds["none"].read(cams)
    assert not out.mask.any() and out.latents.shape == (1, C, h, w) and not out.latents.any()
    with pytest.raises(ValueError, match="one of"):
        make_memory("voxels", C)
    with pytest.raises(ValueError, match="needs `encode`"):
        make_memory("rgb", C)
