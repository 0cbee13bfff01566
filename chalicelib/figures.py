"""What an instance's sidecar counted of the calls through its ports, as its heartbeats carry
them, as the instance's item keeps them, and as the registry's API answers with them.

A heartbeat may carry ``figures``: the window they cover (``seconds``, since the previous
heartbeat) and, for each port the sidecar serves, its requests, errors and p50 and p99 in
milliseconds (``in``: the inbound port; ``out``: the outbound port). The registry stamps them
with its own clock (``reported_at``) and keeps the last ones on the instance's item, as
compact JSON, until a heartbeat brings newer ones or a registration replaces the item.

Loaded by the registry's heartbeats and reads: the gateway's routed requests only carry the
stored text along in the service's view, unread, so they never pay for this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from lambdamesh_routing.instances import Instance

# Places kept of seconds and milliseconds: a microsecond, as the sidecar rounds them. It
# bounds the stored text, whatever precision a body sends.
PLACES = 3


class CallFigures(NamedTuple):
    """Calls through one port in a window: how many, how many failed (a 5xx, or no answer
    from the other side), and the median and 99th percentile of their durations in
    milliseconds (None when there were no calls)."""

    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None

    def to_json(self) -> dict[str, Any]:
        return self._asdict()


class Figures(NamedTuple):
    """An instance's figures: its ports' calls over the ``seconds`` before a heartbeat (None
    for a port not reported), received by the registry at ``reported_at`` (its clock)."""

    seconds: float
    inbound: CallFigures | None
    outbound: CallFigures | None
    reported_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "in": None if self.inbound is None else self.inbound.to_json(),
            "out": None if self.outbound is None else self.outbound.to_json(),
            "reported_at": self.reported_at,
        }


class Reported(NamedTuple):
    """An instance as the registry's API answers with it: its own fields, and the figures its
    sidecar last reported (None when none came since it registered)."""

    instance: Instance
    figures: Figures | None = None

    def to_json(self, now: float) -> dict[str, Any]:
        figures = None if self.figures is None else self.figures.to_json()
        return {**self.instance.to_json(now), "figures": figures}


def from_wire(fields: Mapping[str, Any], received_at: float) -> Figures:
    """A heartbeat's ``figures``, already checked (``chalicelib.validation``), stamped with
    the registry's clock."""
    return Figures(
        seconds=round(float(fields["seconds"]), PLACES),
        inbound=_calls(fields.get("in")),
        outbound=_calls(fields.get("out")),
        reported_at=round(received_at, PLACES),
    )


def _calls(fields: Mapping[str, Any] | None) -> CallFigures | None:
    if fields is None:
        return None
    return CallFigures(
        requests=int(fields["requests"]),
        errors=int(fields["errors"]),
        p50_ms=_milliseconds(fields["p50_ms"]),
        p99_ms=_milliseconds(fields["p99_ms"]),
    )


def _milliseconds(value: Any) -> float | None:
    return None if value is None else round(float(value), PLACES)


def stored(figures: Figures) -> str:
    """The text the instance's item keeps: compact JSON, each port's figures as the list
    ``[requests, errors, p50_ms, p99_ms]`` and a port not reported left out, e.g.
    ``{"seconds":60.2,"in":[120,2,3.1,20.5],"reported_at":1800000000.123}``."""
    text: dict[str, Any] = {"seconds": figures.seconds}
    for name, calls in (("in", figures.inbound), ("out", figures.outbound)):
        if calls is not None:
            text[name] = list(calls)
    text["reported_at"] = figures.reported_at
    return json.dumps(text, separators=(",", ":"))


def from_stored(text: str | None) -> Figures | None:
    """The figures an item keeps, or None when it keeps none. Text this module did not
    write (hand-edited, or from another version) reads as none: figures inform an operator,
    and must never fail a read."""
    if text is None:
        return None
    try:
        found = json.loads(text)
        return Figures(
            seconds=float(found["seconds"]),
            inbound=_stored_calls(found.get("in")),
            outbound=_stored_calls(found.get("out")),
            reported_at=float(found["reported_at"]),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _stored_calls(values: list[Any] | None) -> CallFigures | None:
    if values is None:
        return None
    requests, errors, p50_ms, p99_ms = values
    return CallFigures(int(requests), int(errors), _milliseconds(p50_ms), _milliseconds(p99_ms))
