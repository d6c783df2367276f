"""The explorer's serving checks, worker and upload reader, without a browser."""

import socket
import threading

import numpy as np
import pytest
from typer.testing import CliRunner

from mirage.explore.start import MAX_UPLOAD_BYTES, ExploreConfig, check_model, read_upload
from mirage.explore.worker import Worker

pytest.importorskip("viser", reason="the explorer needs viser: pip install -e .[explore]")


@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
def no_branch(tmp_path):
    """A complete model folder (the tiny one's parts) without a side branch."""
    tiny = check_model(None, "latent")
    root = tmp_path / "no-branch"
    root.mkdir()
    for part in ("transformer", "vae", "scheduler"):
        (root / part).symlink_to(tiny / part)
    return root


def test_pick_port_refuses_a_port_in_use_and_finds_a_free_one(busy_port):
    from mirage.explore.serve import pick_port

    with pytest.raises(ValueError, match=f"port {busy_port} on 127.0.0.1 is in use"):
        pick_port("127.0.0.1", busy_port)
    free = pick_port("127.0.0.1", None)
    assert free != busy_port and 0 < free < 65536


@pytest.mark.parametrize(("host", "loop"), [("127.0.0.1", True), ("localhost", True),
                         ("::1", True), ("0.0.0.0", False), ("192.168.1.4", False)])  # fmt: skip
def test_is_loopback(host, loop):
    from mirage.explore.serve import is_loopback

    assert is_loopback(host) is loop


def test_cli_explore_port_in_use_is_a_clear_error(busy_port):
    from mirage.cli import app

    result = CliRunner().invoke(app, ["explore", "--port", str(busy_port)])
    assert result.exit_code == 2 and "is in use" in result.output


def test_exposed_host_warns_and_a_model_without_side_branch_is_refused(no_branch):
    from mirage.explore.serve import serve

    with pytest.warns(UserWarning, match="reachable from other machines"):
        with pytest.raises(ValueError, match="no side branch"):
            serve(ExploreConfig(model=no_branch), host="0.0.0.0")
    assert check_model(no_branch, "none") == no_branch  # without memory it is fine


@pytest.mark.parametrize(("bad", "match"), [({"step": 5.0}, "step"), ({"turn": 0.0}, "turn"),
                         ({"memory": "voxels"}, "memory"), ({"device": "tpu"}, "device"),
                         ({"scene_kind": "cave"}, "scene_kind")])  # fmt: skip
def test_cli_explore_refuses_bad_options_before_loading(bad, match):
    from mirage.cli import app

    flag = {"scene_kind": "--scene-kind"}.get(next(iter(bad)), f"--{next(iter(bad))}")
    result = CliRunner().invoke(app, ["explore", flag, str(next(iter(bad.values())))])
    assert result.exit_code == 2 and match in result.output, result.output


def test_worker_runs_in_order_refuses_when_full_and_survives_errors():
    errors, done, gate = [], [], threading.Event()
    worker = Worker(errors.append, lambda: None, max_queued=2)
    assert worker.submit("slow", gate.wait)  # runs at once and blocks
    while worker.busy is None:
        pass
    assert worker.submit("a", lambda: done.append("a"))
    assert worker.submit("b", lambda: (_ for _ in ()).throw(ValueError("bad input")))
    assert not worker.submit("c", lambda: done.append("c"))  # full: refused, not lost
    gate.set()
    worker.wait()
    assert done == ["a"] and errors == ["b: bad input"] and worker.busy is None
    assert worker.submit("d", lambda: done.append("d"))  # still running after the error
    worker.wait()
    assert done == ["a", "d"]


def test_read_upload_refuses_non_images_and_large_files_and_fits_pictures():
    import imageio.v3 as iio

    with pytest.raises(ValueError, match="not a readable picture"):
        read_upload(b"hello, not a picture", (64, 64))
    with pytest.raises(ValueError, match="at most 16 MiB"):
        read_upload(b"\0" * (MAX_UPLOAD_BYTES + 1), (64, 64))
    with pytest.raises(ValueError, match="empty"):
        read_upload(b"", (64, 64))
    picture = np.zeros((60, 120, 3), np.uint8)
    picture[:, 30:90] = 200  # the centre square survives the crop to 1:1
    image = read_upload(iio.imwrite("<bytes>", picture, extension=".png"), (32, 32))
    assert image.shape == (3, 32, 32)
    assert image.min() > 0.7  # cropped to the centre, not stretched
