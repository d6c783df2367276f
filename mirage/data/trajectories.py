"""Camera paths: presets from a start camera, keyframe interpolation (slerp/lerp), JSON files.

Every preset takes a start `Cameras` (one camera) and a frame count and returns `num_frames`
cameras with the start's intrinsics; frame 0 is the start pose exactly. Directions are in the
start camera's OpenCV frame (x right, y down, z forward): "left" is -x, "up" is -y.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import torch

from mirage.atomic import write_json
from mirage.geometry import Cameras

PRESETS = (
    "orbit",
    "push_in",
    "pull_out",
    "pan_left",
    "pan_right",
    "move_left",
    "move_right",
    "loop",
    "random_walk",
)
TRAJECTORY_FORMAT = "mirage-trajectory"
TRAJECTORY_VERSION = 1
CONVENTION = "OpenCV camera; c2w camera-to-world; K in pixels, pixel (i, j) centred at (j+.5, i+.5)"


# --- rotations ---------------------------------------------------------------------------


def axis_angle_to_matrix(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues: rotations [...,3,3] by `angle` [...] (radians) about unit `axis` [...,3]."""
    axis = torch.as_tensor(axis, dtype=torch.float64)
    angle = torch.as_tensor(angle, dtype=torch.float64)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    Kx = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*axis.shape[:-1], 3, 3)
    s, c = torch.sin(angle)[..., None, None], torch.cos(angle)[..., None, None]
    eye = torch.eye(3, dtype=torch.float64)
    return eye + s * Kx + (1 - c) * (Kx @ Kx)


def matrix_to_quaternion(R: torch.Tensor) -> torch.Tensor:  # [...,3,3] -> [...,4] (w, x, y, z)
    """Unit quaternions with w >= 0 (Shepperd's method: the largest diagonal term is pivot)."""
    R = R.to(torch.float64)
    m = R.reshape(-1, 3, 3)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cands = torch.stack(
        [
            torch.stack(
                [1 + tr, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]],
                -1,
            ),
            torch.stack(
                [
                    m[:, 2, 1] - m[:, 1, 2],
                    1 + 2 * m[:, 0, 0] - tr,
                    m[:, 0, 1] + m[:, 1, 0],
                    m[:, 0, 2] + m[:, 2, 0],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[:, 0, 2] - m[:, 2, 0],
                    m[:, 0, 1] + m[:, 1, 0],
                    1 + 2 * m[:, 1, 1] - tr,
                    m[:, 1, 2] + m[:, 2, 1],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[:, 1, 0] - m[:, 0, 1],
                    m[:, 0, 2] + m[:, 2, 0],
                    m[:, 1, 2] + m[:, 2, 1],
                    1 + 2 * m[:, 2, 2] - tr,
                ],
                -1,
            ),
        ],
        1,
    )  # [B,4 candidates,4]; candidate i is 4 q_i q, best conditioned for the largest q_i
    pivot = torch.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], -1).argmax(-1)
    q = cands[torch.arange(len(m)), pivot]
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    return q.reshape(*R.shape[:-2], 4)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:  # [...,4] (w, x, y, z) -> [...,3,3]
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(*q.shape[:-1], 3, 3)  # fmt: skip


