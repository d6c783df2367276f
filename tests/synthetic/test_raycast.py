"""The ray-caster against closed forms: exact z-depth, sky, multi-view colour, moving objects."""

import math

import pytest
import torch

from mirage.geometry import Cameras, backproject, project
from mirage.synthetic import Material, Scene, intrinsics, look_at, make_scene

PLAIN = Material("checker", ((0.5, 0.5, 0.5),) * 3, 1.0, (1, 0, 0, 0, 1, 0, 0, 0, 1), (0.5,) * 3)


def empty_scene(room=((-4.0, 0.0, -4.0), (4.0, 3.0, 3.0))) -> Scene:
    """A room (or, with room=None, the bare ground and sky) holding nothing else."""
    return Scene(
        seed=0,
        kind="indoor" if room else "outdoor",
        room=room,
        boxes=torch.zeros(0, 2, 3),
        box_mat=[],
        spheres=torch.zeros(0, 4),
        sphere_mat=[],
        cylinders=torch.zeros(0, 5),
        cylinder_mat=[],
        surface_mat=[0] * (6 if room else 1),
        materials=[PLAIN],
        landmarks=[("x", (0.0, 1.0, 1.0))],
    )


def camera(eye, target, H=48, W=64, fov=60.0) -> Cameras:
    return Cameras(
        intrinsics(H, W, fov)[None], look_at(torch.tensor(eye), torch.tensor(target))[None], H, W
    )


def test_facing_wall_depth_is_exact_z_depth_not_ray_length():
    # Camera at z = 0 looking down +z at the wall z = 3: every pixel's z-depth is 3 exactly,
    # while the ray length at the corners is 3 sqrt(1 + x^2 + y^2), about 17 % more.
    out = empty_scene().render(camera((0.0, 1.5, 0.0), (0.0, 1.5, 1.0)))
    assert out.depth.shape == (1, 48, 64)
    torch.testing.assert_close(out.depth, torch.full((1, 48, 64), 3.0), atol=1e-6, rtol=0)
    assert not out.sky_mask.any() and not out.dynamic_mask.any()


def test_oblique_wall_depth_matches_closed_form_at_pixel_centres():
    # Yawed 35 degrees: the wall z = 3 is oblique. Reference in float64 per pixel: the point
    # where the ray through (j + .5, i + .5) meets the wall, its ray length L, and z-depth
    # L cos(angle to the optical axis).
    H, W = 24, 32
    yaw = math.radians(35)
    eye = (0.5, 1.5, 0.0)
    cams = camera(eye, (0.5 + math.sin(yaw), 1.5, math.cos(yaw)), H, W, fov=50.0)
    out = empty_scene().render(cams)
    K, c2w = cams.K[0].double(), cams.c2w[0].double()
    ref = torch.empty(H, W, dtype=torch.float64)
    for i in range(H):
        for j in range(W):
            ray = torch.tensor([(j + 0.5 - K[0, 2]) / K[0, 0], (i + 0.5 - K[1, 2]) / K[1, 1], 1.0])
            dirn = c2w[:3, :3] @ (ray / ray.norm())  # unit direction in the world
            L = (3.0 - eye[2]) / dirn[2]
            ref[i, j] = L * (dirn @ c2w[:3, 2])  # ray length times cos(angle to the axis)
    wall = out.prim[0] == 5  # the +z wall; the rest of the view sees the side wall or floor
    assert wall.float().mean() > 0.5
    torch.testing.assert_close(out.depth[0][wall].double(), ref[wall], atol=2e-5, rtol=1e-5)
    shifted = ref.clone()  # the convention matters: rays through (j, i) would be off
    assert (out.depth[0][wall].double() - shifted.roll(1, 1)[wall]).abs().max() > 1e-3


def test_sphere_in_front_has_depth_distance_minus_radius():
    scene = empty_scene()
    scene.spheres = torch.tensor([[0.0, 1.5, 2.0, 0.5]])
    scene.sphere_mat = [0]
    out = scene.render(camera((0.0, 1.5, 0.0), (0.0, 1.5, 1.0), 33, 33))
    assert out.depth[0, 16, 16] == pytest.approx(1.5, abs=1e-6)  # the centre pixel is on-axis
    assert out.prim[0, 16, 16] == 6  # first primitive after the six room faces


