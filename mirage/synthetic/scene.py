"""The description of one world: its primitives, materials and moving objects, and cameras.

World frame: right-handed, +y is up, the floor (or the ground) is the plane y = 0, lengths
in metres. Cameras use the OpenCV frame (x right, y down, z forward) like the rest of the
repo; `look_at` builds such a camera-to-world pose. Scenes are generated in `generate`
(`make_scene`); `Scene.render` ray-casts them with `raycast.render`, which knows scenes only
by their fields, so the imports run one way: scene -> raycast -> textures.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch

from mirage.geometry import Cameras
from mirage.synthetic.raycast import render

KINDS = ("indoor", "outdoor")
WORLD_UP = (0.0, 1.0, 0.0)


@dataclass(frozen=True)
class DynamicObject:
    """A sphere or an axis-aligned cube moving on a seeded path; position(t) is analytic.

    path "circle": centre + radius (cos(w t + phase), 0, sin(w t + phase)) + (0, y, 0).
    path "line": back and forth between a and b (a triangle wave of period 2 * length / speed).
    """

    shape: str  # "sphere" | "box"
    size: float  # sphere radius, or half the side of the cube
    material: int
    path: str  # "circle" | "line"
    params: tuple  # circle: (cx, cz, radius, omega, phase, y); line: (a xyz, b xyz, speed)

    def position(self, times: torch.Tensor) -> torch.Tensor:  # [T] -> [T,3] float64
        t = times.to(torch.float64)
        if self.path == "circle":
            cx, cz, r, w, ph, y = self.params
            ang = w * t + ph
            return torch.stack(
                [cx + r * torch.cos(ang), torch.full_like(t, y), cz + r * torch.sin(ang)], -1
            )
        a = torch.tensor(self.params[0:3], dtype=torch.float64)
        b = torch.tensor(self.params[3:6], dtype=torch.float64)
        speed = self.params[6]
        length = float((b - a).norm())
        phase = (t * speed / length) % 2.0
        s = torch.where(phase <= 1.0, phase, 2.0 - phase)  # triangle wave in [0, 1]
        return a + s[:, None] * (b - a)


@dataclass
class Scene:
    """A procedural world. Render it with `render(cameras, times)`.

    Static geometry: `room` (lo, hi corners of the room box; indoor) or the ground plane y = 0
    with a sky at infinity (outdoor); axis-aligned `boxes` [B,2,3] (lo, hi); `spheres` [S,4]
    (centre, radius); vertical `cylinders` [C,5] (x, z, y0, y1, radius). Each primitive has a
    material index. `bounds` (lo [3], hi [3]) is the free region where cameras may move.
    """

    seed: int
    kind: str
    room: tuple | None  # (lo [3], hi [3]) or None outdoors
    boxes: torch.Tensor  # [B,2,3]
    box_mat: list
    spheres: torch.Tensor  # [S,4]
    sphere_mat: list
    cylinders: torch.Tensor  # [C,5]
    cylinder_mat: list
    surface_mat: list  # room faces (-x, +x, floor, ceiling, -z, +z) or [ground]
    materials: list
    dynamic: list = field(default_factory=list)
    landmarks: list = field(default_factory=list)  # (name, centre xyz) of paintings/doors/windows
    lights: tuple = ((0.4, 0.8, 0.3), (-0.5, 0.3, -0.7))
    sky: tuple = ((0.78, 0.86, 0.95), (0.25, 0.45, 0.85), (1.0, 0.95, 0.8))  # horizon, zenith, sun
    bounds: tuple = ((-1.0, 1.2, -1.0), (1.0, 2.0, 1.0))

    @property
    def num_dynamic(self) -> int:
        return len(self.dynamic)

    def free(self, points: torch.Tensor, margin: float = 0.2) -> torch.Tensor:  # [N,3] -> [N]
        """True where a camera may sit: inside the room (or above the ground) and at least
        `margin` metres outside every static solid. Moving objects are not considered."""
        p = torch.as_tensor(points, dtype=torch.float32).reshape(-1, 3)
        if self.room is not None:
            lo, hi = torch.tensor(self.room[0]), torch.tensor(self.room[1])
            ok = ((p > lo + margin) & (p < hi - margin)).all(1)
        else:
            ok = p[:, 1] > margin
        if len(self.boxes):
            inside = (p[:, None] > self.boxes[None, :, 0] - margin) & (
                p[:, None] < self.boxes[None, :, 1] + margin
            )
            ok &= ~inside.all(2).any(1)
        if len(self.spheres):
            dist = (p[:, None] - self.spheres[None, :, :3]).norm(dim=2)
            ok &= ~(dist < self.spheres[None, :, 3] + margin).any(1)
        if len(self.cylinders):
            c = self.cylinders
            rad = ((p[:, None, 0] - c[:, 0]) ** 2 + (p[:, None, 2] - c[:, 1]) ** 2).sqrt()
            within = (
                (rad < c[:, 4] + margin)
                & (p[:, None, 1] > c[:, 2] - margin)
                & (p[:, None, 1] < c[:, 3] + margin)
            )
            ok &= ~within.any(1)
        return ok

    def dynamic_positions(self, times: torch.Tensor) -> torch.Tensor:  # [T] -> [D,T,3] float64
        """Centres of the moving objects at the given times (frame indices by default)."""
        times = torch.as_tensor(times, dtype=torch.float64).reshape(-1)
        if not self.dynamic:
            return torch.zeros(0, len(times), 3, dtype=torch.float64)
        return torch.stack([obj.position(times) for obj in self.dynamic])

    def render(self, cameras: Cameras, times: torch.Tensor | None = None, **kwargs):
        """Ray-cast RGB, z-depth, dynamic and sky masks for every camera. See `render`."""
        return render(self, cameras, times, **kwargs)

    def start_camera(
        self, height: int, width: int, fov_deg: float = 60.0, seed: int | None = None
    ) -> Cameras:
        """One camera inside the free region looking at something textured (a landmark).

        `fov_deg` is the horizontal field of view; pixels are square and the principal point is
        the image centre. `seed` picks another start (position and target) in the same scene.
        """
        if int(height) != height or int(width) != width or height <= 0 or width <= 0:
            raise ValueError(
                f"`height` and `width` must be positive integers, got {height}x{width}"
            )
        if not 1.0 <= fov_deg <= 170.0:
            raise ValueError(f"`fov_deg` must be in [1, 170] degrees, got {fov_deg}")
        rng = random.Random(f"mirage-start-{self.kind}-{self.seed}-{seed}")
        lo, hi = self.bounds
        eye = [
            lo[0] + (hi[0] - lo[0]) * rng.uniform(0.25, 0.75),
            1.6,
            lo[2] + (hi[2] - lo[2]) * rng.uniform(0.25, 0.75),
        ]
        eye[1] = min(max(eye[1], lo[1]), hi[1])
        _, target = self.landmarks[rng.randrange(len(self.landmarks))]
        target = list(target)
        if self.kind == "outdoor":
            target[1] = min(target[1], eye[1] - 0.15 * math.dist(eye, target))  # look a bit down
        c2w = look_at(torch.tensor(eye), torch.tensor(target))
        K = intrinsics(height, width, fov_deg)
        return Cameras(K[None], c2w[None], height, width)


def intrinsics(height: int, width: int, fov_deg: float) -> torch.Tensor:  # -> [3,3]
    """Pinhole K with horizontal field of view `fov_deg`, square pixels, centred principal point."""
    f = (width / 2) / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def look_at(eye: torch.Tensor, target: torch.Tensor, up=WORLD_UP) -> torch.Tensor:
    """OpenCV camera-to-world pose [4,4] at `eye` [3] looking at `target` [3], `up` world up."""
    eye, target = (
        torch.as_tensor(eye, dtype=torch.float64),
        torch.as_tensor(target, dtype=torch.float64),
    )
    up = torch.as_tensor(up, dtype=torch.float64)
    fwd = target - eye
    if fwd.norm() < 1e-9:
        raise ValueError("`target` must differ from `eye`")
    fwd = fwd / fwd.norm()
    right = torch.linalg.cross(fwd, up)
    if right.norm() < 1e-6:
        raise ValueError("`up` must not be parallel to the viewing direction")
    right = right / right.norm()
    down = torch.linalg.cross(fwd, right)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, fwd, eye
    return c2w.to(torch.float32)
