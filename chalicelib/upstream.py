"""The one pooled HTTP client the gateway uses to reach instances.

Created once per process and reused across invocations: a warm Lambda keeps its connections.
Errors are sorted by whether the request could have reached the upstream, because only a
connection that failed before anything was sent may be retried on another instance whatever
the method.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
)

from chalicelib.errors import (
    HostNotAllowed,
    UpstreamResponseTooLarge,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from chalicelib.hosts import HostPolicy, parse_ip, refusal_reason

_CHUNK = 64 * 1024
Resolver = Callable[[str, int], list[str]]


class ConnectFailed(UpstreamUnreachable):
    """Nothing was sent: safe to try another instance for any method."""


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class UpstreamClient:
    def __init__(
        self,
        policy: HostPolicy,
        connect_timeout: float = 2.0,
        read_timeout: float = 25.0,
        max_response_body: int = 4 * 1024 * 1024,
        pool_maxsize: int = 10,
        resolver: Resolver = resolve,
    ) -> None:
        self._policy = policy
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._max_body = max_response_body
        self._resolver = resolver
        self._pool = urllib3.PoolManager(
            num_pools=50, maxsize=pool_maxsize, block=False, retries=False
        )

    def address_for(self, host: str, port: int) -> str:
        """The IP to connect to, checked again here: a DNS name can point anywhere, and the
        policy may have tightened since the instance registered."""
        literal = parse_ip(host)
        if literal is not None:
            reason = refusal_reason(literal, self._policy)
            if reason:
                raise HostNotAllowed(f"upstream host {host!r} is {reason}")
            return host
        try:
            candidates = self._resolver(host, port)
        except OSError as exc:
            raise ConnectFailed(f"cannot resolve upstream host {host!r}: {exc}") from None
        for candidate in candidates:
            address = parse_ip(candidate)
            if address is not None and refusal_reason(address, self._policy) is None:
                return candidate
        raise HostNotAllowed(f"upstream host {host!r} resolves to no address the gateway may reach")

    def send(
        self,
        method: str,
        host: str,
        port: int,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None,
    ) -> UpstreamResponse:
        ip = self.address_for(host, port)
        pool = self._pool.connection_from_host(ip, port, scheme="http")
        outgoing = dict(headers)
        outgoing["Host"] = host if port == 80 else f"{host}:{port}"
        try:
            response = pool.urlopen(
                method,
                target,
                body=body,
                headers=outgoing,
                timeout=self._timeout,
                redirect=False,
                preload_content=False,
                decode_content=False,
                assert_same_host=False,
            )
        except (NewConnectionError, ConnectTimeoutError) as exc:
            raise ConnectFailed(
                f"cannot connect to upstream {host}:{port}: {_reason(exc)}"
            ) from None
        except ReadTimeoutError:
            raise UpstreamTimeout(f"upstream {host}:{port} did not answer in time") from None
        except HTTPError as exc:
            raise UpstreamUnreachable(f"upstream {host}:{port} failed: {_reason(exc)}") from None
        return self._read(response, host, port)

    def _read(self, response: urllib3.BaseHTTPResponse, host: str, port: int) -> UpstreamResponse:
        complete = False
        try:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.stream(_CHUNK, decode_content=False):
                size += len(chunk)
                if size > self._max_body:
                    raise UpstreamResponseTooLarge(
                        f"upstream {host}:{port} answered with more than {self._max_body} bytes"
                    )
                chunks.append(chunk)
            complete = True
        except ReadTimeoutError:
            raise UpstreamTimeout(f"upstream {host}:{port} stopped sending in time") from None
        except HTTPError as exc:
            raise UpstreamUnreachable(f"upstream {host}:{port} failed: {_reason(exc)}") from None
        finally:
            if not complete:
                response.close()  # a half-read connection must not go back to the pool
            response.release_conn()
        return UpstreamResponse(response.status, list(response.headers.items()), b"".join(chunks))


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[-1] if ": " in text else text or type(exc).__name__