def test_ground_depth_closed_form_and_sky_above_horizon():
    # Level camera 1.6 m above the ground: a pixel row with y = (v - cy) / fy > 0 sees the
    # ground at z-depth 1.6 / y exactly; rows above the horizon see sky (+inf, mask true).
    H, W = 20, 16
    cams = camera((0.0, 1.6, 0.0), (0.0, 1.6, 5.0), H, W, fov=70.0)
    out = empty_scene(room=None).render(cams)
    K = cams.K[0]
    y = (torch.arange(H) + 0.5 - K[1, 2]) / K[1, 1]
    below = y > 0
    expected = (1.6 / y[below]).double()[:, None].expand(-1, W)
    torch.testing.assert_close(out.depth[0][below].double(), expected, rtol=2e-6, atol=0)
    assert out.sky_mask[0][~below].all() and torch.isinf(out.depth[0][~below]).all()
    assert not out.sky_mask[0][below].any()


def test_same_seed_same_scene_bit_for_bit():
    a, b, c = make_scene(7, "indoor", 2), make_scene(7, "indoor", 2), make_scene(8, "indoor", 2)
    assert a.materials == b.materials and torch.equal(a.boxes, b.boxes)
    cams = a.start_camera(24, 32)
    ra, rb = a.render(cams), b.render(cams)
    for name in ("rgb", "depth", "dynamic_mask", "sky_mask"):
        assert torch.equal(getattr(ra, name), getattr(rb, name)), name
    rc = c.render(cams)
    assert not torch.equal(ra.rgb, rc.rgb)
    o1, o2 = make_scene(3, "outdoor"), make_scene(3, "outdoor")
    cams = o1.start_camera(24, 32)
    assert torch.equal(o1.render(cams).rgb, o2.render(cams).rgb)


@pytest.mark.parametrize("kind", ["indoor", "outdoor"])
def test_scenes_are_richly_textured(kind):
    # A model must be able to remember what it saw: many distinct colours in one view.
    scene = make_scene(11, kind)
    out = scene.render(scene.start_camera(48, 64))
    colours = (out.rgb[0] * 31).round().flatten(1).T.unique(dim=0)
    assert len(colours) > 40
    assert out.rgb.std() > 0.08
    assert torch.isfinite(out.depth[~out.sky_mask]).all() and (out.depth[~out.sky_mask] > 0).all()


def test_multi_view_colours_agree_where_visible():
    # Back-project view A with its depth, project into view B; where B sees the same point
    # (its depth agrees within 1 %), the colours must agree: at least 93 % of such pixels
    # within 0.04 per channel (the rest sit on texture edges, sampled half a pixel apart).
    scene = make_scene(5, "indoor")
    A = scene.start_camera(72, 96)
    c2w_b = A.c2w.clone()
    yaw = torch.tensor(math.radians(8.0))
    Ry = torch.tensor(
        [[torch.cos(yaw), 0, torch.sin(yaw)], [0, 1, 0], [-torch.sin(yaw), 0, torch.cos(yaw)]]
    )
    c2w_b[0, :3, :3] = A.c2w[0, :3, :3] @ Ry
    c2w_b[0, :3, 3] += A.c2w[0, :3, :3] @ torch.tensor([0.25, -0.05, 0.15])
    B = Cameras(A.K, c2w_b, A.height, A.width)
    ra, rb = scene.render(A), scene.render(B)
    pts = backproject(ra.depth, A.K, A.c2w).reshape(-1, 3)
    uv, z = project(pts, B.K, B.w2c)
    u, v, z = uv[0, :, 0], uv[0, :, 1], z[0]
    inside = (z > 0) & (u >= 0) & (u < B.width) & (v >= 0) & (v < B.height)
    col, row = u.clamp(0, B.width - 1).long(), v.clamp(0, B.height - 1).long()
    visible = inside & ((rb.depth[0, row, col] - z).abs() < 0.01 * z)
    assert visible.float().mean() > 0.5
    diff = (ra.rgb[0].reshape(3, -1).T - rb.rgb[0][:, row, col].T).abs().amax(1)
    agree = (diff[visible] < 0.04).float().mean()
    assert agree > 0.93, f"only {agree:.3f} of visible pixels agree"
    # and the check has teeth: against the wrong view's pixels it fails
    wrong = (ra.rgb[0].reshape(3, -1).T - rb.rgb[0][:, (row + 7) % B.height, col].T).abs().amax(1)
    assert (wrong[visible] < 0.04).float().mean() < 0.8


