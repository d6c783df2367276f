"""One background thread that runs the explorer's actions in order, off the UI's thread.

A bounded queue: an action submitted while `max_queued` are already waiting is refused (the
caller shows that), never dropped silently. Bad input (ValueError, FileNotFoundError) is
reported through `on_error` and leaves the worker running.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class Worker:
    def __init__(self, on_error: Callable[[str], None], on_idle: Callable[[], None],
                 on_start: Callable[[], None] = lambda: None, max_queued: int = 3):  # fmt: skip
        self.on_error = on_error  # called with the message of a refused action
        self.on_idle = on_idle  # called after each action (the app redraws)
        self.on_start = on_start  # called as each action starts (the app shows it is busy)
        self.busy: str | None = None  # label of the action running now
        self._jobs: queue.Queue = queue.Queue(maxsize=max_queued)
        self._thread = threading.Thread(target=self._loop, name="mirage-explore", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return self._jobs.qsize()

    def submit(self, label: str, action: Callable[[], object]) -> bool:
        """Queue `action`; False (and nothing queued) when the queue is full."""
        try:
            self._jobs.put_nowait((label, action))
        except queue.Full:
            return False
        return True

    def wait(self) -> None:
        """Block until every queued action has run (tests)."""
        self._jobs.join()

    def _loop(self) -> None:
        while True:
            label, action = self._jobs.get()
            self.busy = label
            try:
                self.on_start()
                action()
            except (ValueError, FileNotFoundError) as err:
                self.on_error(f"{label}: {err}")
            except Exception as err:  # an unexpected fault is shown, and the app keeps serving
                self.on_error(f"{label} failed: {type(err).__name__}: {err}")
            finally:
                self.busy = None
                self._jobs.task_done()
                self.on_idle()
