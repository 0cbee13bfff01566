"""One try of an outbound call on the wire: a connection to an instance, the request written,
the answer's head read, and the connection given back to the pool or closed.

What the try's outcome means for the call (retry, eject, answer the app) is decided in
``outbound_call``; this module only moves bytes, under the deadlines the call's plan sets.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lambdamesh_routing.errors import ConnectFailed, ConnectLate, UpstreamAnswerInvalid
from lambdamesh_routing.forwarding import header_problem, host_header
from lambdamesh_routing.hosts import AddressPolicy, Resolver, allowed_addresses
from lambdamesh_routing.instances import Instance
from lambdamesh_routing.retries import may_retry_after_sending
from lambdamesh_routing.router import Plan
from lambdamesh_sidecar.framing import CHUNK, chunk
from lambdamesh_sidecar.upstreams import UpstreamPool

# Addresses of one instance's name tried before it counts as unreachable.
MAX_ADDRESSES = 4
# A reused connection that fails like this, before any answer, was most likely closed by the
# upstream while idle: one more try on a new connection to the same instance, not a failure.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass
class Body:
    """The request body: kept whole (``data``), or a kept head and a stream of the rest."""

    data: bytes
    rest: Iterator[bytes] | None = None

    @property
    def replayable(self) -> bool:
        return self.rest is None


@dataclass
class Exchange:
    """One request sent and its answer's head read, on one connection."""

    ip: str
    port: int
    connection: http.client.HTTPConnection
    sock: socket.socket  # kept: http.client lets go of it when the answer closes it
    response: http.client.HTTPResponse
    reusable: bool = True


