"""Serving the explorer: the address (loopback and a free port by default), checks, the loop."""

from __future__ import annotations

import ipaddress
import socket
import time
import warnings
from dataclasses import replace
from pathlib import Path

import viser  # here, so that `mirage explore` without the extra fails at its import

from mirage.explore.start import ExploreConfig, check_config, check_model


def pick_port(host: str, port: int | None) -> int:
    """`port` if it is free on `host` (else a clear error); None: a free port the OS picks."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port or 0))
        except OSError as err:
            if port is None:
                raise ValueError(f"cannot listen on {host}: {err.strerror}") from None
            raise ValueError(
                f"port {port} on {host} is in use ({err.strerror}): pass another --port, or none "
                "for a free one"
            ) from None
        return s.getsockname()[1]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(cfg: ExploreConfig, host: str = "127.0.0.1", port: int | None = None,
          models: tuple[Path, ...] = (), depth_model: Path | None = None,
          ready=None) -> None:  # fmt: skip
    """Check everything, start the app, print its address and serve until interrupted.

    `ready(app)` is called once the app serves (tests); the app stops when it returns True.
    """
    from mirage.explore.app import ExplorerApp

    if not is_loopback(host):
        warnings.warn(
            f"--host {host}: the explorer is reachable from other machines and has no login; "
            "anyone who can reach it can run the model and write saves",
            stacklevel=2,
        )
    check_config(cfg)
    port = pick_port(host, port)
    model = check_model(cfg.model, cfg.memory)  # refused before anything loads
    models = tuple(check_model(m, "none") for m in models)  # side branches: checked on use
    server = viser.ViserServer(host=host, port=port, label="Mirage explorer", verbose=False)
    app = ExplorerApp(server, replace(cfg, model=model), (model, *models), depth_model)
    print(f"Mirage explorer: http://{host}:{server.get_port()}", flush=True)
    try:
        if ready is not None:
            ready(app)
        else:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
