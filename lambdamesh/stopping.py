"""How `lambdamesh dev` hears that it should stop, without a way to hang on it.

A signal handler runs on the main thread, between any two bytecodes. Were the main thread
waiting in ``Event.wait()``, the handler could interrupt it while it holds the event's internal
lock, and ``Event.set()`` in the handler would then block forever: the process hears SIGTERM and
never stops. So the main thread only sleeps and polls a flag, which takes no lock, and a second
signal during shutdown exits on the spot.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
POLL_SECONDS = 0.2


def _exit_now(code: int) -> None:
    os.write(2, b"lambdamesh: stopping at once\n")
    os._exit(code)


class StopRequest:
    def __init__(
        self,
        sleep: Callable[[float], None] = time.sleep,
        exit_now: Callable[[int], None] = _exit_now,
    ) -> None:
        self.requested = threading.Event()
        self._sleep = sleep
        self._exit_now = exit_now

    def install(
        self,
        signals: Iterable[int] = STOP_SIGNALS,
        set_handler: Callable[[int, Any], Any] = signal.signal,
    ) -> None:
        for signum in signals:
            set_handler(signum, self)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            self._exit_now(128 + signum)
            return
        self.requested.set()

    def wait(self) -> None:
        """Returns once a stop was asked for: within ``POLL_SECONDS`` of the signal."""
        while not self.requested.is_set():
            self._sleep(POLL_SECONDS)
