"""One try of an outbound call on the wire: a connection to an instance, the request written,
the answer's head read, and the connection given back to the pool or closed.

What the try's outcome means for the call (retry, eject, answer the app) is decided in
``outbound_call``; this module only moves bytes, under the deadlines the call's plan sets.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from lambdamesh_routing.errors import (
    ConnectFailed,
    ConnectLate,
    MtlsUnavailable,
    UpstreamAnswerInvalid,
)
from lambdamesh_routing.forwarding import host_header
from lambdamesh_routing.hosts import AddressPolicy, Resolver, allowed_addresses, parse_ip
from lambdamesh_routing.identity import peer_identity
from lambdamesh_routing.instances import Instance
from lambdamesh_routing.retries import may_retry_after_sending
from lambdamesh_sidecar.messages import AnswerBroken, AnswerInvalid, AnswerReader, NoAnswer
from lambdamesh_sidecar.upstreams import UpstreamPool

if TYPE_CHECKING:
    from lambdamesh_sidecar.identity import Credentials

# Addresses of one instance's name tried before it counts as unreachable.
MAX_ADDRESSES = 4
# How many instances' checked IP addresses are remembered at once.
MAX_REMEMBERED = 4096
# A body up to this size is sent in one write with the head.
_ONE_WRITE = 64 * 1024
# A reused connection that fails like this, before any answer, was most likely closed by the
# upstream while idle: one more try on a new connection to the same instance, not a failure.
_STALE = (NoAnswer, ConnectionResetError, BrokenPipeError)


class Deadlines(Protocol):
    """When a call must have its answer (``deadline``) and this try its answer's head
    (``try_deadline()``), on the transport's clock: a routed call's ``router.Plan``."""

    @property
    def deadline(self) -> float: ...

    def try_deadline(self) -> float: ...


@dataclass
class Body:
    """The request body: kept whole (``data``), or a kept head and a stream of the rest,
    of ``length`` bytes in all when the caller announced it. Such a body is sent with that
    ``Content-Length``, the framing every server reads (Python's ``http.server`` reads no
    chunked body); one whose length is unknown is sent chunked."""

    data: bytes
    rest: Iterator[bytes] | None = None
    length: int | None = None

    @property
    def replayable(self) -> bool:
        return self.rest is None


@dataclass
class Exchange:
    """One request sent and its answer's head read, on one connection."""

    ip: str
    port: int
    sock: socket.socket
    answer: AnswerReader
    reusable: bool = True


