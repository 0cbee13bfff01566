"""Is the app ready for traffic? Asked before the first registration and before each heartbeat.

The probe goes to the very address being registered, so it checks what the gateway will use:
an app bound only to 127.0.0.1 fails here rather than after the gateway starts routing to it.
Plain ``http.client`` keeps any ``HTTP_PROXY`` setting out of the way of this local call.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable

from lambdamesh_sidecar.client import USER_AGENT

ReadinessCheck = Callable[[], bool]
Connect = Callable[[tuple[str, int], float], socket.socket]
ConnectionFactory = Callable[[str, int, float], http.client.HTTPConnection]


class TcpReadiness:
    """Ready once the port accepts a connection: all an app without a health route can offer."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 1.0,
        connect: Connect = socket.create_connection,
    ) -> None:
        self._address = (host, port)
        self._timeout = timeout
        self._connect = connect

    def __call__(self) -> bool:
        try:
            connection = self._connect(self._address, self._timeout)
        except OSError:
            return False
        connection.close()
        return True


def _http_connection(host: str, port: int, timeout: float) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(host, port, timeout=timeout)


class HttpReadiness:
    """Ready while GET of the health path answers 2xx or 3xx within the timeout."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        timeout: float = 1.0,
        connection_factory: ConnectionFactory = _http_connection,
    ) -> None:
        self._host = host
        self._port = port
        self._path = path
        self._timeout = timeout
        self._connection_factory = connection_factory

    def __call__(self) -> bool:
        connection = self._connection_factory(self._host, self._port, self._timeout)
        try:
            connection.request("GET", self._path, headers={"User-Agent": USER_AGENT})
            status = connection.getresponse().status
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()
        return 200 <= status < 400


def readiness_check(host: str, port: int, health_path: str | None) -> ReadinessCheck:
    if health_path is None:
        return TcpReadiness(host, port)
    return HttpReadiness(host, port, health_path)