def slerp(q0: torch.Tensor, q1: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of unit quaternions [...,4] at fractions s [...] (shortest arc)."""
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    s = s[..., None]
    sin = torch.sin(theta)
    small = sin < 1e-9
    w0 = torch.where(small, 1 - s, torch.sin((1 - s) * theta) / torch.where(small, 1, sin))
    w1 = torch.where(small, s, torch.sin(s * theta) / torch.where(small, 1, sin))
    q = w0 * q0 + w1 * q1
    return q / q.norm(dim=-1, keepdim=True)


def interpolate_keyframes(keyframes: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Poses [num_frames,4,4] along keyframe poses c2w [K,4,4], evenly spaced in keyframe index.

    Frame i sits at s = i (K - 1) / (num_frames - 1) along the keyframes: rotation by slerp
    (shortest arc) and translation by lerp between keyframes floor(s) and floor(s) + 1. The
    first and last frames are the first and last keyframes exactly.
    """
    keyframes = torch.as_tensor(keyframes)
    if keyframes.ndim != 3 or keyframes.shape[1:] != (4, 4) or len(keyframes) < 1:
        raise ValueError(
            f"`keyframes` must have shape [K,4,4] with K >= 1, got {tuple(keyframes.shape)}"
        )
    _check_frames(num_frames)
    Cameras(torch.eye(3), keyframes, 1, 1)  # validates rigidity with a clear error
    kf = keyframes.to(torch.float64)
    Kn = len(kf)
    if Kn == 1:
        return keyframes.to(torch.float32).expand(num_frames, 4, 4).clone()
    s = torch.arange(num_frames, dtype=torch.float64) * (Kn - 1) / max(num_frames - 1, 1)
    seg = s.floor().long().clamp(max=Kn - 2)
    frac = s - seg
    q = matrix_to_quaternion(kf[:, :3, :3])
    R = quaternion_to_matrix(slerp(q[seg], q[seg + 1], frac))
    t = kf[seg, :3, 3] + frac[:, None] * (kf[seg + 1, :3, 3] - kf[seg, :3, 3])
    out = torch.eye(4, dtype=torch.float64).repeat(num_frames, 1, 1)
    out[:, :3, :3], out[:, :3, 3] = R, t
    out = out.to(torch.float32)
    out[0], out[-1] = keyframes[0].to(torch.float32), keyframes[-1].to(torch.float32)
    return out


# --- presets -----------------------------------------------------------------------------


def _check_frames(num_frames):
    if int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"`num_frames` must be a positive integer, got {num_frames!r}")


def _along(c2w0: torch.Tensor, cam_dir, distance: float, n: int) -> torch.Tensor:
    """Translate along a camera-frame direction, linearly from 0 to `distance`."""
    direction = c2w0[:3, :3] @ torch.tensor(cam_dir, dtype=torch.float64)
    s = torch.linspace(0, 1, n, dtype=torch.float64)  # [n]; [0.] for n = 1
    out = c2w0.expand(n, 4, 4).clone()
    out[:, :3, 3] = c2w0[:3, 3] + s[:, None] * distance * direction
    return out


def _yaw(c2w0: torch.Tensor, degrees: float, n: int) -> torch.Tensor:
    """Rotate in place about the camera's own vertical axis; positive degrees turn right."""
    s = torch.linspace(0, 1, n, dtype=torch.float64)  # [n]; [0.] for n = 1
    R = axis_angle_to_matrix(torch.tensor([0.0, 1.0, 0.0]).expand(n, 3), s * math.radians(degrees))
    out = c2w0.expand(n, 4, 4).clone()
    out[:, :3, :3] = c2w0[:3, :3] @ R  # rotation about camera y: z turns towards +x (right)
    return out


def _orbit(c2w0, n, radius: float, degrees: float, up=None) -> torch.Tensor:
    """Circle around the point `radius` ahead of the camera, about the `up` axis, looking at it."""
    R0, c0 = c2w0[:3, :3], c2w0[:3, 3]
    target = c0 + radius * R0[:, 2]
    up = -R0[:, 1] if up is None else torch.as_tensor(up, dtype=torch.float64)
    up = up / up.norm()
    s = torch.linspace(0, 1, n, dtype=torch.float64)  # [n]; [0.] for n = 1
    # rotating about -up by +angle moves the camera to its right (a right-handed turn about down)
    Rw = axis_angle_to_matrix((-up).expand(n, 3), s * math.radians(degrees))  # [n,3,3] world
    out = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    out[:, :3, :3] = Rw @ R0
    out[:, :3, 3] = target + (Rw @ (c0 - target)[:, None])[..., 0]
    return out


