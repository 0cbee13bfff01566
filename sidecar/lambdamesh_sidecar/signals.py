"""SIGTERM and SIGINT ask the runner to stop; a second one ends the process on the spot.

The handler only sets an event: the runner is always either waiting on that event (and wakes at
once) or finishing one bounded registry call, so shutdown never waits on a sleep. A second
signal means someone has stopped waiting for the polite path.

Python runs signal handlers on the main thread, between any two bytecodes. Were the main thread
itself waiting on the event, the handler could interrupt it while it holds the event's internal
lock, and ``Event.set()`` would then deadlock. So the runner works on its own thread and the main
thread does nothing but join it and take signals.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from lambdamesh_sidecar.logs import LOGGER_NAME

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SetHandler = Callable[[int, Any], Any]
EXIT_CRASHED = 1


def _exit_now(code: int) -> None:
    sys.stderr.flush()
    os._exit(code)


class StopOnSignal:
    def __init__(
        self,
        stop: threading.Event,
        exit_now: Callable[[int], None] = _exit_now,
        logger: logging.Logger | None = None,
    ) -> None:
        self._stop = stop
        self._exit_now = exit_now
        self._log = logger or logging.getLogger(LOGGER_NAME)

    def install(
        self, signals: Iterable[int] = STOP_SIGNALS, set_handler: SetHandler = signal.signal
    ) -> None:
        for signum in signals:
            set_handler(signum, self)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._stop.is_set():
            self._log.warning("%s again; exiting without finishing shutdown", name)
            self._exit_now(128 + signum)
            return
        self._log.info("%s received; shutting down", name)
        self._stop.set()


def run_off_main_thread(run: Callable[[], int]) -> int:
    """Runs ``run`` on a worker thread, keeping the main thread free for signal handlers."""
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(run()), name="lambdamesh-runner")
    worker.start()
    worker.join()
    # An exception in the worker was already printed by threading.excepthook.
    return result[0] if result else EXIT_CRASHED
