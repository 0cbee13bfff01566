"""SIGTERM and SIGINT ask the runner to stop; a second one ends the process on the spot.

Python runs a signal handler on the main thread between any two bytecodes, including inside
another run of the same handler, or inside code holding a lock. A handler that logs or sets an
``Event`` takes locks, and two signals close together (ECS's SIGTERM, then a second one
from someone impatient) could deadlock it against itself: the second run waiting on a lock
the interrupted first run holds, forever, with the runner never told to stop.

So the handler takes no lock: it appends the signal to a list and, if it is not the first,
ends the process with ``os._exit``. The main thread does nothing but join the runner's thread,
a tenth of a second at a time; between joins it delivers the first signal, logging it and
setting the stop event, outside any handler. The runner is always either waiting on that event
(and wakes at once) or finishing one bounded registry call, so shutdown never waits on a
sleep.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from lambdamesh_sidecar.logs import LOGGER_NAME

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SetHandler = Callable[[int, Any], Any]
EXIT_CRASHED = 1


# How often the main thread looks for a signal to deliver while it joins the runner.
DELIVERY_INTERVAL = 0.1


def _exit_now(code: int) -> None:
    """Ends the process from inside a signal handler: ``os.write`` takes no lock."""
    name = signal.Signals(code - 128).name if code > 128 else str(code)
    try:
        os.write(
            2, f"lambdamesh-sidecar: {name} again; exiting without finishing shutdown\n".encode()
        )
    finally:
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
        # Appended to by the handler (atomic under the GIL, no lock); read by deliver().
        self._received: list[int] = []

    def install(
        self, signals: Iterable[int] = STOP_SIGNALS, set_handler: SetHandler = signal.signal
    ) -> None:
        for signum in signals:
            set_handler(signum, self)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        """The handler: takes no lock, so it is safe however it interrupts the main thread."""
        self._received.append(signum)
        if len(self._received) > 1:
            self._exit_now(128 + signum)

    def deliver(self) -> None:
        """Tell the runner to stop if a signal came; called on the main thread, outside any
        handler, so it may log and set the event."""
        if self._received and not self._stop.is_set():
            self._log.info("%s received; shutting down", signal.Signals(self._received[0]).name)
            self._stop.set()


def run_off_main_thread(run: Callable[[], int], signals: StopOnSignal | None = None) -> int:
    """Runs ``run`` on a worker thread, keeping the main thread free for signal handlers and
    delivering what they received."""
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(run()), name="lambdamesh-runner")
    if signals is not None:
        signals.deliver()  # a signal during start-up stops the runner before it registers
    worker.start()
    while worker.is_alive():
        worker.join(DELIVERY_INTERVAL)
        if signals is not None:
            signals.deliver()
    # An exception in the worker was already printed by threading.excepthook.
    return result[0] if result else EXIT_CRASHED
