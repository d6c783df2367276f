"""One exploration session: moves become chunks of cameras the world model generates, with undo.

No web code here: the app (`mirage.explore.app`) calls these methods from its worker thread,
and the tests call them directly. Camera convention as everywhere (OpenCV: x right, y down,
z forward; `c2w`): a move is taken in the current camera's own frame.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from mirage.data.trajectories import axis_angle_to_matrix, interpolate_keyframes
from mirage.geometry import Cameras
from mirage.pipeline.config import GenerationConfig

# key -> (camera-frame translation direction, yaw sign); yaw > 0 turns right (towards +x)
MOVES: dict[str, tuple[tuple[float, float, float], int]] = {
    "W": ((0.0, 0.0, 1.0), 0),  # forward
    "S": ((0.0, 0.0, -1.0), 0),  # back
    "A": ((-1.0, 0.0, 0.0), 0),  # strafe left
    "D": ((1.0, 0.0, 0.0), 0),  # strafe right
    "R": ((0.0, -1.0, 0.0), 0),  # up (-y in OpenCV)
    "F": ((0.0, 1.0, 0.0), 0),  # down
    "Q": ((0.0, 0.0, 0.0), -1),  # turn left
    "E": ((0.0, 0.0, 0.0), 1),  # turn right
}
MOVE_NAMES = {"W": "forward", "S": "back", "A": "left", "D": "right", "R": "up", "F": "down",
              "Q": "turn left", "E": "turn right"}  # fmt: skip


@dataclass(frozen=True)
class Move:
    key: str  # one of MOVES
    step: float  # world units for W/S/A/D/R/F
    turn: float  # degrees for Q/E

    def __post_init__(self):
        if self.key not in MOVES:
            raise ValueError(f"`key` must be one of {sorted(MOVES)}, got {self.key!r}")
        if not (math.isfinite(self.step) and 0 < self.step <= 10):
            raise ValueError(f"`step` must be in (0, 10] world units, got {self.step}")
        if not (math.isfinite(self.turn) and 0 < self.turn <= 180):
            raise ValueError(f"`turn` must be in (0, 180] degrees, got {self.turn}")


def move_pose(c2w: torch.Tensor, move: Move) -> torch.Tensor:  # [4,4] -> [4,4]
    """The pose a move ends at: translated by `step` along a camera axis, or yawed about the
    camera's own vertical axis by `turn` degrees (E turns right, as the `pan_right` preset)."""
    direction, yaw = MOVES[move.key]
    out = c2w.to(torch.float64).clone()
    R = out[:3, :3]
    out[:3, 3] += move.step * (R @ torch.tensor(direction, dtype=torch.float64))
    if yaw:
        angle = torch.tensor(math.radians(yaw * move.turn), dtype=torch.float64)
        out[:3, :3] = R @ axis_angle_to_matrix(torch.tensor([0.0, 1.0, 0.0]), angle)
    return out.to(c2w.dtype)


def move_cameras(start: Cameras, move: Move, num_frames: int) -> Cameras:
    """`num_frames` cameras from `start` (one camera, kept exactly as frame 0) to the move's end:
    rotation by slerp, translation by lerp, evenly spaced, so a chain of moves is smooth."""
    if not isinstance(start, Cameras) or len(start) != 1:
        raise ValueError(f"`start` must be a Cameras holding one camera, got {start!r}")
    end = move_pose(start.c2w[0], move)
    c2w = interpolate_keyframes(torch.stack([start.c2w[0], end]), num_frames)
    return Cameras(start.K[0].expand(num_frames, 3, 3), c2w, start.height, start.width)


@dataclass
class Step:
    """What one move produced (newest first in the app)."""

    move: Move
    frames: torch.Tensor  # [chunk_frames-1,3,H,W] the chunk's new frames
    readout: object  # the chunk's Readout (CPU)
    seconds: float  # wall time of the chunk
    points: int  # cache points after it