def _circle_or_line(obj, t: float):
    """The analytic centre of a moving object, written out independently of the library."""
    p = obj.params
    if obj.path == "circle":
        cx, cz, r, w, ph, y = p
        return torch.tensor(
            [cx + r * math.cos(w * t + ph), y, cz + r * math.sin(w * t + ph)], dtype=torch.float64
        )
    a, b, speed = (
        torch.tensor(p[0:3], dtype=torch.float64),
        torch.tensor(p[3:6], dtype=torch.float64),
        p[6],
    )
    s = (t * speed / float((b - a).norm())) % 2.0
    s = s if s <= 1 else 2 - s
    return a + s * (b - a)


def _ray_hits(obj, centre, o, d):  # float64 rays [N,3] -> t [N] (inf where missed), margin [N]
    if obj.shape == "sphere":
        oc = o - centre
        a, b, c = (d * d).sum(1), (d * oc).sum(1), (oc * oc).sum(1) - obj.size**2
        disc = b * b - a * c
        t = (-b - disc.clamp_min(0).sqrt()) / a
        return torch.where(disc >= 0, t, math.inf), disc.abs() / (a * obj.size**2)
    lo, hi = centre - obj.size, centre + obj.size
    t1, t2 = (lo - o) / d, (hi - o) / d
    near, far = torch.minimum(t1, t2).amax(1), torch.maximum(t1, t2).amin(1)
    return torch.where(near <= far, near, math.inf), (far - near).abs() / near.abs()


def test_dynamic_objects_move_and_masks_cover_them_exactly():
    scene = make_scene(2, "indoor", num_dynamic=2)
    times = torch.tensor([0.0, 6.0, 12.0])
    # a static camera looking at the first mover's position at t = 0
    target = _circle_or_line(scene.dynamic[0], 0.0).float()
    eye = torch.tensor([target[0] + 1.8, 1.6, target[2] + 1.8])
    H, W = 48, 64
    cams = Cameras(
        intrinsics(H, W, 70.0)[None].expand(3, 3, 3),
        look_at(eye, target)[None].expand(3, 4, 4),
        H,
        W,
    )
    out = scene.render(cams, times)
    assert out.dynamic_mask[0].sum() > 30
    assert not torch.equal(out.dynamic_mask[0], out.dynamic_mask[1])  # it moved
    # the mask is exactly the set of pixels whose nearest hit is a mover at its analytic place
    K, c2w = cams.K[0].double(), cams.c2w[0].double()
    jj, ii = torch.meshgrid(
        torch.arange(W, dtype=torch.float64), torch.arange(H, dtype=torch.float64), indexing="xy"
    )
    rays = torch.stack(
        [(jj + 0.5 - K[0, 2]) / K[0, 0], (ii + 0.5 - K[1, 2]) / K[1, 1], torch.ones_like(jj)], -1
    )
    d = rays.reshape(-1, 3) @ c2w[:3, :3].T
    o = c2w[:3, 3].expand_as(d)
    for f, t in enumerate(times.tolist()):
        depth = out.depth[f].reshape(-1).double()
        ref = torch.zeros(H * W, dtype=torch.bool)
        ambiguous = torch.zeros(H * W, dtype=torch.bool)
        for obj in scene.dynamic:
            tk, margin = _ray_hits(obj, _circle_or_line(obj, t), o, d)
            # float32 hits are good to ~1e-4 relative near the silhouette; anything static
            # in front would be closer by more than that
            ref |= torch.isfinite(tk) & (tk <= depth * (1 + 1e-3))
            ambiguous |= torch.isfinite(tk) & (margin < 1e-4)  # grazing rays at the silhouette
        mask = out.dynamic_mask[f].reshape(-1)
        assert torch.equal(mask[~ambiguous], ref[~ambiguous]), f"frame {f}"
        assert ambiguous.sum() <= 2
    # static pixels (no mover in either frame) do not change under a static camera
    static = ~out.dynamic_mask[0] & ~out.dynamic_mask[2]
    assert torch.equal(out.rgb[0][:, static], out.rgb[2][:, static])
    assert torch.equal(out.depth[0][static], out.depth[2][static])
    assert not torch.equal(out.rgb[0], out.rgb[2])


