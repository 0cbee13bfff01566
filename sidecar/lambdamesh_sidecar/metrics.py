"""The instance's own figures: the calls through its ports, in (the inbound port) and out (the
outbound port), by peer service, each period written to stdout as CloudWatch EMF documents
(``lambdamesh_routing.emf``), one per direction and peer with calls in the period.

Each document's dimensions are ``Service``, ``Direction`` (``in`` or ``out``) and ``Peer``: the
calling service (its proven identity; ``_gateway``; ``-`` for a caller with none) or the called
one. Its metrics: ``Requests``; ``Status2xx`` .. ``Status5xx`` (refusals included: a 403
``intention_denied`` is a 4xx in); ``Failed``, calls that got no answer from the other side
(the outbound port's own 502/503/504 included); ``LatencyP50`` and ``LatencyP99`` in
milliseconds, over the period's calls, from the request's head to the answer's end. The
instance id and the task ARN ride along as properties, not dimensions: a dimension per
instance would make a custom metric of each task that ever ran. Logs Insights finds an
instance's documents by them.

Peers are bounded (``MAX_PEERS`` a period; more are counted under ``_other``) so that a caller
spraying made-up names cannot make a metric of each. Latency samples are kept up to
``MAX_SAMPLES`` per peer and direction a period, a uniform sample beyond (reservoir
sampling), so memory does not grow with traffic.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from lambdamesh_routing.emf import emf_document

MAX_PEERS = 64
MAX_SAMPLES = 1024
OTHER = "_other"
ANONYMOUS = "-"
# A port's own answers that say the other side gave none.
FAILED_STATUSES = frozenset({502, 503, 504})


@dataclass
class _Figures:
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)  # class (2..5) -> count
    failed: int = 0
    samples: list[float] = field(default_factory=list)
    seen: int = 0  # samples offered, for the reservoir


def _percentile(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile of ``ordered`` (ascending, not empty)."""
    rank = max(1, int(-(-share * len(ordered) // 1)))  # ceil
    return ordered[min(rank, len(ordered)) - 1]


class CallMetrics:
    def __init__(
        self,
        service: str,
        instance_id: str,
        task_arn: str | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        directions: tuple[str, ...] = ("in", "out"),
    ) -> None:
        """``directions``: the ports served, whose figures each heartbeat reports (``window``),
        zeros included."""
        self._service = service
        self._properties: dict[str, object] = {"Instance": instance_id}
        if task_arn:
            self._properties["TaskArn"] = task_arn
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._figures: dict[tuple[str, str], _Figures] = {}
        self._peers: set[str] = set()
        self._directions = directions
        # Since the last heartbeat, all peers together: what the registry shows per instance.
        self._window: dict[str, _Figures] = {d: _Figures() for d in directions}
        self._window_since = clock()

    def record(
        self, direction: str, peer: str | None, status: int, seconds: float, failed: bool = False
    ) -> None:
        """One call: ``failed`` when the other side gave no answer and the port answered
        502, 503 or 504 itself."""
        name = peer or ANONYMOUS
        with self._lock:
            if name not in self._peers:
                if len(self._peers) >= MAX_PEERS:
                    name = OTHER
                else:
                    self._peers.add(name)
            figures = self._figures.setdefault((direction, name), _Figures())
            figures.requests += 1
            kind = status // 100
            figures.statuses[kind] = figures.statuses.get(kind, 0) + 1
            if failed:
                figures.failed += 1
            self._sample(figures, seconds * 1000)
            window = self._window.get(direction)
            if window is not None:
                window.requests += 1
                window.failed += 1 if failed or kind == 5 else 0  # its errors
                self._sample(window, seconds * 1000)

    def _sample(self, figures: _Figures, milliseconds: float) -> None:
        """Keep ``milliseconds``, or a uniform sample of all offered (reservoir sampling)."""
        figures.seen += 1
        if len(figures.samples) < MAX_SAMPLES:
            figures.samples.append(milliseconds)
            return
        slot = self._rng.randrange(figures.seen)
        if slot < MAX_SAMPLES:
            figures.samples[slot] = milliseconds

    def window(self) -> dict[str, Any]:
        """The figures since the last call, as a heartbeat reports them (the registry shows
        them per instance): for each port served, its requests, its errors (5xx and calls
        that got no answer) and its p50 and p99 in milliseconds."""
        now = self._clock()
        with self._lock:
            taken = self._window
            self._window = {d: _Figures() for d in self._directions}
            since, self._window_since = self._window_since, now
        report: dict[str, Any] = {"seconds": round(max(0.0, min(now - since, 3600.0)), 3)}
        for direction, figures in taken.items():
            ordered = sorted(figures.samples)
            report[direction] = {
                "requests": figures.requests,
                "errors": figures.failed,
                "p50_ms": round(_percentile(ordered, 0.50), 3) if ordered else None,
                "p99_ms": round(_percentile(ordered, 0.99), 3) if ordered else None,
            }
        return report

    def documents(self) -> list[dict[str, Any]]:
        """The period's EMF documents, and a new period begun."""
        with self._lock:
            taken, self._figures, self._peers = self._figures, {}, set()
        stamp = int(self._clock() * 1000)
        made = []
        for (direction, peer), figures in sorted(taken.items()):
            ordered = sorted(figures.samples)
            counts = [
                (f"Status{kind}xx", "Count", float(figures.statuses.get(kind, 0)))
                for kind in (2, 3, 4, 5)
            ]
            made.append(
                emf_document(
                    {"Service": self._service, "Direction": direction, "Peer": peer},
                    [
                        ("Requests", "Count", float(figures.requests)),
                        *counts,
                        ("Failed", "Count", float(figures.failed)),
                        ("LatencyP50", "Milliseconds", _percentile(ordered, 0.50)),
                        ("LatencyP99", "Milliseconds", _percentile(ordered, 0.99)),
                    ],
                    stamp,
                    self._properties,
                )
            )
        return made

    def flush(self, out: TextIO | None = None) -> int:
        """Write the period's documents, one line each; how many."""
        stream = out or sys.stdout
        made = self.documents()
        for document in made:
            stream.write(json.dumps(document, separators=(",", ":")) + "\n")
        stream.flush()
        return len(made)

    def run(self, stop: threading.Event, period: float, out: TextIO | None = None) -> None:
        """Flush every ``period`` seconds until stopped, and once more then."""
        while not stop.wait(period):
            self.flush(out)
        self.flush(out)