def _random_walk(c2w0, n, seed: int, bounds, step: float, max_turn_deg: float, keyframe_every: int):
    """Seeded keyframes (steps of at most `step` metres, turns of at most `max_turn_deg` about
    the camera's vertical axis), clamped into the box `bounds`, interpolated smoothly. The box is
    convex and lerp stays on segments between in-box keyframes, so every frame is inside."""
    lo = torch.as_tensor(bounds[0], dtype=torch.float64)
    hi = torch.as_tensor(bounds[1], dtype=torch.float64)
    c0 = c2w0[:3, 3]
    if ((c0 < lo - 1e-6) | (c0 > hi + 1e-6)).any():
        raise ValueError(
            f"the start camera {c0.tolist()} must lie inside `bounds` {lo.tolist()}..{hi.tolist()}"
        )
    rng = random.Random(f"mirage-random-walk-{seed}")
    n_key = max(2, math.ceil((n - 1) / keyframe_every) + 1)
    keys = [c2w0.clone()]
    for _ in range(n_key - 1):
        prev = keys[-1]
        turn = math.radians(rng.uniform(-max_turn_deg, max_turn_deg))
        R = prev[:3, :3] @ axis_angle_to_matrix(torch.tensor([0.0, 1.0, 0.0]), torch.tensor(turn))
        ang = rng.uniform(-math.pi, math.pi)
        move_cam = torch.tensor(
            [math.sin(ang), rng.uniform(-0.2, 0.2), math.cos(ang)], dtype=torch.float64
        )
        pos = prev[:3, 3] + R @ move_cam * step * rng.uniform(0.3, 1.0)
        pos = torch.minimum(torch.maximum(pos, lo), hi)
        key = torch.eye(4, dtype=torch.float64)
        key[:3, :3], key[:3, 3] = R, pos
        keys.append(key)
    keys = torch.stack(keys)
    # keyframes sit every `keyframe_every` frames; the last one may sit past the end
    span = (n_key - 1) * keyframe_every + 1
    path = interpolate_keyframes(keys.to(torch.float32), span)[:n].to(torch.float64)
    path[:, :3, 3] = torch.minimum(torch.maximum(path[:, :3, 3], lo), hi)  # rounding only
    return path


