"""The explorer in real Chromium (Debian's package; no browser download): keys steer the model,
the page shows the memory growing, undo restores it, and a saved trajectory runs in generate."""

import queue
import re
import shutil
import threading
from pathlib import Path

import pytest
import torch

pytest.importorskip("viser", reason="the explorer needs viser: pip install -e .[explore]")
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright: .[test]")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium; .ci/run does)"
)

SCENE = 900_005
TIMEOUT_MS = 120_000  # a 2-core CI machine shared with other jobs


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The explorer serving in a thread (2 denoising steps a chunk, to keep CI short)."""
    from mirage.explore.serve import serve
    from mirage.explore.start import ExploreConfig

    out = tmp_path_factory.mktemp("explore")
    started, stop = queue.Queue(), threading.Event()
    cfg = ExploreConfig(out=out / "session", scene_seed=SCENE, steps=2, step=0.3)
    thread = threading.Thread(
        target=serve, args=(cfg,), daemon=True,
        kwargs={"ready": lambda a: (started.put(a), stop.wait())},
    )  # fmt: skip
    thread.start()
    yield started.get(timeout=180)
    stop.set()
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def page(app):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"http://127.0.0.1:{app.server.get_port()}")
        page.get_by_text("Memory points:").wait_for()
        yield page
        browser.close()


def _stats(page) -> dict:
    text = page.get_by_text("Memory points:").inner_text()
    stats = {k: int(v) for k, v in re.findall(r"(points|frames|moves|queued): (\d+)", text)}
    return dict(stats, ready=text.startswith("ready"))


def _wait_for(page, moves: int) -> dict:
    """The statistics once the app is idle with `moves` moves made (polls the page)."""
    for _ in range(TIMEOUT_MS // 250):
        stats = _stats(page)
        if stats["ready"] and stats["queued"] == 0 and stats["moves"] == moves:
            return stats
        page.wait_for_timeout(250)
    raise AssertionError(f"the page did not reach {moves} moves: {stats}")


def _frame_pixels(page):
    """The newest frame as the page shows it (a screenshot of the image element)."""
    import imageio.v3 as iio

    img = page.get_by_text("Newest frames", exact=True).locator("xpath=following::img[1]")
    return iio.imread(img.screenshot()).astype(int)


def test_keys_steer_the_model_and_undo_restores_the_memory(app, page, tmp_path):
    from mirage.explore.session import ExploreSession, Move

    start, frame0 = _wait_for(page, 0), _frame_pixels(page)
    page.screenshot(path=tmp_path / "0_start.png")
    page.wait_for_function("window.__mirageKeys === true")  # the key listener is installed
    page.mouse.click(500, 800)  # focus the page (empty 3D view): keys go to the focused document
    for _ in range(3):
        page.keyboard.press("d")  # three moves, queued while the first runs
    after = _wait_for(page, 3)
    page.wait_for_timeout(1500)  # the chunk has played; the newest frame stays
    page.screenshot(path=tmp_path / "1_three_moves.png")
    assert after["frames"] == 1 + 3 * 8
    assert after["points"] > start["points"]  # the memory grew
    frame3 = _frame_pixels(page)
    assert frame3.shape == frame0.shape and frame3.shape[0] >= 128  # shown large
    assert abs(frame3 - frame0).mean() > 5  # the frame changed (8-bit levels, mean over pixels)

    # an independent reference: a fresh session that makes two moves
    s = app.session
    ref = ExploreSession(s.pipeline, s.image, s.camera, s.config)
    for _ in range(2):
        ref.move(Move("D", 0.3, 15.0))
    page.get_by_role("button", name="Undo", exact=True).click()
    undone = _wait_for(page, 2)
    page.screenshot(path=tmp_path / "2_undo.png")
    assert undone["points"] == ref.memory.num_points < after["points"]
    for name in ("positions", "features", "counts"):
        assert torch.equal(getattr(app.session.memory, name), getattr(ref.memory, name)), name
    assert torch.equal(app.session.frames, ref.frames)


def test_save_then_mirage_generate_reloads_the_trajectory(app, page, tmp_path):
    from typer.testing import CliRunner

    from mirage.cli import app as cli
    from mirage.data.trajectories import load_trajectory

    moves = _wait_for(page, len(app.session.steps))["moves"]
    if moves == 0:  # run alone: make one move first
        page.get_by_role("button", name="D right").click()
        moves = _wait_for(page, 1)["moves"]
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_text("saved to").wait_for()
    page.screenshot(path=tmp_path / "3_saved.png")
    folder = Path(re.search(r"saved to (\S+):", page.get_by_text("saved to").inner_text())[1])
    assert folder.parent == Path(app.cfg.out)  # only inside the session's folder
    traj = folder / "trajectory.json"
    assert torch.equal(load_trajectory(traj).c2w, app.session.cameras.c2w)
    result = CliRunner().invoke(cli, [
        "generate", "--trajectory", str(traj), "--scene", str(SCENE), "--steps", "2",
        "--out", str(tmp_path / "gen"), "--no-progress",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "gen" / "frames").iterdir())) == 1 + 8 * moves


def test_bad_upload_shows_a_message_and_leaves_the_session(app, page, tmp_path):
    before = _wait_for(page, len(app.session.steps))
    bad = tmp_path / "notes.txt"
    bad.write_text("not a picture")
    with page.expect_file_chooser() as chooser:
        page.get_by_text("Start", exact=True).click()
        page.get_by_role("button", name="Upload image").click()
    chooser.value.set_files(bad)
    page.get_by_text("⚠ upload: the upload is not a readable picture").wait_for()
    page.screenshot(path=tmp_path / "4_bad_upload.png")
    # the message is drawn by the failing action itself, before its worker reports idle
    assert _wait_for(page, before["moves"]) == before


def test_switching_memory_replays_the_same_moves_on_the_page(app, page, tmp_path):
    before = _wait_for(page, len(app.session.steps))
    cameras = app.session.cameras.c2w.clone()
    page.get_by_role("combobox", name="Memory", exact=True).click()
    page.get_by_role("option", name="none", exact=True).click()
    page.get_by_text("memory: none").wait_for()
    off = _wait_for(page, before["moves"])
    page.screenshot(path=tmp_path / "5_memory_none.png")
    assert off["points"] == 0 and off["frames"] == before["frames"]
    assert torch.equal(app.session.cameras.c2w, cameras)  # the same moves, replayed
