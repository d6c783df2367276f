"""Sub-cell reads of the latent memory against a plain-loop reference and closed-form views."""

import pytest
import torch
from camera_factory import intrinsics, pose, random_cameras

from mirage.geometry import Cameras
from mirage.memory import FOOTPRINT, LatentSpatialMemory

C, s, h, w = 5, 4, 3, 4
H, W = h * s, w * s


def _median_lower(values: list[float]) -> float:
    good = sorted(v for v in values if 0 < v < float("inf"))
    return good[(len(good) - 1) // 2]


def _reference_read(latents, depth, cams, targets, r):
    """Plain loops: lift every valid cell's r x r sub-cell centres (own median depth, the
    cell's where the sub-block has fewer than half valid pixels), z-buffer them per target on
    the r-times finer grid (floor of the projection, smallest z wins), average each cell's
    visible sub-cells' latents and depths; a cell shows when at least half are visible."""
    q = s // r
    subs = []  # (world point, latent)
    for t in range(len(cams)):
        K, c2w = cams.K[t].double(), cams.c2w[t].double()
        for i in range(h):
            for j in range(w):
                cell = depth[t, i * s : (i + 1) * s, j * s : (j + 1) * s].flatten().tolist()
                if 2 * sum(0 < v < float("inf") for v in cell) < s * s:
                    continue  # an invalid cell stores nothing
                for a in range(r):
                    for b in range(r):
                        y0, x0 = i * s + a * q, j * s + b * q
                        block = depth[t, y0 : y0 + q, x0 : x0 + q].flatten().tolist()
                        ok = 2 * sum(0 < v < float("inf") for v in block) >= q * q
                        z = _median_lower(block if ok else cell)
                        u, v = x0 + q / 2, y0 + q / 2  # pixel centre of the sub-cell
                        ray = torch.linalg.solve(K, torch.tensor([u, v, 1.0], dtype=torch.float64))
                        p = c2w[:3, :3] @ (ray * z) + c2w[:3, 3]
                        subs.append((p, latents[t, :, i, j].double()))
    out = torch.zeros(len(targets), C, h, w, dtype=torch.float64)
    mask = torch.zeros(len(targets), h, w, dtype=torch.bool)
    depth_out = torch.zeros(len(targets), h, w, dtype=torch.float64)
    for t in range(len(targets)):
        K, w2c = targets.K[t].double(), torch.linalg.inv(targets.c2w[t].double())
        best = {}  # sub-grid cell -> (z, latent)
        for p, lat in subs:
            x = w2c[:3, :3] @ p + w2c[:3, 3]
            if x[2] <= 0:
                continue
            uv = K @ (x / x[2])
            col, row = int(uv[0] // q), int(uv[1] // q)
            if not (0 <= row < h * r and 0 <= col < w * r):
                continue
            if (row, col) not in best or x[2] < best[row, col][0]:
                best[row, col] = (x[2], lat)
        for i in range(h):
            for j in range(w):
                seen = [best[i * r + a, j * r + b] for a in range(r) for b in range(r)
                        if (i * r + a, j * r + b) in best]  # fmt: skip
                if 2 * len(seen) >= r * r:
                    mask[t, i, j] = True
                    out[t, :, i, j] = torch.stack([lat for _, lat in seen]).mean(0)
                    depth_out[t, i, j] = sum(z for z, _ in seen) / len(seen)
    return out, mask, depth_out


@pytest.mark.parametrize("r", [2, 4])
def test_read_matches_plain_loop_reference(gen, r):
    cams = random_cameras(gen, 2, H, W)
    latents = torch.randn(2, C, h, w, generator=gen)
    depth = 1 + 3 * torch.rand(2, H, W, generator=gen)
    depth[:, :2, :3] = 0.0  # sub-blocks without depth inside a valid cell
    targets = random_cameras(gen, 3, H, W, spread=0.2)
    mem = LatentSpatialMemory(C, dtype=torch.float32, subcells=r)  # appending
    mem.insert(latents, depth, cams)
    got = mem.read(targets)
    want, mask, want_depth = _reference_read(latents, depth, cams, targets, r)
    assert mask.any() and not mask.all()
    assert torch.equal(got.mask[:, 0], mask)
    torch.testing.assert_close(got.latents.double(), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.depth[:, 0].double(), want_depth, atol=1e-5, rtol=1e-5)
    depth_again, mask_again = mem.read_depth(targets)
    assert torch.equal(mask_again, got.mask) and torch.equal(depth_again, got.depth)


def test_exact_revisit_reads_the_latents_and_half_cell_shift_mixes_neighbours():
    # Fronto-parallel plane at Z = 2, 4 latent cells per unit at Z = 1: a 0.25 shift right
    # moves the image by half a cell, so each cell sees half of each of two neighbours.
    K = torch.tensor([[4.0 * s, 0, W / 2], [0, 4.0 * s, H / 2], [0, 0, 1]])
    a = Cameras(K, torch.eye(4), H, W)
    lat = torch.randn(1, C, h, w)
    mem = LatentSpatialMemory(C, voxel_size=FOOTPRINT, dtype=torch.float32, subcells=2)
    mem.insert(lat, torch.full((1, H, W), 2.0), a)
    same = mem.read(a)
    assert same.mask.all()
    torch.testing.assert_close(same.latents, lat, atol=1e-6, rtol=0)  # the mean of 4 copies
    half = mem.read(Cameras(K, pose(torch.eye(3), [0.25, 0, 0]), H, W))
    mixed = (lat[0, :, :, :-1] + lat[0, :, :, 1:]) / 2
    torch.testing.assert_close(half.latents[0, :, :, : w - 1], mixed)
    assert half.mask[0, 0, :, : w - 1].all()
    assert half.mask[0, 0, :, w - 1].all()  # half its sub-cells: still shown, one latent
    torch.testing.assert_close(half.latents[0, :, :, w - 1], lat[0, :, :, w - 1])


def _plane_subpoints(z: float, K: torch.Tensor) -> torch.Tensor:
    """Closed form: the 2x2 sub-cell centres of every cell of a fronto-parallel plane at depth
    z seen by an identity camera, [h*w, 4, 3] (cells and sub-cells row-major)."""
    q = s // 2
    v, u = torch.meshgrid(torch.arange(2 * h) * q + q / 2, torch.arange(2 * w) * q + q / 2,
                          indexing="ij")  # fmt: skip
    x, y = (u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z
    pts = torch.stack([x, y, torch.full_like(x, z)], -1)  # [2h,2w,3]
    return pts.view(h, 2, w, 2, 3).permute(0, 2, 1, 3, 4).reshape(h * w, 4, 3)


def test_fused_sub_cells_follow_the_latent_positions_stay(tmp_path):
    # The same camera sees a plane at depth 2, then at 2.2 (the same surface within 20 %):
    # "latest" takes the second view's sub-cells, "mean" their mean (the plane at 2.1); the
    # points' own positions, what fusion compares, stay at depth 2.
    K = intrinsics(H, W)
    cam = Cameras(K[None], torch.eye(4)[None], H, W)
    lat = torch.randn(2, C, h, w)
    for fusion, z_sub in (("latest", 2.2), ("mean", 2.1)):
        mem = LatentSpatialMemory(C, voxel_size=FOOTPRINT, dtype=torch.float32, fusion=fusion,
                                  subcells=2)  # fmt: skip
        for t, z in enumerate((2.0, 2.2)):
            mem.insert(lat[t : t + 1], torch.full((1, H, W), z), cam)
        assert mem.num_points == h * w
        torch.testing.assert_close(mem.subpoints, _plane_subpoints(z_sub, K), atol=1e-5, rtol=0)
        torch.testing.assert_close(mem.positions[:, 2], torch.full((h * w,), 2.0))
        assert mem.nbytes == h * w * (12 + 4 * C + 48 + (4 * C if fusion == "mean" else 0))
        mem.save(tmp_path / f"{fusion}.safetensors")
        again = LatentSpatialMemory.load(tmp_path / f"{fusion}.safetensors")
        assert again.subcells == 2 and torch.equal(again.subpoints, mem.subpoints)


def test_sub_cells_must_divide_the_cell():
    mem = LatentSpatialMemory(C, subcells=3)
    with pytest.raises(ValueError, match="must divide the latent cell's 4 pixels"):
        mem.insert(torch.zeros(1, C, h, w), torch.ones(1, H, W), Cameras(intrinsics(H, W)[None],
                   torch.eye(4)[None], H, W))  # fmt: skip
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="`subcells` must be a positive integer"):
            LatentSpatialMemory(C, subcells=bad)
