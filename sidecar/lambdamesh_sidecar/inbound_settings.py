"""The inbound port's settings, read from the environment only when LAMBDAMESH_INBOUND_PORT
is set."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lambdamesh_sidecar.environment import number, optional_integer
from lambdamesh_sidecar.variables import (
    DEFAULT_INBOUND_MAX_CONCURRENCY,
    DEFAULT_INBOUND_MAX_CONNECTIONS,
    DEFAULT_INBOUND_MAX_QUEUE,
    DEFAULT_INBOUND_QUEUE_SECONDS,
    DEFAULT_INBOUND_REFRESH_SECONDS,
    DEFAULT_INBOUND_TIMEOUT_SECONDS,
    INBOUND_MAX_CONCURRENCY,
    INBOUND_MAX_CONNECTIONS,
    INBOUND_MAX_QUEUE,
    INBOUND_PORT,
    INBOUND_QUEUE,
    INBOUND_REFRESH,
    INBOUND_TIMEOUT,
)


@dataclass(frozen=True)
class InboundSettings:
    """``port`` 0 binds any free port (tests)."""

    port: int = 0
    max_connections: int = DEFAULT_INBOUND_MAX_CONNECTIONS
    max_concurrency: int = DEFAULT_INBOUND_MAX_CONCURRENCY
    max_queue: int = DEFAULT_INBOUND_MAX_QUEUE
    queue_seconds: float = DEFAULT_INBOUND_QUEUE_SECONDS
    timeout_seconds: float = DEFAULT_INBOUND_TIMEOUT_SECONDS
    refresh_seconds: float = DEFAULT_INBOUND_REFRESH_SECONDS


def read_inbound_settings(environ: Mapping[str, str]) -> InboundSettings | None:
    """None when the inbound port is off (LAMBDAMESH_INBOUND_PORT unset)."""
    port = optional_integer(environ, INBOUND_PORT)
    if port is None:
        return None
    counts = [
        optional_integer(environ, variable)
        for variable in (INBOUND_MAX_CONNECTIONS, INBOUND_MAX_CONCURRENCY, INBOUND_MAX_QUEUE)
    ]
    connections, concurrency, queue = (int(count or 0) for count in counts)
    return InboundSettings(
        port=port,
        max_connections=connections,
        max_concurrency=concurrency,
        max_queue=queue,
        queue_seconds=number(environ, INBOUND_QUEUE),
        timeout_seconds=number(environ, INBOUND_TIMEOUT),
        refresh_seconds=number(environ, INBOUND_REFRESH),
    )