def make_trajectory(preset: str, start: Cameras, num_frames: int, **kwargs) -> Cameras:
    """`num_frames` cameras following `preset` from the single camera `start`.

    Presets and their keyword arguments (defaults):
      orbit(radius=2.0, degrees=60.0, up=None): circle about the point `radius` ahead, about the
        `up` axis (default: the camera's own up, -y), always looking at that point; positive
        degrees move the camera to its right.
      push_in(distance=1.0) / pull_out(distance=1.0): along the optical axis, forward / back.
      pan_left(degrees=45.0) / pan_right(degrees=45.0): rotate in place about the camera's
        vertical axis.
      move_left(distance=1.0) / move_right(distance=1.0): translate along -x / +x.
      loop(path="move_right", **path_kwargs): out along `path` and back along the same poses:
        frame i equals frame num_frames - 1 - i (a palindrome). With m = ceil(num_frames / 2),
        the outbound half is `path` with m frames; for an odd count the turning pose is the
        single middle frame, for an even count it is held for two frames.
      random_walk(seed=0, bounds=None, step=0.5, max_turn_deg=30.0, keyframe_every=8): a seeded
        smooth walk; every camera centre stays inside `bounds` = (lo [3], hi [3]) (default: a
        2 m cube centred on the start). The start must lie inside the bounds.
    """
    if preset not in PRESETS:
        raise ValueError(f"`preset` must be one of {PRESETS}, got {preset!r}")
    if not isinstance(start, Cameras) or len(start) != 1:
        raise ValueError(f"`start` must be a Cameras holding one camera, got {start!r}")
    _check_frames(num_frames)
    n = int(num_frames)
    c2w0 = start.c2w[0].to(torch.float64)

    def take(**defaults):
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise ValueError(
                f"unknown keyword arguments {sorted(unknown)} for preset {preset!r}; "
                f"it takes {sorted(defaults)}"
            )
        return {**defaults, **kwargs}

    if preset == "orbit":
        p = take(radius=2.0, degrees=60.0, up=None)
        if p["radius"] <= 0:
            raise ValueError(f"`radius` must be positive, got {p['radius']}")
        c2w = _orbit(c2w0, n, float(p["radius"]), float(p["degrees"]), p["up"])
    elif preset in ("push_in", "pull_out", "move_left", "move_right"):
        p = take(distance=1.0)
        cam_dir = {
            "push_in": (0, 0, 1),
            "pull_out": (0, 0, -1),
            "move_left": (-1, 0, 0),
            "move_right": (1, 0, 0),
        }
        c2w = _along(c2w0, cam_dir[preset], float(p["distance"]), n)
    elif preset in ("pan_left", "pan_right"):
        p = take(degrees=45.0)
        c2w = _yaw(c2w0, (-1 if preset == "pan_left" else 1) * float(p["degrees"]), n)
    elif preset == "loop":
        path = kwargs.pop("path", "move_right")
        if path not in PRESETS or path == "loop":
            raise ValueError(
                f"`path` of a loop must be one of {PRESETS[:-2] + PRESETS[-1:]}, got {path!r}"
            )
        m = (n + 1) // 2
        out = make_trajectory(path, start, m, **kwargs).c2w
        idx = torch.tensor([min(i, n - 1 - i) for i in range(n)])
        return Cameras(start.K[0].expand(n, 3, 3), out[idx], start.height, start.width)
    else:
        p = take(seed=0, bounds=None, step=0.5, max_turn_deg=30.0, keyframe_every=8)
        bounds = p["bounds"]
        if bounds is None:
            bounds = (c2w0[:3, 3] - 1.0, c2w0[:3, 3] + 1.0)
        if int(p["keyframe_every"]) != p["keyframe_every"] or p["keyframe_every"] < 1:
            raise ValueError(
                f"`keyframe_every` must be a positive integer, got {p['keyframe_every']}"
            )
        c2w = _random_walk(
            c2w0,
            n,
            int(p["seed"]),
            bounds,
            float(p["step"]),
            float(p["max_turn_deg"]),
            int(p["keyframe_every"]),
        )
    c2w = c2w.to(torch.float32)
    c2w[0] = start.c2w[0]
    return Cameras(start.K[0].expand(n, 3, 3), c2w, start.height, start.width)


# --- files -------------------------------------------------------------------------------


def save_trajectory(path: str | Path, cameras: Cameras) -> None:
    """Write cameras as JSON (schema in docs/data.md), atomically."""
    if not isinstance(cameras, Cameras):
        raise ValueError(f"`cameras` must be a Cameras, got {type(cameras).__name__}")
    doc = {
        "format": TRAJECTORY_FORMAT,
        "version": TRAJECTORY_VERSION,
        "height": cameras.height,
        "width": cameras.width,
        "convention": CONVENTION,
        "K": cameras.K.cpu().tolist(),
        "c2w": cameras.c2w.cpu().tolist(),
    }
    write_json(path, doc, indent=None)


def load_trajectory(path: str | Path) -> Cameras:
    """Read a trajectory JSON written by `save_trajectory` (or by hand, same schema)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trajectory file {path} does not exist")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != TRAJECTORY_FORMAT:
        raise ValueError(f"{path}: `format` must be {TRAJECTORY_FORMAT!r}")
    if doc.get("version") != TRAJECTORY_VERSION:
        raise ValueError(
            f"{path}: `version` must be {TRAJECTORY_VERSION}, got {doc.get('version')!r}"
        )
    missing = [k for k in ("height", "width", "K", "c2w") if k not in doc]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    try:
        K = torch.tensor(doc["K"], dtype=torch.float32)
        c2w = torch.tensor(doc["c2w"], dtype=torch.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: `K` and `c2w` must be nested lists of numbers ({e})") from e
    try:
        return Cameras(K, c2w, doc["height"], doc["width"])
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