class Transport:
    """Connections to instances' allowed addresses, from the pool or new."""

    def __init__(
        self,
        pool: UpstreamPool,
        address_policy: AddressPolicy,
        resolver: Resolver,
        clock: Callable[[], float],
        connect_timeout_seconds: float,
    ) -> None:
        self.pool = pool
        self.address_policy = address_policy
        self.resolver = resolver
        self.clock = clock
        self.connect_timeout_seconds = connect_timeout_seconds

    def send(
        self,
        plan: Plan,
        instance: Instance,
        method: str,
        target: str,
        headers: dict[str, str],
        body: Body,
    ) -> Exchange:
        """The request sent and the answer's head read. A kept-alive connection the upstream
        closed meanwhile costs one more try on a new one, for what may safely be sent again."""
        ip, connection, reused = self._connect(instance, plan)
        try:
            return self._exchange(plan, instance, ip, connection, method, target, headers, body)
        except _STALE:
            connection.close()
            safe = body.replayable and may_retry_after_sending(method)
            if not (reused and safe):
                raise
        except BaseException:
            connection.close()
            raise
        ip, connection, _ = self._connect(instance, plan, fresh=True)
        try:
            return self._exchange(plan, instance, ip, connection, method, target, headers, body)
        except BaseException:
            connection.close()
            raise

    def release(self, exchange: Exchange, bodiless: bool = False) -> None:
        """Back to the pool, once its answer was read to the end (``read1`` leaves a finished
        answer open, so it is closed here) and the upstream keeps the connection alive. The
        answer to a HEAD, a 204 or a 304 has no body, whatever its headers announce."""
        response = exchange.response
        finished = bodiless or complete(response)
        keep = exchange.reusable and not response.will_close and finished
        response.close()
        if keep and exchange.connection.sock is not None:
            self.pool.put(exchange.ip, exchange.port, exchange.connection)
        else:
            exchange.connection.close()

    def _connect(
        self, instance: Instance, plan: Plan, fresh: bool = False
    ) -> tuple[str, http.client.HTTPConnection, bool]:
        """A connection to one of the instance's addresses. ``ConnectFailed`` when the instance
        refused or did not answer within the connect timeout; ``ConnectLate`` when only the
        call's deadline, which may have cut the connect timeout short, stopped it."""
        addresses = allowed_addresses(
            instance.host, instance.port, self.address_policy, self.resolver
        )
        failure: str | None = None
        connect_timeout = self.connect_timeout_seconds
        for ip in addresses[:MAX_ADDRESSES]:
            left = plan.deadline - self.clock()
            if left <= 0:
                break
            try:
                connection, reused = self.pool.get(
                    ip, instance.port, min(connect_timeout, left), fresh
                )
                return ip, connection, reused
            except TimeoutError as exc:
                if left >= connect_timeout:  # given its whole connect timeout
                    failure = reason(exc)
            except OSError as exc:
                failure = reason(exc)
        where = f"{instance.host}:{instance.port}"
        if failure is None:
            raise ConnectLate(f"the call's deadline passed while connecting to {where}")
        raise ConnectFailed(f"cannot connect to {where}: {failure}")

    def _exchange(
        self,
        plan: Plan,
        instance: Instance,
        ip: str,
        connection: http.client.HTTPConnection,
        method: str,
        target: str,
        headers: dict[str, str],
        body: Body,
    ) -> Exchange:
        sock = connection.sock
        assert sock is not None
        sock.settimeout(max(0.001, plan.try_deadline() - self.clock()))
        early = False
        try:
            _write_request(instance, connection, method, target, headers, body)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # An upstream may answer (a 413, say) and close before reading the whole body:
            # that answer, if it arrived, is the one to relay.
            early = True
            try:
                response = connection.getresponse()
            except (OSError, http.client.HTTPException):
                raise exc from None
        else:
            response = connection.getresponse()
        exchange = Exchange(ip, instance.port, connection, sock, response, reusable=not early)
        # http.client passes over 100 Continue only: other interim answers (103 Early Hints)
        # are dropped here, and the connection, whose state http.client lost, not reused.
        while 102 <= exchange.response.status < 200:
            interim = exchange.response
            final = http.client.HTTPResponse(sock, method=method)
            # The same buffered reader: what it read past the interim answer is the next one.
            final.fp, interim.fp = interim.fp, None  # type: ignore[assignment]
            final.begin()
            exchange.response, exchange.reusable = final, False
        if exchange.response.status == 101:
            raise http.client.HTTPException("the upstream switched protocols, which is not relayed")
        problem = header_problem(exchange.response.msg)
        if problem:
            raise UpstreamAnswerInvalid(
                f"{instance.service} {instance.version} answered with header fields the "
                f"outbound port may not pass on: {problem}"
            )
        if exchange.response.getheader("Transfer-Encoding") and exchange.response.getheader(
            "Content-Length"
        ):
            exchange.reusable = False  # framed two ways: trust neither for the next answer
        return exchange


def _write_request(
    instance: Instance,
    connection: http.client.HTTPConnection,
    method: str,
    target: str,
    headers: dict[str, str],
    body: Body,
) -> None:
    connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
    connection.putheader("Host", host_header(instance.host, instance.port))
    for name, value in headers.items():
        connection.putheader(name, value)
    if body.rest is None:
        if body.data or method in ("POST", "PUT", "PATCH"):
            connection.putheader("Content-Length", str(len(body.data)))
        connection.endheaders(body.data or None)
        return
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    connection.send(chunk(body.data))
    for part in body.rest:
        connection.send(chunk(part))
    connection.send(b"0\r\n\r\n")


def read_upto(exchange: Exchange, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the answer, and whether that was all of it."""
    data = bytearray()
    response = exchange.response
    try:
        while len(data) <= limit:
            part = response.read1(CHUNK)
            if not part:
                return bytes(data), complete(response)
            data += part
    except (OSError, http.client.HTTPException):
        exchange.reusable = False
        return bytes(data), False
    return bytes(data), False


def complete(response: http.client.HTTPResponse) -> bool:
    """Whether the answer's body was read to its announced end (a close-delimited one ends
    where the upstream closed)."""
    if response.chunked:
        return response.isclosed()  # http.client closes it after the last chunk
    return response.length is None or response.length == 0


def reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
