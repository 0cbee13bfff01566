"""The outbound port: the app calls ``http://127.0.0.1:{port}/{service}/{version}/{path}``
and the sidecar sends the request straight to a live instance of that service, inside the VPC.

The routing decisions are the gateway's own (``lambdamesh_routing``): the same routable
instances, aliases, strategies, ejection, retries and header rules, and the same JSON errors.
What differs is the transport, which streams:

* a request body of up to ``REPLAY_LIMIT`` bytes is kept, so an idempotent request may be
  sent again to another instance; a longer one streams through and is not retried once sent;
* an answer streams back as it arrives, except a 502/503/504 that may be retried, which is
  read (up to ``RETRY_ANSWER_LIMIT``) so that it can be returned if no retry happens;
* ``LAMBDAMESH_OUTBOUND_TIMEOUT_SECONDS`` (or the policy's) bounds the wait for an answer's
  head, retries included; once an answer streams, each read may wait as long as one try.

It listens on loopback only, needs no token from the app, and connects only to addresses the
gateway would (link-local, metadata and multicast never; loopback only when allowed).
"""

from __future__ import annotations

import http.client
import json
import logging
import select
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from typing import Any, Protocol

from lambdamesh_routing.errors import (
    BadRequest,
    ConnectFailed,
    HostNotAllowed,
    LambdaMeshError,
    NotFound,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from lambdamesh_routing.forwarding import (
    METHODS,
    Headers,
    downstream_headers,
    host_header,
    request_id,
    rewrite_redirect,
    upstream_headers,
)
from lambdamesh_routing.hosts import HostPolicy, Resolver, allowed_addresses, resolve
from lambdamesh_routing.instances import Instance, ServiceView
from lambdamesh_routing.names import check_name
from lambdamesh_routing.router import Call, Plan, Router
from lambdamesh_sidecar.logs import LOGGER_NAME, fields

LOOPBACK = "127.0.0.1"
# Request bodies kept whole so that a retry can send them again.
REPLAY_LIMIT = 1024 * 1024
# A retryable answer (502, 503, 504) read whole to hold it while another instance is tried.
RETRY_ANSWER_LIMIT = 64 * 1024
CHUNK = 64 * 1024
# Idle keep-alive connections kept per upstream address.
IDLE_PER_UPSTREAM = 16
# How long a keep-alive connection from the app may sit idle (and each read of its body take).
APP_IDLE_SECONDS = 60.0
_NO_BODY_STATUSES = frozenset({204, 304})


class RouteNotFound(NotFound):
    code = "route_not_found"


class Overloaded(LambdaMeshError):
    status = 503
    code = "sidecar_overloaded"
    retry_after = 1


class ViewSource(Protocol):
    """What the outbound port needs of the catalog."""

    def view(self, service: str) -> ServiceView: ...


@dataclass(frozen=True)
class OutboundSettings:
    timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 2.0
    max_connections: int = 256


class UpstreamPool:
    """Keep-alive connections to instances, per address; one found closed is dropped."""

    def __init__(self, connect_timeout: float) -> None:
        self._connect_timeout = connect_timeout
        self._idle: dict[tuple[str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def get(self, ip: str, port: int) -> http.client.HTTPConnection:
        """An idle connection, or a new one; raises ``OSError`` when connecting fails."""
        while True:
            with self._lock:
                idle = self._idle.get((ip, port))
                connection = idle.pop() if idle else None
            if connection is None:
                break
            if not _dropped(connection):
                return connection
            connection.close()
        connection = http.client.HTTPConnection(ip, port, timeout=self._connect_timeout)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def put(self, ip: str, port: int, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault((ip, port), [])
            if len(idle) < IDLE_PER_UPSTREAM:
                idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            connections = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for connection in connections:
            connection.close()


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """A idle connection the upstream closed (or sent something unasked on) is readable."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


@dataclass
class _Body:
    """The request body: kept whole (``data``), or a kept head and a stream of the rest."""

    data: bytes
    rest: Iterator[bytes] | None = None

    @property
    def replayable(self) -> bool:
        return self.rest is None


class _Answer:
    """An upstream answer held while another instance is tried."""

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body


class Outbound:
    """The routing and the transport; ``serve`` binds the loopback port."""

    def __init__(
        self,
        views: ViewSource,
        router: Router,
        host_policy: HostPolicy,
        caller_address: str | None,
        settings: OutboundSettings = OutboundSettings(),
        resolver: Resolver = resolve,
        logger: logging.Logger | None = None,
    ) -> None:
        self.views = views
        self.router = router
        self.host_policy = host_policy
        self.caller_address = caller_address
        self.settings = settings
        self.resolver = resolver
        self.pool = UpstreamPool(settings.connect_timeout_seconds)
        self.log = logger or logging.getLogger(LOGGER_NAME)

    def serve(self, port: int) -> OutboundServer:
        """Bind ``127.0.0.1:port`` (``OSError`` if taken); serve with ``serve_forever``."""
        return OutboundServer((LOOPBACK, port), self)


class OutboundServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], outbound: Outbound) -> None:
        self.outbound = outbound
        self._slots = threading.BoundedSemaphore(outbound.settings.max_connections)
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _refuse_overloaded(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def server_close(self) -> None:
        super().server_close()
        self.outbound.pool.close()


def _refuse_overloaded(sock: socket.socket) -> None:
    error = Overloaded("the sidecar's outbound port is serving as many connections as it may")
    body = _error_body(error, request_id(None))
    head = (
        f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    try:
        sock.settimeout(1.0)
        sock.sendall(head.encode() + body)
    except OSError:
        pass


def _error_body(error: LambdaMeshError, rid: str) -> bytes:
    envelope = {"error": {"code": error.code, "message": error.message, "request_id": rid}}
    return json.dumps(envelope).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = APP_IDLE_SECONDS
    server: OutboundServer

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: the app logs its own calls; failures are logged as they happen."""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _proxy(self) -> None:
        rid = request_id(self.headers.get("X-Request-Id"))
        try:
            _Call(self, self.server.outbound, rid).run()
        except LambdaMeshError as error:
            self._answer_error(error, rid)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _proxy

    def _answer_error(self, error: LambdaMeshError, rid: str) -> None:
        body = _error_body(error, rid)
        self.send_response_only(error.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", rid)
        for name, value in error.headers().items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


assert set(METHODS) == {name[3:] for name in vars(_Handler) if name.startswith("do_")}


class _Call:
    """One call from the app, from its request line to the end of its answer."""

    def __init__(self, handler: _Handler, outbound: Outbound, rid: str) -> None:
        self.handler = handler
        self.outbound = outbound
        self.rid = rid
        self.method = handler.command

    def run(self) -> None:
        service, version, target = self._route()
        body = self._body()
        try:
            self._route_and_send(service, version, target, body)
        except LambdaMeshError:
            if body.rest is not None:
                self.handler.close_connection = True  # the body's unread rest is on the wire
            raise

    def _route_and_send(self, service: str, version: str, target: str, body: _Body) -> None:
        headers = _incoming_headers(self.handler)
        view = self.outbound.views.view(service)
        call = Call(
            service,
            version,
            self.method,
            headers,
            self.outbound.caller_address,
            replayable=body.replayable,
        )
        plan = self.outbound.router.plan(call, view, self.outbound.settings.timeout_seconds)
        if plan.panic:
            self.outbound.log.warning(
                "panic mode: routing over every live instance %s",
                fields(service=service, version=plan.version, live=len(plan.live)),
            )
        outgoing = upstream_headers(
            headers, client_ip=self.outbound.caller_address, proto="http", request_id=self.rid
        )
        # The app's Expect was answered here; the body is sent without waiting.
        outgoing = {k: v for k, v in outgoing.items() if k.lower() != "expect"}
        self._tries(plan, target, outgoing, body, f"/{service}/{version}")

    def _route(self) -> tuple[str, str, str]:
        path, sep, query = self.handler.path.partition("?")
        parts = path.split("/", 3)
        if not path.startswith("/") or len(parts) < 3 or not parts[1] or not parts[2]:
            self.handler.close_connection = True
            raise RouteNotFound("call /{service}/{version}/{path} on the outbound port")
        service, version = parts[1], parts[2]
        check_name("service", service)
        check_name("version", version)
        rest = parts[3] if len(parts) > 3 else ""
        return service, version, f"/{rest}{sep}{query}"

    def _body(self) -> _Body:
        handler = self.handler
        chunked = "chunked" in handler.headers.get("Transfer-Encoding", "").lower()
        length = handler.headers.get("Content-Length")
        if chunked and length is not None:
            handler.close_connection = True
            raise BadRequest("a request may not carry both Content-Length and chunked encoding")
        if chunked:
            stream = _chunks(handler.rfile)
        elif length is not None:
            if not length.isdigit():
                handler.close_connection = True
                raise BadRequest(f"Content-Length {length[:40]!r} is not a number")
            stream = _exactly(handler.rfile, int(length))
        else:
            return _Body(b"")
        head = bytearray()
        for chunk in stream:
            head += chunk
            if len(head) > REPLAY_LIMIT:
                # Too long to keep: whatever happens next, the connection cannot be reused
                # unless the body is read to its end, which the send does.
                return _Body(bytes(head), stream)
        return _Body(bytes(head))

    def _tries(
        self, plan: Plan, target: str, headers: dict[str, str], body: _Body, prefix: str
    ) -> None:
        held: _Answer | None = None
        error: LambdaMeshError = UpstreamUnreachable(
            f"no instance of {plan.call.service} {plan.call.version} could be reached"
        )
        for instance in plan:
            plan.started(instance)
            try:
                outcome = self._try(plan, instance, target, headers, body, prefix)
            finally:
                plan.finished(instance)
            if outcome is None:
                return  # answered
            if isinstance(outcome, _Answer):
                held = outcome
            else:
                held, error = None, outcome
        if held is not None:
            self._send_held(held)
            return
        if plan.late and not plan.sent:
            error = UpstreamTimeout(
                f"{plan.call.service} {plan.call.version} did not answer in time"
            )
        raise error

    def _try(
        self,
        plan: Plan,
        instance: Instance,
        target: str,
        headers: dict[str, str],
        body: _Body,
        prefix: str,
    ) -> _Answer | LambdaMeshError | None:
        """None when the answer went to the app; an answer held for a retry; or the error."""
        try:
            ip, connection = self._connect(instance)
        except (ConnectFailed, HostNotAllowed) as exc:
            self._log_failure(instance, exc.code, exc.message)
            plan.connect_failed(instance)
            return UpstreamUnreachable(
                f"no instance of {plan.call.service} {plan.call.version} could be reached"
            )
        try:
            response = self._exchange(plan, instance, connection, target, headers, body)
        except TimeoutError:
            connection.close()
            self._log_failure(instance, "upstream_timeout", "no answer in time")
            self._log_ejection(instance, plan.timed_out(instance))
            return UpstreamTimeout(
                f"{plan.call.service} {plan.call.version} did not answer in time"
            )
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            self._log_failure(instance, "upstream_unreachable", _reason(exc))
            self._log_ejection(instance, plan.reset(instance))
            return UpstreamUnreachable(
                f"no instance of {plan.call.service} {plan.call.version} could be reached"
            )
        self._log_ejection(instance, plan.answered(instance, response.status))
        if plan.retryable:
            held = self._hold(response, connection, ip, instance.port)
            if held is not None:
                return held
            plan.gave_up()
        self._stream(response, connection, ip, instance, plan, prefix)
        return None

    def _connect(self, instance: Instance) -> tuple[str, http.client.HTTPConnection]:
        addresses = allowed_addresses(
            instance.host, instance.port, self.outbound.host_policy, self.outbound.resolver
        )
        failure = ""
        for ip in addresses:
            try:
                return ip, self.outbound.pool.get(ip, instance.port)
            except OSError as exc:
                failure = _reason(exc)
        raise ConnectFailed(f"cannot connect to {instance.host}:{instance.port}: {failure}")

    def _exchange(
        self,
        plan: Plan,
        instance: Instance,
        connection: http.client.HTTPConnection,
        target: str,
        headers: dict[str, str],
        body: _Body,
    ) -> http.client.HTTPResponse:
        left = max(0.001, plan.try_deadline() - self.outbound.router.clock())
        assert connection.sock is not None
        connection.sock.settimeout(left)
        connection.putrequest(self.method, target, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host_header(instance.host, instance.port))
        for name, value in headers.items():
            connection.putheader(name, value)
        if body.rest is None:
            if body.data or self.method in ("POST", "PUT", "PATCH"):
                connection.putheader("Content-Length", str(len(body.data)))
            connection.endheaders(body.data or None)
        else:
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            for chunk in _prepend(body.data, body.rest):
                connection.send(_chunk(chunk))
            connection.send(b"0\r\n\r\n")
        return connection.getresponse()

    def _hold(
        self,
        response: http.client.HTTPResponse,
        connection: http.client.HTTPConnection,
        ip: str,
        port: int,
    ) -> _Answer | None:
        """Read a retryable answer whole, if it is short; None (nothing read) if it is not."""
        length = response.getheader("Content-Length")
        if length is None or not length.isdigit() or int(length) > RETRY_ANSWER_LIMIT:
            return None
        try:
            data = response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            return _Answer(response.status, response.reason, response.getheaders(), b"")
        self._release(response, connection, ip, port)
        return _Answer(response.status, response.reason, response.getheaders(), data)

    def _send_held(self, held: _Answer) -> None:
        headers = downstream_headers(held.headers, self.rid, head=self.method == "HEAD")
        if self.method == "HEAD":
            self.handler.wfile.write(self._head(held.status, headers, None))
            return
        self.handler.wfile.write(self._head(held.status, headers, len(held.body)) + held.body)

    def _stream(
        self,
        response: http.client.HTTPResponse,
        connection: http.client.HTTPConnection,
        ip: str,
        instance: Instance,
        plan: Plan,
        prefix: str,
    ) -> None:
        headers = downstream_headers(response.getheaders(), self.rid, head=self.method == "HEAD")
        if plan.policy.rewrite_redirects and 300 <= response.status < 400:
            rewrite_redirect(headers, prefix, instance.host, instance.port)
        if self.method == "HEAD" or response.status in _NO_BODY_STATUSES:
            self.handler.wfile.write(self._head(response.status, headers, None))
            self._release(response, connection, ip, instance.port)
            return
        length = response.getheader("Content-Length")
        size = int(length) if length is not None and length.isdigit() else None
        frame = _as_is if size is not None else _chunk
        complete = False
        try:
            # Once the answer streams, each read may wait as long as one try may.
            assert connection.sock is not None
            connection.sock.settimeout(self.outbound.settings.timeout_seconds)
            # The head goes out with the first part of the body: one write for a short answer.
            chunk = response.read1(CHUNK)
            head = self._head(response.status, headers, size, chunked=size is None)
            self.handler.wfile.write(head + frame(chunk) if chunk else head)
            while chunk:
                chunk = response.read1(CHUNK)
                if chunk:
                    self.handler.wfile.write(frame(chunk))
            if size is None:
                self.handler.wfile.write(b"0\r\n\r\n")
            complete = True
        except (OSError, http.client.HTTPException) as exc:
            # Too late for an error answer: cut the app's connection so it sees the body end
            # early rather than a short body that looks whole.
            self._log_failure(
                instance, "upstream_unreachable", f"failed while sending: {_reason(exc)}"
            )
            self.handler.close_connection = True
        finally:
            if complete:
                self._release(response, connection, ip, instance.port)
            else:
                connection.close()

    def _head(
        self, status: int, headers: Headers, length: int | None, chunked: bool = False
    ) -> bytes:
        """The answer's status line and headers, to be written with the body's start."""
        lines = [f"HTTP/1.1 {status} {_phrase(status)}"]
        for name, value in headers.items():
            lines += [f"{name}: {one}" for one in ([value] if isinstance(value, str) else value)]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        elif chunked:
            lines.append("Transfer-Encoding: chunked")
        if self.handler.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")

    def _release(
        self,
        response: http.client.HTTPResponse,
        connection: http.client.HTTPConnection,
        ip: str,
        port: int,
    ) -> None:
        """Back to the pool, once its answer was read to the end (``read1`` leaves a finished
        answer open, so it is closed here) and the upstream keeps the connection alive."""
        keep = not response.will_close
        response.close()
        if keep:
            self.outbound.pool.put(ip, port, connection)
        else:
            connection.close()

    def _log_failure(self, instance: Instance, code: str, reason: str) -> None:
        self.outbound.log.warning(
            "upstream failed %s",
            fields(
                request_id=self.rid,
                service=instance.service,
                instance=instance.instance_id,
                error=code,
                reason=reason,
            ),
        )

    def _log_ejection(self, instance: Instance, seconds: float) -> None:
        if seconds:
            self.outbound.log.warning(
                "outlier ejected %s",
                fields(service=instance.service, instance=instance.instance_id, seconds=seconds),
            )


def _incoming_headers(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    """The app's headers, repeated ones joined as RFC 9110 allows (cookies with "; ")."""
    headers: dict[str, str] = {}
    for name, value in handler.headers.items():
        if name in headers:
            joiner = "; " if name.lower() == "cookie" else ", "
            headers[name] = f"{headers[name]}{joiner}{value}"
        else:
            headers[name] = value
    return headers


def _exactly(stream: BufferedIOBase, length: int) -> Iterator[bytes]:
    left = length
    while left > 0:
        chunk = stream.read(min(CHUNK, left))
        if not chunk:
            raise BadRequest("the request body ended before its Content-Length")
        left -= len(chunk)
        yield chunk


def _chunks(stream: BufferedIOBase) -> Iterator[bytes]:
    """A chunked request body, decoded (trailers read and dropped)."""
    while True:
        line = stream.readline(1024)
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadRequest("the request's chunked encoding is malformed") from None
        if size == 0:
            while stream.readline(1024) not in (b"\r\n", b"\n", b""):
                pass
            return
        yield from _exactly(stream, size)
        if stream.readline(8) not in (b"\r\n", b"\n"):
            raise BadRequest("the request's chunked encoding is malformed")


def _as_is(chunk: bytes) -> bytes:
    return chunk


def _chunk(chunk: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(chunk), chunk)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
