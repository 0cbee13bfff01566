"""Connections from the outbound port to instances: kept alive per address, briefly.

An idle connection is kept for at most ``IDLE_SECONDS``, below the keep-alive timeouts of
common servers (gunicorn's is 2 s, Node's 5 s), so it is rarely reused at the moment its
upstream closes it; one found closed, or with unasked-for bytes waiting, is dropped. Those of
addresses no longer called (instances replaced) are closed by a sweep over all addresses, at
most once per ``IDLE_SECONDS``.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable

IDLE_PER_UPSTREAM = 16
IDLE_SECONDS = 1.5

_Idle = tuple[socket.socket, float]


class UpstreamPool:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._idle: dict[tuple[str, int], list[_Idle]] = {}
        self._lock = threading.Lock()
        self._swept = clock()

    def get(
        self, ip: str, port: int, timeout: float, fresh: bool = False
    ) -> tuple[socket.socket, bool]:
        """An idle connection (unless ``fresh``) or a new one, and whether it was reused;
        ``OSError`` when connecting fails."""
        while not fresh:
            connection = self._take(ip, port)
            if connection is None:
                break
            if not _dropped(connection):
                return connection, True
            connection.close()
        connection = socket.create_connection((ip, port), timeout=timeout)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, False

    def _take(self, ip: str, port: int) -> socket.socket | None:
        now = self._clock()
        with self._lock:
            idle = self._idle.get((ip, port))
            while idle:
                connection, since = idle.pop()
                if now - since < IDLE_SECONDS:
                    return connection
                connection.close()
        return None

    def put(self, ip: str, port: int, connection: socket.socket) -> None:
        now = self._clock()
        with self._lock:
            closing = self._expired(now) if now - self._swept >= IDLE_SECONDS else []
            idle = self._idle.setdefault((ip, port), [])
            if len(idle) < IDLE_PER_UPSTREAM:
                idle.append((connection, now))
            else:
                closing.append(connection)
        for stale in closing:
            stale.close()

    def _expired(self, now: float) -> list[socket.socket]:
        """The idle connections kept too long, taken out of every address's list."""
        self._swept = now
        expired: list[socket.socket] = []
        for key, idle in list(self._idle.items()):
            kept = [(c, since) for c, since in idle if now - since < IDLE_SECONDS]
            expired += [c for c, since in idle if now - since >= IDLE_SECONDS]
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]
        return expired

    def close(self) -> None:
        with self._lock:
            connections = [c for idle in self._idle.values() for c, _ in idle]
            self._idle.clear()
        for connection in connections:
            connection.close()


def _dropped(sock: socket.socket) -> bool:
    """An idle connection the upstream closed (or sent something unasked on) is readable."""
    if sock.fileno() < 0:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