class Transport:
    """Connections to instances' allowed addresses, from the pool or new; to an instance
    marked ``tls`` (a sidecar's inbound port), mutual TLS with this sidecar's certificate
    (``credentials``), whose callee must prove the service it was picked for."""

    def __init__(
        self,
        pool: UpstreamPool,
        address_policy: AddressPolicy,
        resolver: Resolver,
        clock: Callable[[], float],
        connect_timeout_seconds: float,
        credentials: Callable[[], Credentials | None] = lambda: None,
    ) -> None:
        self.pool = pool
        self.credentials = credentials
        self.address_policy = address_policy
        self.resolver = resolver
        self.clock = clock
        self.connect_timeout_seconds = connect_timeout_seconds
        # Instances' IP addresses the policy allowed: the verdict on an IP never changes for
        # this transport's policy. A DNS name is resolved and judged on every try.
        self._allowed: dict[tuple[str, int], list[str]] = {}

    def send(
        self,
        plan: Deadlines,
        instance: Instance,
        method: str,
        target: str,
        headers: dict[str, str],
        body: Body,
    ) -> Exchange:
        """The request sent and the answer's head read. A kept-alive connection the upstream
        closed meanwhile costs one more try on a new one, for what may safely be sent again."""
        ip, sock, reused = self._connect(instance, plan)
        try:
            return self._exchange(plan, instance, ip, sock, method, target, headers, body)
        except _STALE:
            sock.close()
            safe = body.replayable and may_retry_after_sending(method)
            if not (reused and safe):
                raise
        except BaseException:
            sock.close()
            raise
        ip, sock, _ = self._connect(instance, plan, fresh=True)
        try:
            return self._exchange(plan, instance, ip, sock, method, target, headers, body)
        except BaseException:
            sock.close()
            raise

    def release(self, exchange: Exchange) -> None:
        """Back to the pool, once its answer was read to the end and the upstream keeps the
        connection alive; closed otherwise."""
        if exchange.reusable and exchange.answer.reusable:
            self.pool.put(exchange.ip, exchange.port, exchange.sock)
        else:
            exchange.sock.close()

    def addresses(self, instance: Instance) -> list[str]:
        """The instance's addresses its policy allows (``allowed_addresses``)."""
        key = (instance.host, instance.port)
        known = self._allowed.get(key)
        if known is not None:
            return known
        found = allowed_addresses(instance.host, instance.port, self.address_policy, self.resolver)
        if parse_ip(instance.host) is not None:
            if len(self._allowed) >= MAX_REMEMBERED:
                self._allowed.clear()
            self._allowed[key] = found
        return found

    def _connect(
        self, instance: Instance, plan: Deadlines, fresh: bool = False
    ) -> tuple[str, socket.socket, bool]:
        """A connection to one of the instance's addresses. ``ConnectFailed`` when the instance
        refused or did not answer within the connect timeout; ``ConnectLate`` when only the
        call's deadline, which may have cut the connect timeout short, stopped it."""
        addresses = self.addresses(instance)
        failure: str | None = None
        connect_timeout = self.connect_timeout_seconds
        credentials = self.credentials() if instance.tls else None
        if instance.tls and credentials is None:
            raise MtlsUnavailable(
                f"{instance.service} takes mutual TLS only, and this sidecar holds no mesh "
                "certificate yet (see its log)"
            )
        for ip in addresses[:MAX_ADDRESSES]:
            left = plan.deadline - self.clock()
            if left <= 0:
                break
            try:
                sock, reused = self.pool.get(ip, instance.port, min(connect_timeout, left), fresh)
                if credentials is not None and not reused:
                    sock = _secured(sock, credentials, instance)
                return ip, sock, reused
            except WrongIdentity as exc:
                failure = str(exc)
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
        plan: Deadlines,
        instance: Instance,
        ip: str,
        sock: socket.socket,
        method: str,
        target: str,
        headers: dict[str, str],
        body: Body,
    ) -> Exchange:
        sock.settimeout(max(0.001, plan.try_deadline() - self.clock()))
        answer = AnswerReader(sock, method)
        early = False
        try:
            _write_request(instance, sock, method, target, headers, body)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # An upstream may answer (a 413, say) and close before reading the whole body:
            # that answer, if it arrived, is the one to relay.
            early = True
            try:
                answer.read_head()
            except (OSError, AnswerBroken, AnswerInvalid):
                raise exc from None
        else:
            try:
                answer.read_head()
            except AnswerInvalid as problem:
                raise UpstreamAnswerInvalid(
                    f"{instance.service} {instance.version} answered with header fields the "
                    f"outbound port may not pass on: {problem}"
                ) from None
        return Exchange(ip, instance.port, sock, answer, reusable=not early)


class WrongIdentity(Exception):
    """The callee proved another identity than the service it was picked for."""


def _secured(sock: socket.socket, credentials: Credentials, instance: Instance) -> socket.socket:
    """``sock`` with mutual TLS done, its callee proven to be ``instance``'s service; the
    handshake runs under the connect timeout still set on ``sock``."""
    try:
        tls = credentials.client.wrap_socket(sock)
    except BaseException:
        sock.close()
        raise
    own = credentials.identity
    proven = peer_identity(tls.getpeercert(), own.trust_domain, own.stage)
    if proven is None or proven.name != instance.service:
        tls.close()
        raise WrongIdentity(
            f"the instance proved {proven.uri if proven else 'no identity of this mesh'}, not "
            f"service {instance.service!r}"
        )
    return tls


def _write_request(
    instance: Instance,
    sock: socket.socket,
    method: str,
    target: str,
    headers: dict[str, str],
    body: Body,
) -> None:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host_header(instance.host, instance.port)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body.rest is None:
        if body.data or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body.data)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if len(body.data) <= _ONE_WRITE:
            sock.sendall(head + body.data)
        else:
            sock.sendall(head)
            sock.sendall(body.data)
        return
    if body.length is not None:
        lines.append(f"Content-Length: {body.length}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body.data)
        for part in body.rest:
            sock.sendall(part)
        return
    lines.append("Transfer-Encoding: chunked")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + chunk(body.data))
    for part in body.rest:
        sock.sendall(chunk(part))
    sock.sendall(b"0\r\n\r\n")


def read_upto(exchange: Exchange, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the answer, and whether that was all of it."""
    data = bytearray()
    answer = exchange.answer
    try:
        while len(data) <= limit:
            part = answer.read1()
            if not part:
                return bytes(data), answer.complete
            data += part
    except (OSError, AnswerBroken):
        exchange.reusable = False
        return bytes(data), False
    return bytes(data), False


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
