"""The one pooled HTTP client the gateway uses to reach instances.

Created once per process and reused across invocations: a warm Lambda keeps its connections.
Errors are sorted by whether the request could have reached the upstream, because only a
connection that failed before anything was sent may be retried on another instance whatever
the method.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)

from chalicelib.config import Settings
from chalicelib.errors import (
    ConfigError,
    ConnectLate,
    UpstreamAnswerInvalid,
    UpstreamResponseTooLarge,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from chalicelib.observability import logger
from lambdamesh_routing.errors import ConnectFailed, MtlsUnavailable
from lambdamesh_routing.forwarding import field_problem, host_header
from lambdamesh_routing.hosts import AddressPolicy, Resolver, allowed_addresses, resolve

if TYPE_CHECKING:
    from chalicelib.mesh_pools import MeshPools

_CHUNK = 64 * 1024
# IP-literal hosts the address policy allows, remembered so that each request does not parse
# and check the same address again; cleared when it grows past this many.
MAX_REMEMBERED_HOSTS = 4096


class WrongIdentity(HTTPError):
    """Over mutual TLS, the callee proved another identity than the service it was picked
    for (``mesh_pools``): nothing was sent, and the connection is closed."""


class UpstreamResponse(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class UpstreamClient:
    def __init__(
        self,
        addresses: AddressPolicy,
        connect_timeout: float = Settings.connect_timeout,
        read_timeout: float = Settings.read_timeout,
        max_response_body: int = Settings.max_response_body,
        pool_maxsize: int = Settings.pool_maxsize,
        resolver: Resolver = resolve,
        clock: Callable[[], float] = time.monotonic,
        mesh: Callable[[], MeshPools] | None = None,
    ) -> None:
        """``mesh`` makes the pools to instances that take mutual TLS (``mesh_pools``), on
        first use: a function that calls none never builds them."""
        self._addresses = addresses
        self._mesh_factory = mesh
        self._mesh: MeshPools | None = None
        self._pool_maxsize = pool_maxsize
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_body = max_response_body
        self._resolver = resolver
        self._clock = clock
        self._pool = urllib3.PoolManager(
            num_pools=50, maxsize=pool_maxsize, block=False, retries=False
        )
        self._allowed_literals: set[str] = set()

    def addresses_for(self, host: str, port: int) -> list[str]:
        """The addresses ``allowed_addresses`` gives. An IP address it allowed is allowed
        again without being checked: this client's policy does not change, and there is
        nothing to resolve. A name is resolved and checked every time."""
        if host in self._allowed_literals:
            return [host]
        found = allowed_addresses(host, port, self._addresses, self._resolver)
        if found == [host]:
            if len(self._allowed_literals) >= MAX_REMEMBERED_HOSTS:
                self._allowed_literals.clear()
            self._allowed_literals.add(host)
        return found

    def send(
        self,
        method: str,
        host: str,
        port: int,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None,
        deadline: float | None = None,
        tls_service: str | None = None,
    ) -> UpstreamResponse:
        """One request (over mutual TLS with the gateway's certificate when ``tls_service``
        names the service the instance must prove); ``deadline`` (on this client's clock)
        bounds it as a whole, since urllib3's read timeout bounds each read and a trickling
        upstream could go on.

        A name with several addresses (IPv6 and IPv4, say) is tried address by address while
        connecting fails, as a browser would, before the instance counts as unreachable.
        """
        addresses = self.addresses_for(host, port)
        request = (method, host, port, target, headers, body, deadline, tls_service)
        for ip in addresses[:-1]:
            try:
                return self._send_to(ip, *request)
            except ConnectFailed:
                continue
        return self._send_to(addresses[-1], *request)

    def _send_to(
        self,
        ip: str,
        method: str,
        host: str,
        port: int,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None,
        deadline: float | None,
        tls_service: str | None,
    ) -> UpstreamResponse:
        pool = self._pool_for(ip, host, port, tls_service)
        outgoing = dict(headers)
        outgoing["Host"] = host_header(host, port)
        try:
            response = pool.urlopen(
                method,
                target,
                body=body,
                headers=outgoing,
                timeout=self._timeout_until(deadline),
                redirect=False,
                preload_content=False,
                decode_content=False,
                assert_same_host=False,
            )
        except (NewConnectionError, SSLError, WrongIdentity) as exc:
            # Refused or unreachable (a ConnectTimeoutError too), or, over mutual TLS, a
            # handshake that failed or a callee of another identity: nothing was sent.
            raise ConnectFailed(
                f"cannot connect to upstream {host}:{port}: {_reason(exc)}"
            ) from None
        except ConnectTimeoutError:
            if deadline is not None and self._clock() >= deadline:
                raise ConnectLate(
                    f"the request's deadline passed while connecting to {host}:{port}"
                ) from None
            raise ConnectFailed(f"cannot connect to upstream {host}:{port}: timed out") from None
        except ReadTimeoutError:
            raise UpstreamTimeout(f"upstream {host}:{port} did not answer in time") from None
        except HTTPError as exc:
            raise UpstreamUnreachable(f"upstream {host}:{port} failed: {_reason(exc)}") from None
        # One pass over urllib3's header view (list() would size it first, a second pass).
        fields = [(name, value) for name, value in response.headers.items()]
        problem = field_problem(fields)
        if problem:
            response.close()  # the rest of this answer cannot be trusted to frame the next
            response.release_conn()
            raise UpstreamAnswerInvalid(f"upstream {host}:{port} answered {problem}")
        return UpstreamResponse(response.status, fields, self._read(response, host, port, deadline))

    def _pool_for(
        self, ip: str, host: str, port: int, tls_service: str | None
    ) -> urllib3.HTTPConnectionPool:
        """The pool for one address. urllib3 refusing the address (LocationValueError, say,
        for a host stored under older rules) happens before anything is sent."""
        if tls_service is not None:
            return self._mesh_pool(ip, port, tls_service)
        try:
            return self._pool.connection_from_host(ip, port, scheme="http")
        except (ValueError, HTTPError) as exc:
            raise ConnectFailed(
                f"cannot connect to upstream {host}:{port}: {_reason(exc)}"
            ) from None

    def _mesh_pool(self, ip: str, port: int, service: str) -> urllib3.HTTPConnectionPool:
        if self._mesh is None:
            if self._mesh_factory is None:
                raise MtlsUnavailable(f"{service} takes mutual TLS only; this client has none")
            self._mesh = self._mesh_factory()
        try:
            return self._mesh.pool_for(ip, port, service)
        except ConfigError as exc:
            logger.error(
                "the gateway has no mesh certificate",
                extra={"service": service, "reason": exc.message},
            )
            raise MtlsUnavailable(
                f"{service} takes mutual TLS only, and the gateway holds no mesh certificate"
            ) from None

    def _timeout_until(self, deadline: float | None) -> urllib3.Timeout:
        left = float("inf") if deadline is None else max(0.001, deadline - self._clock())
        return urllib3.Timeout(
            connect=min(left, self._connect_timeout), read=min(left, self._read_timeout)
        )

    def _read(
        self,
        response: urllib3.BaseHTTPResponse,
        host: str,
        port: int,
        deadline: float | None = None,
    ) -> bytes:
        """The answer's body, read within the size limit and the deadline."""
        complete = False
        try:
            chunks: list[bytes] = []
            size = 0
            # read1 returns what has arrived, so a trickle is checked against the deadline
            # between reads instead of blocking until a whole chunk has come in.
            while chunk := response.read1(_CHUNK, decode_content=False):
                size += len(chunk)
                if size > self._max_body:
                    raise UpstreamResponseTooLarge(
                        f"upstream {host}:{port} answered with more than {self._max_body} bytes"
                    )
                chunks.append(chunk)
                if deadline is not None and self._clock() > deadline:
                    raise UpstreamTimeout(
                        f"upstream {host}:{port} is still sending at the deadline"
                    )
            complete = True
        except ReadTimeoutError:
            raise UpstreamTimeout(f"upstream {host}:{port} stopped sending in time") from None
        except HTTPError as exc:
            raise UpstreamUnreachable(f"upstream {host}:{port} failed: {_reason(exc)}") from None
        finally:
            if not complete:
                response.close()  # a half-read connection must not go back to the pool
            response.release_conn()
        return b"".join(chunks)


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[-1] if ": " in text else text or type(exc).__name__
