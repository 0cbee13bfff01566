"""Flow control on the way in: at most ``max_concurrency`` requests with the app at once, at
most ``max_queue`` more waiting for a turn, each for at most ``queue_seconds``. Beyond that a
request is answered 503 ``sidecar_overloaded`` with ``Retry-After``, so that a burst meets a
quick refusal the caller's retries and outlier detection understand, rather than an app
drowning in work it cannot finish. Waiting requests are let in first come, first served.
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType

from lambdamesh_sidecar.serving import Overloaded


class Admission:
    def __init__(
        self,
        max_concurrency: int,
        max_queue: int,
        queue_seconds: float,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.queue_seconds = queue_seconds
        self._lock = threading.Lock()
        self._active = 0
        # One event per waiting request, in arrival order; set when it is let in.
        self._waiting: deque[threading.Event] = deque()
        self._turn = _Turn(self)

    @property
    def active(self) -> int:
        return self._active

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def turn(self) -> _Turn:
        """Held while the request is with the app; ``Overloaded`` when none comes."""
        return self._turn

    def _enter(self) -> None:
        with self._lock:
            if self._active < self.max_concurrency and not self._waiting:
                self._active += 1
                return
            if len(self._waiting) >= self.max_queue:
                raise Overloaded(
                    f"the app has {self.max_concurrency} requests in hand and {self.max_queue} "
                    "waiting, as many as this instance takes"
                )
            admitted = threading.Event()
            self._waiting.append(admitted)
        if admitted.wait(self.queue_seconds):
            return  # the leaver counted it in
        with self._lock:
            if admitted.is_set():
                return  # let in while the wait was ending
            self._waiting.remove(admitted)
        raise Overloaded(
            f"no turn with the app came within {self.queue_seconds:g} s: "
            f"{self.max_concurrency} requests were in hand"
        )

    def _leave(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()  # the turn passes on, the count unchanged
            else:
                self._active -= 1


class _Turn:
    """``Admission.turn``'s context manager (a class: it is entered on every request)."""

    __slots__ = ("_admission",)

    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    def __enter__(self) -> None:
        self._admission._enter()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._admission._leave()