def test_render_rejects_bad_times():
    scene = make_scene(0)
    cams = scene.start_camera(8, 8)
    with pytest.raises(ValueError, match="times"):
        scene.render(cams, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="kind"):
        make_scene(0, "underwater")


def test_free_space_excludes_walls_and_solids():
    scene = empty_scene()
    scene.boxes = torch.tensor([[[1.0, 0.0, 1.0], [2.0, 1.0, 2.0]]])
    scene.box_mat = [0]
    scene.spheres = torch.tensor([[-2.0, 1.0, 0.0, 0.5]])
    scene.sphere_mat = [0]
    pts = torch.tensor(
        [
            [0.0, 1.5, 0.0],  # room centre: free
            [1.5, 0.5, 1.5],  # inside the box
            [1.5, 1.1, 1.5],  # 0.1 above the box: within the margin
            [-2.0, 1.0, 0.6],  # inside the sphere's margin
            [0.0, 1.5, 2.9],  # 0.1 from the wall z = 3
            [0.0, 1.5, 5.0],  # outside the room
            [1.5, 1.5, 1.5],  # 0.5 above the box: free
        ]
    )
    assert scene.free(pts, margin=0.2).tolist() == [True, False, False, False, False, False, True]
    for seed in range(6):  # start cameras are placed in free space
        s = make_scene(seed, "indoor" if seed % 2 else "outdoor")
        assert s.free(s.start_camera(8, 8, seed=seed).centers).all()


def test_bounding_box_culling_matches_testing_every_pixel(monkeypatch):
    # The fast path tests each primitive only inside its projected bounding rectangle; the
    # slow twin tests every primitive at every pixel. Results must be identical bit for bit.
    from mirage.data import make_trajectory
    from mirage.synthetic import raycast

    cases = []
    for seed, kind in ((1, "indoor"), (2, "outdoor")):
        scene = make_scene(seed, kind, num_dynamic=2)
        start = scene.start_camera(40, 56, fov_deg=90.0)
        cams = make_trajectory("random_walk", start, 6, seed=seed, bounds=scene.bounds, step=1.0)
        box = scene.boxes[0]  # and a camera right next to a box, looking along its face
        eye = torch.stack([box[1, 0] + 0.05, box[1, 1] * 0.5, (box[0, 2] + box[1, 2]) / 2])
        near = Cameras(start.K, look_at(eye, eye + torch.tensor([0.3, 0.0, 1.0]))[None], 40, 56)
        cases.append((scene, Cameras.cat([cams, near])))
    fast = [scene.render(cams, torch.linspace(0, 30, len(cams))) for scene, cams in cases]

    def every_pixel(aabbs, K, w2c, H, W):
        return [[0, H, 0, W]] * len(aabbs)

    monkeypatch.setattr(raycast, "_rects", every_pixel)
    for (scene, cams), f in zip(cases, fast, strict=True):
        slow = scene.render(cams, torch.linspace(0, 30, len(cams)))
        assert torch.equal(f.prim, slow.prim) and torch.equal(f.depth, slow.depth)
        assert torch.equal(f.rgb, slow.rgb)