class ExploreSession:
    """A start frame and camera, the moves made so far, and the model's chunked state.

    Args:
        pipeline: a `MiragePipeline` (its depth provider must fit the start: ground truth of
            the synthetic scene, or a depth model for an uploaded image).
        image: [3,H,W] in [0,1], the first frame.
        camera: its camera (one camera of H x W images).
        config: the generation config (memory kind, chunk length, steps, seed).

    Before each chunk the model's state (memory included) is copied, so `undo` restores it
    exactly; `set_memory` replays the same moves with another memory kind.
    """

    def __init__(self, pipeline, image: torch.Tensor, camera: Cameras, config: GenerationConfig):
        self.pipeline = pipeline
        self.image = image
        self.camera = camera
        self.config = config
        self.reset()

    # --- state ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the first frame: no moves, a memory holding only the first frame."""
        self.state = self.pipeline.start_chunks(self.image, self.camera, config=self.config)
        self.cameras = self.camera  # every frame's camera so far
        self.frames = self.image[None].cpu()  # [N,3,H,W]
        self.steps: list[Step] = []
        self._before: list = []  # the chunk state before each step (undo)

    @property
    def memory(self):
        return self.state.memory

    @property
    def current(self) -> Cameras:
        """The camera of the newest frame: where the next move starts."""
        return self.cameras[-1]

    def _copy_state(self):
        """A deep copy of the chunk state; the pipeline (which an RGB cache's encoder is bound
        to), its VAE (which the conditioner encodes with) and the scheduler are shared."""
        keep = {id(self.pipeline): self.pipeline, id(self.state.scheduler): self.state.scheduler}
        keep[id(self.pipeline.vae)] = self.pipeline.vae
        generator = torch.Generator()
        generator.set_state(self.state.generator.get_state())
        keep[id(self.state.generator)] = generator
        return replace(
            self.state, memory=copy.deepcopy(self.state.memory, keep), generator=generator,
            conditioner=copy.deepcopy(self.state.conditioner, keep),  # references, last slots
        )  # fmt: skip

    # --- actions -------------------------------------------------------------------------

    def move(self, move: Move) -> Step:
        """Generate one chunk along `move` from the current camera."""
        cams = move_cameras(self.current, move, self.config.chunk_frames)
        before = self._copy_state()
        t0 = time.perf_counter()
        out = self.pipeline.next_chunk(self.state, cams)
        frames = out.frames
        step = Step(move, frames, out.readout, time.perf_counter() - t0, self.memory.num_points)
        self._before.append(before)
        self.steps.append(step)
        self.cameras = Cameras(
            torch.cat([self.cameras.K, cams.K[1:]]), torch.cat([self.cameras.c2w, cams.c2w[1:]]),
            self.cameras.height, self.cameras.width,
        )  # fmt: skip
        self.frames = torch.cat([self.frames, frames])
        return step

    def undo(self) -> bool:
        """Drop the last chunk and restore the state before it exactly; False if none."""
        if not self.steps:
            return False
        self.state = self._before.pop()
        self.steps.pop()
        keep = len(self.frames) - (self.config.chunk_frames - 1)
        self.frames, self.cameras = self.frames[:keep], self.cameras[:keep]
        return True

    def set_memory(self, kind: str) -> None:
        """Replay the same moves from the first frame with memory `kind` (latent, rgb, none)."""
        moves = [s.move for s in self.steps]
        self.config = replace(self.config, memory=kind)  # validates `kind`
        self.reset()
        for m in moves:
            self.move(m)

    # --- what the app shows --------------------------------------------------------------

    def readout(self, camera: Cameras | None = None):
        """What the memory tells the model for `camera` (default: the current one), decoded by
        the VAE: (image [3,H,W], visibility mask [h,w] bool)."""
        cam = self.current if camera is None else camera
        read = self.memory.read(cam.to(self.pipeline.device), self.state.latent_hw)
        image = self.pipeline.vae.decode_images(read.latents.float())[0].cpu().clamp(0, 1)
        return image, read.mask[0, 0].cpu()

    def points(self) -> tuple[torch.Tensor, torch.Tensor]:  # -> [N,3] float32, [N,3] uint8
        """The memory's points and the colours `export_ply` writes (PCA of latents, or RGB)."""
        from mirage.memory.latent import features_to_rgb

        mem = self.memory
        if not mem.stores_geometry or mem.num_points == 0:
            return torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.uint8)
        if hasattr(mem, "features"):
            colors = torch.from_numpy(features_to_rgb(mem.features.cpu().float()))
        else:
            colors = mem.colors.cpu()
        return mem.positions.cpu().float(), colors


def session_summary(session: ExploreSession) -> dict:
    """What `save` writes beside the files: moves, config, per-move seconds and points."""
    from dataclasses import asdict

    return {
        "config": asdict(session.config),
        "moves": [asdict(s.move) for s in session.steps],
        "seconds": [s.seconds for s in session.steps],
        "points": [s.points for s in session.steps],
        "frames": len(session.frames),
    }


def save_session(session: ExploreSession, folder: Path) -> Path:
    """Write the session into a new numbered folder inside `folder` (never elsewhere):
    trajectory.json (for `mirage generate --trajectory`), video.mp4, memory.safetensors,
    memory.ply (for a memory that is on) and session.json. Returns the new folder."""
    from mirage.atomic import atomic_dir, write_json
    from mirage.data.trajectories import save_trajectory
    from mirage.data.video import write_video

    if not session.steps:
        raise ValueError("make a move before saving: a trajectory needs at least one chunk")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
    out = folder / f"{max(taken, default=0) + 1:03d}"
    with atomic_dir(out) as tmp:  # complete or absent
        save_trajectory(tmp / "trajectory.json", session.cameras)
        write_video(tmp / "video.mp4", session.frames, fps=session.config.fps)
        session.memory.save(tmp / "memory.safetensors")  # a memory that is off writes nothing
        session.memory.export_ply(tmp / "memory.ply")
        write_json(tmp / "session.json", session_summary(session))
    return out
