"""The explorer's web app (viser): steer with keys or buttons, watch frames, memory and readout.

viser serves its bundled client and gives a 3D scene (the memory's points, the trajectory's
frustums) beside GUI panels, all from Python. The session logic lives in `session.py`; this
module only draws it and turns clicks into actions for the worker thread.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mirage.explore.session import MOVE_NAMES, MOVES, ExploreSession, Move, save_session
from mirage.explore.start import (
    STEP_RANGE,
    TURN_RANGE,
    ExploreConfig,
    check_model,
    frame_size,
    generation_config,
    image_start,
    load_model,
    scene_start,
)
from mirage.explore.worker import Worker
from mirage.pipeline.model_info import synthetic_supersample

BUTTONS = {key: f"{key} {MOVE_NAMES[key]}" for key in MOVES}  # the label a key clicks
UPSCALE = 4  # the 64 x 64 frames, shown large (nearest neighbour: no invented detail)
FPS = 8

# viser has no keyboard events for the app, and its own viewer moves on W/A/S/D; this
# listener (capture phase, so it runs first) turns those keys into clicks on our buttons and
# stops them there, unless the user is typing in a field. viser's page sends GUI events at
# most once per 50 ms and keeps only the newest, so each click waits until the server has
# counted the one before (the "actions" figure; at most WAIT_MS): keys pressed faster are
# queued in the page, not lost.
WAIT_MS = 2000
KEYS_JS = r"""
(() => {
  if (window.__mirageKeys) return;
  window.__mirageKeys = true;
  const labels = __LABELS__;
  const alias = {ArrowUp: "KeyW", ArrowDown: "KeyS", ArrowLeft: "KeyQ", ArrowRight: "KeyE"};
  const pending = [];
  let inFlight = false;  // a click the server has not counted yet
  const actions = () => +((document.body.textContent.match(/actions: (\d+)/) || [0, -1])[1]);
  const pump = () => {
    if (inFlight || !pending.length) return;
    inFlight = true;
    const label = pending.shift();
    const b = [...document.querySelectorAll("button")].find((b) => b.textContent.trim() === label);
    const before = actions();
    const t0 = Date.now();
    if (b) b.click();
    const wait = () => {
      if (actions() > before || Date.now() - t0 > __WAIT_MS__) {
        inFlight = false;
        pump();
      } else setTimeout(wait, 25);
    };
    setTimeout(wait, 25);
  };
  const handle = (e) => {
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
    const label = labels[alias[e.code] || e.code];
    if (!label) return;
    e.stopImmediatePropagation();
    e.preventDefault();
    if (e.type !== "keydown" || e.repeat) return;
    pending.push(label);
    pump();
  };
  window.addEventListener("keydown", handle, true);
  window.addEventListener("keyup", handle, true);
})();
""".replace("__LABELS__", json.dumps({f"Key{k}": v for k, v in BUTTONS.items()})).replace(
    "__WAIT_MS__", str(WAIT_MS)
)


# --- the app ------------------------------------------------------------------------------


@dataclass
class View:
    """Handles of what the app draws."""

    frame: object
    readout: object
    mask: object
    stats: object
    message: object
    progress: object


class ExplorerApp:
    def __init__(self, server, cfg: ExploreConfig, models=(), depth_model: Path | None = None):
        self.server = server
        self.cfg = cfg
        self.models = {"tiny": check_model(None, "none"), **{str(m): Path(m) for m in models}}
        self.first_model = next((k for k, v in self.models.items() if v == cfg.model), "tiny")
        self.depth_model = depth_model
        self.pipeline = load_model(cfg.model, cfg.device)
        self.session = self._scene_session(self.pipeline, cfg.model, cfg.scene_seed, cfg.scene_kind)
        self._frustums: list = []
        self._playing = 0  # bumped by each redraw: an older player stops
        self.actions = 0  # actions requested from the page
        self.worker = Worker(self.show_error, self.redraw, on_start=self._show_progress)
        self.view = self._build_gui()
        server.scene.set_up_direction("+y")  # the synthetic scenes stand on y = 0, y up
        server.gui._websock_interface.queue_message(_run_js(KEYS_JS))
        server.on_client_connect(self._place_viewer)
        self.redraw()

    # --- sessions ---------------------------------------------------------------------------

    def _config(self, model: Path, memory: str):
        return generation_config(model, memory, self.cfg.steps, self.cfg.seed)

    def _scene_session(self, pipe, model: Path, seed: int, kind: str) -> ExploreSession:
        ss = synthetic_supersample(model)  # as the model's training frames were rendered
        image, camera = scene_start(pipe, seed, kind, frame_size(model), self.cfg.fov, ss)
        return ExploreSession(pipe, image, camera, self._config(model, self.memory_kind))

    @property
    def memory_kind(self) -> str:
        gui = getattr(self, "gui_memory", None)
        return gui.value if gui is not None else self.cfg.memory

    # --- GUI --------------------------------------------------------------------------------

    def _build_gui(self) -> View:
        gui = self.server.gui
        gui.configure_theme(control_width="large")
        blank = np.zeros((8, 8, 3), np.uint8)
        frame = gui.add_image(self._frame_image(self.session.frames[-1]), label="Newest frames")
        view = View(
            frame=frame, stats=gui.add_markdown(""), message=gui.add_markdown(""),
            progress=gui.add_progress_bar(100.0, animated=True, visible=False),
            readout=None, mask=None,
        )  # fmt: skip
        with gui.add_folder("Steer (keys W S A D Q E R F, arrows)"):
            for key, label in BUTTONS.items():
                gui.add_button(label).on_click(lambda _, k=key: self.request_move(k))
            self.gui_step = gui.add_slider(
                "Step (units)", *STEP_RANGE, step=0.05, initial_value=self.cfg.step
            )
            self.gui_turn = gui.add_slider(
                "Turn (degrees)", *TURN_RANGE, step=1.0, initial_value=self.cfg.turn
            )
        with gui.add_folder("What the model is told for the next view"):
            view.readout = gui.add_image(blank, label="Memory readout (decoded)")
            view.mask = gui.add_image(blank, label="Visibility mask (grey: seen, black: hole)")
        with gui.add_folder("Keep"):
            gui.add_button("Undo").on_click(lambda _: self.submit("undo", self.session_undo))
            gui.add_button("Reset").on_click(lambda _: self.submit("reset", self.session_reset))
            gui.add_button("Save").on_click(lambda _: self.submit("save", self.save))
        with gui.add_folder("Compare"):
            self.gui_memory = gui.add_dropdown(
                "Memory", ("latent", "rgb", "none"), initial_value=self.cfg.memory
            )
            self.gui_memory.on_update(lambda _: self.submit("memory", self.switch_memory))
        self._build_start_gui(gui)
        return view

    def _build_start_gui(self, gui) -> None:
        with gui.add_folder("Start", expand_by_default=False):
            self.gui_seed = gui.add_number(
                "Scene seed", initial_value=self.cfg.scene_seed, step=1, min=0
            )
            self.gui_kind = gui.add_dropdown(
                "Scene kind", ("indoor", "outdoor"), initial_value=self.cfg.scene_kind
            )
            gui.add_button("Start scene").on_click(lambda _: self.submit("scene", self.start_scene))
            upload = gui.add_upload_button("Upload image", mime_type="image/*")
            upload.on_upload(
                lambda e: self.submit("upload", lambda: self.start_image(e.target.value))
            )
            self.gui_model = gui.add_dropdown(
                "Model", tuple(self.models), initial_value=self.first_model
            )
            gui.add_button("Load model").on_click(lambda _: self.submit("model", self.switch_model))

    # --- actions (run on the worker) ------------------------------------------------------

    def submit(self, label: str, action) -> None:
        self.actions += 1  # every request, taken or refused: the page's key queue waits on it
        if self.worker.submit(label, action):
            self.set_message("")
        else:
            self.show_error(f"busy: {label} refused ({self.worker.queued} actions are waiting)")
        self._show_progress()

    def request_move(self, key: str) -> None:
        move = Move(key, float(self.gui_step.value), float(self.gui_turn.value))
        self.submit(f"move {BUTTONS[key]}", lambda: self.session.move(move))

    def session_undo(self) -> None:
        if not self.session.undo():
            raise ValueError("nothing to undo")

    def session_reset(self) -> None:
        self.session.reset()

    def save(self) -> None:
        out = save_session(self.session, self.cfg.out)
        self.set_message(f"saved to {out}: trajectory.json (mirage generate --trajectory), "
                         "video.mp4, memory.safetensors, memory.ply")  # fmt: skip

    def switch_memory(self) -> None:
        kind = self.memory_kind
        if kind != "none":
            check_model(self.session.pipeline.files.get("model"), kind)
        self.session.set_memory(kind)

    def start_scene(self) -> None:
        model = Path(self.session.pipeline.files["model"])
        self.session = self._scene_session(
            self.session.pipeline, model, int(self.gui_seed.value), self.gui_kind.value
        )

    def start_image(self, upload) -> None:
        pipe = self.session.pipeline
        model = Path(pipe.files["model"])
        size = frame_size(model)
        image, camera = image_start(pipe, upload.content, self.depth_model, size, self.cfg.fov)
        self.session = ExploreSession(pipe, image, camera, self._config(model, self.memory_kind))

    def switch_model(self) -> None:
        model = check_model(self.models[self.gui_model.value], self.memory_kind)
        pipe = load_model(model, self.cfg.device)  # the old session serves until this is done
        self.session = self._scene_session(pipe, model, self.cfg.scene_seed, self.cfg.scene_kind)

    # --- drawing ----------------------------------------------------------------------------

    def set_message(self, text: str) -> None:
        self.view.message.content = text

    def show_error(self, text: str) -> None:
        """In the panel, and as a toast on every page (the panel may be scrolled away)."""
        self.set_message(f"**⚠ {text}**")
        for client in self.server.get_clients().values():
            client.add_notification("Mirage explorer", text, color="red", auto_close_seconds=8)

    def _show_progress(self) -> None:
        self.view.progress.visible = self.worker.busy is not None or self.worker.queued > 0
        self._draw_stats()

    def _draw_stats(self) -> None:
        s, w = self.session, self.worker
        last = f"{s.steps[-1].seconds:.2f} s" if s.steps else "-"
        state = f"working: {w.busy}" if w.busy else "ready"
        self.view.stats.content = (
            f"**{state}** · queued: {w.queued} · actions: {self.actions}  \n"
            f"Memory points: {s.memory.num_points} · frames: {len(s.frames)} · "
            f"moves: {len(s.steps)} · last move: {last} · memory: {s.config.memory}"
        )

    def redraw(self) -> None:
        """Draw the session: frames (playing), 3D memory and frustums, readout, statistics."""
        s = self.session
        self.view.progress.visible = self.worker.busy is not None or self.worker.queued > 0
        readout, mask = s.readout()
        self.view.readout.image = self._frame_image(readout)
        scale = UPSCALE * s.frames.shape[-1] // mask.shape[-1]  # latent cells as large as frames
        seen = mask[None].float().expand(3, -1, -1) * 0.75  # grey, so it shows on white
        self.view.mask.image = self._frame_image(seen, scale)
        positions, colors = s.points()
        self.server.scene.add_point_cloud(
            "/memory", positions.numpy(), colors.numpy(), point_size=0.04, point_shape="rounded"
        )
        self._draw_frustums()
        self._draw_stats()
        self._play(s.steps[-1].frames if s.steps else s.frames[-1:])

    def _draw_frustums(self) -> None:
        """A grey frustum per latent-aligned frame; the current camera red, with its image."""
        for handle in self._frustums:
            handle.remove()
        s = self.session
        cams = s.cameras
        lens = {"fov": 2 * float(np.arctan(cams.height / (2 * float(cams.K[0, 1, 1])))),
                "aspect": cams.width / cams.height}  # fmt: skip
        self._frustums = [
            self._frustum(f"/trajectory/{i}", cams.c2w[i], lens, scale=0.05, color=(90, 90, 90))
            for i in range(0, len(cams) - 1, 4)
        ]
        image = self._frame_image(s.frames[-1], 1)
        current = self._frustum("/current", cams.c2w[-1], lens, scale=0.1, color=(230, 40, 40))
        current.image = image
        self._frustums.append(current)

    def _frustum(self, name: str, c2w: torch.Tensor, lens: dict, **style):
        pose = {"wxyz": _wxyz(c2w), "position": c2w[:3, 3].numpy()}
        return self.server.scene.add_camera_frustum(name, **lens, **pose, **style)

    def _play(self, frames: torch.Tensor) -> None:
        """Show the chunk's frames once as a video, ending on the newest frame."""
        self._playing += 1
        token = self._playing
        images = [self._frame_image(f) for f in frames]

        def run():
            for image in images:
                if self._playing != token:
                    return
                self.view.frame.image = image
                time.sleep(1 / FPS)

        threading.Thread(target=run, daemon=True).start()

    @staticmethod
    def _frame_image(frame: torch.Tensor, scale: int = UPSCALE) -> np.ndarray:
        """[3,H,W] in [0,1] -> [H*scale,W*scale,3] uint8."""
        img = (frame.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return img.repeat(scale, 0).repeat(scale, 1)

    def _place_viewer(self, client) -> None:
        """Open the 3D view behind and above the start camera, looking where it looks."""
        c2w = self.session.camera.c2w[0].double()
        eye = c2w[:3, 3] - 1.5 * c2w[:3, 2] - 0.8 * c2w[:3, 1]
        client.camera.position = eye.numpy()
        client.camera.look_at = (c2w[:3, 3] + 1.0 * c2w[:3, 2]).numpy()


def _wxyz(c2w: torch.Tensor) -> np.ndarray:
    from mirage.data.trajectories import matrix_to_quaternion

    return matrix_to_quaternion(c2w[:3, :3]).numpy()


def _run_js(source: str):
    """viser's message for running code on every client (it ships plotly.js this way)."""
    from viser import _messages

    return _messages.RunJavascriptMessage(source=source)
