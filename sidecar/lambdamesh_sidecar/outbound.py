"""The outbound port: the app calls ``http://127.0.0.1:{port}/{service}/{version}/{path}``
and the sidecar sends the request straight to a live instance of that service, inside the VPC.

The routing decisions are the gateway's own (``lambdamesh_routing``): the same routable
instances, aliases, strategies, ejection, retries and header rules, and the same JSON errors.
What differs is the transport, which streams:

* a request body of up to ``REPLAY_LIMIT`` bytes is kept, so an idempotent request may be
  sent again to another instance; a longer one streams through and is not retried once sent;
* an answer streams back as it arrives, except a 502/503/504 that may be retried, which is
  read (up to ``RETRY_ANSWER_LIMIT``) so that it can be returned if no retry happens;
* ``LAMBDAMESH_OUTBOUND_TIMEOUT_SECONDS`` (or the policy's) bounds connecting and each wait
  for the answer's head, retries included; once an answer streams, each read may wait as
  long again.

A call for a service or version its view does not know has the view read again at once
(``ViewSource.recheck``, bounded by the catalog) and is routed on what that says.

It listens on loopback only, needs no token from the app, and connects only to addresses the
gateway would, its settings read by the gateway's rule (``hosts.host_policy``): link-local,
metadata and multicast never; loopback, and private addresses within the allowed networks,
only when allowed. An address those settings refuse is the deployment's fault: 502
``upstream_not_allowed``, logged naming the sidecar's setting, and nothing ejected. Only
failures of an upstream count against it: a request the app framed badly, stopped sending or
sent too slowly for the upstream, a connect the call's deadline cut short, and an answer whose
header fields may not be relayed (the instance may have copied them from the request) are
answered (or dropped) without counting against the instance.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from lambdamesh_routing.attempts import TRY_FAILURES, failed, late, unreachable
from lambdamesh_routing.errors import (
    ConnectFailed,
    ConnectLate,
    HostNotAllowed,
    LambdaMeshError,
    NotFound,
    ServiceNotFound,
    UpstreamAnswerInvalid,
    UpstreamTimeout,
    UpstreamUnreachable,
    VersionNotFound,
)
from lambdamesh_routing.forwarding import (
    METHODS,
    CheckedReader,
    Headers,
    downstream_headers,
    header_problem,
    host_header,
    joined_field,
    quote_target,
    request_id,
    rewrite_redirect,
    upstream_headers,
)
from lambdamesh_routing.hosts import HostPolicy, Resolver, allowed_addresses, resolve
from lambdamesh_routing.instances import Instance, ServiceView
from lambdamesh_routing.names import check_name
from lambdamesh_routing.retries import may_retry_after_sending
from lambdamesh_routing.router import Call, Plan, Router
from lambdamesh_sidecar.framing import CHUNK, AppBodyFailed, body_reader, check_head, chunk
from lambdamesh_sidecar.logs import LOGGER_NAME, fields
from lambdamesh_sidecar.upstreams import UpstreamPool

LOOPBACK = "127.0.0.1"
# Request bodies kept whole so that a retry can send them again.
REPLAY_LIMIT = 1024 * 1024
# A retryable answer (502, 503, 504) read whole to hold it while another instance is tried.
RETRY_ANSWER_LIMIT = 64 * 1024
# Addresses of one instance's name tried before it counts as unreachable.
MAX_ADDRESSES = 4
# How long a keep-alive connection from the app may sit idle (and each read of its body take).
APP_IDLE_SECONDS = 60.0
_NO_BODY_STATUSES = frozenset({204, 304})
# A reused connection that fails like this, before any answer, was most likely closed by the
# upstream while idle: one more try on a new connection to the same instance, not a failure.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
# Error codes for the standard library's own refusals (a malformed request line, an unknown
# method, a request line or headers over their limits), answered in the JSON envelope.
_LIBRARY_ERRORS = {
    400: "bad_request",
    408: "request_timeout",
    414: "uri_too_long",
    431: "request_header_fields_too_large",
    501: "method_not_implemented",
    505: "http_version_not_supported",
}


class RouteNotFound(NotFound):
    code = "route_not_found"


class Overloaded(LambdaMeshError):
    status = 503
    code = "sidecar_overloaded"
    retry_after = 1


class _Refused(LambdaMeshError):
    """The standard library refused the request before it reached the outbound port."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = _LIBRARY_ERRORS.get(status, "bad_request")


class _AppGone(Exception):
    """The app's connection failed while the answer was written to it: nothing to answer,
    and nothing to count against the upstream."""


class ViewSource(Protocol):
    """What the outbound port needs of the catalog."""

    def view(self, service: str) -> ServiceView: ...

    def recheck(self, service: str) -> ServiceView:
        """The service's view read again now, if it was not read just before (the catalog
        bounds how often): the view a call was routed on knew nothing of what it asked for."""
        ...


@dataclass(frozen=True)
class OutboundSettings:
    timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 2.0
    max_connections: int = 256


@dataclass
class _Body:
    """The request body: kept whole (``data``), or a kept head and a stream of the rest."""

    data: bytes
    rest: Iterator[bytes] | None = None

    @property
    def replayable(self) -> bool:
        return self.rest is None


@dataclass(frozen=True)
class _Answer:
    """An upstream answer held while another instance is tried."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class _Exchange:
    """One request sent and its answer's head read, on one connection."""

    ip: str
    port: int
    connection: http.client.HTTPConnection
    sock: socket.socket  # kept: http.client lets go of it when the answer closes it
    response: http.client.HTTPResponse
    reusable: bool = True


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
        pool: UpstreamPool | None = None,
    ) -> None:
        self.views = views
        self.router = router
        self.host_policy = host_policy
        self.caller_address = caller_address
        self.settings = settings
        self.resolver = resolver
        self.pool = pool or UpstreamPool()
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
    """A 503 in the JSON envelope, then the request read off the wire (briefly), so that
    closing does not reset the connection before the app has read the answer."""
    error = Overloaded("the sidecar's outbound port is serving as many connections as it may")
    body = _error_body(error, request_id(None))
    head = (
        f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    try:
        sock.settimeout(0.1)
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    except OSError:
        pass


def _error_body(error: LambdaMeshError, rid: str) -> bytes:
    envelope = {"error": {"code": error.code, "message": error.message, "request_id": rid}}
    return json.dumps(envelope).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = APP_IDLE_SECONDS
    server: OutboundServer
    lines: CheckedReader  # the connection's reader (``rfile``), which notes bare CRs
    # Whether this request's body has been read to its end: if not when it is answered, the
    # connection is closed, since what is left of the body must never be read as a request.
    body_read = True

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: the app logs its own calls; failures are logged as they happen."""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lines = CheckedReader(self.rfile)
        self.rfile = self.lines

    def _proxy(self) -> None:
        rid = request_id(self.headers.get("X-Request-Id"))
        self.body_read = False
        try:
            _Call(self, self.server.outbound, rid).run()
            if not self.body_read:
                self.close_connection = True  # answered before the body was all read
        except LambdaMeshError as error:
            if not self.body_read:
                self.close_connection = True
            self._answer_error(error, rid)
        except _AppGone:
            self.close_connection = True

    def write(self, data: bytes) -> None:
        """To the app; ``_AppGone`` when it has gone."""
        try:
            self.wfile.write(data)
        except OSError as exc:
            raise _AppGone(str(exc)) from None

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _proxy

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's refusals, in the gateway's JSON envelope; the connection
        closes after them."""
        self.close_connection = True
        error = _Refused(code, message or HTTPStatus(code).phrase)
        self._answer_error(error, request_id(None))

    def _answer_error(self, error: LambdaMeshError, rid: str) -> None:
        body = _error_body(error, rid)
        lines = [
            f"HTTP/1.1 {error.status} {_phrase(error.status)}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            f"X-Request-Id: {rid}",
            *(f"{name}: {value}" for name, value in error.headers().items()),
            *(["Connection: close"] if self.close_connection else []),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        try:
            self.write(head if self.command == "HEAD" else head + body)
        except _AppGone:
            self.close_connection = True


assert set(METHODS) == {name[3:] for name in vars(_Handler) if name.startswith("do_")}


class _Call:
    """One call from the app, from its request line to the end of its answer."""

    def __init__(self, handler: _Handler, outbound: Outbound, rid: str) -> None:
        self.handler = handler
        self.outbound = outbound
        self.rid = rid
        self.method = handler.command

    def run(self) -> None:
        check_head(
            self.handler.request_version,
            self.handler.headers,
            saw_bare_cr=self.handler.lines.bare_cr,
        )
        service, version, target = self._route()
        body = self._body()
        headers = _incoming_headers(self.handler)
        call = Call(
            service,
            version,
            self.method,
            headers,
            self.outbound.caller_address,
            replayable=body.replayable,
        )
        plan = self._plan(call)
        if plan.panic:
            self.outbound.log.warning(
                "panic mode: routing over every live instance %s",
                fields(service=service, version=plan.version, live=len(plan.live)),
            )
        # As the gateway does with a client's: the app's X-Forwarded-For chain is kept and
        # this task's address appended, the one entry the outbound port vouches for. No edge
        # in front of the outbound port replaced the app's X-Forwarded-Proto and -Port.
        outgoing = upstream_headers(
            headers,
            client_ip=self.outbound.caller_address,
            proto="http",
            request_id=self.rid,
            trusted_edge=False,
        )
        # The app's Expect was answered here; the body is sent without waiting.
        outgoing = {k: v for k, v in outgoing.items() if k.lower() != "expect"}
        self._tries(plan, target, outgoing, body, f"/{service}/{version}")

    def _plan(self, call: Call) -> Plan:
        """The call's route. A view that knows no such service or version is read again at
        once (a version registered since the last refresh is routable without waiting for
        the next), and the call routed on what it says now."""
        views, router = self.outbound.views, self.outbound.router
        budget = self.outbound.settings.timeout_seconds
        try:
            return router.plan(call, views.view(call.service), budget)
        except (ServiceNotFound, VersionNotFound):
            fresh = views.recheck(call.service)
        return router.plan(call, fresh, budget)

    def _route(self) -> tuple[str, str, str]:
        path, sep, query = self.handler.path.partition("?")
        parts = path.split("/", 3)
        if not path.startswith("/") or len(parts) < 3 or not parts[1] or not parts[2]:
            raise RouteNotFound("call /{service}/{version}/{path} on the outbound port")
        service, version = parts[1], parts[2]
        check_name("service", service)
        check_name("version", version)
        rest = parts[3] if len(parts) > 3 else ""
        # http.server read the request line as latin-1: each character is one byte sent.
        return service, version, quote_target(f"/{rest}{sep}{query}", "latin-1")

    def _body(self) -> _Body:
        stream = body_reader(self.handler.headers, self.handler.rfile)
        if stream is None:
            self.handler.body_read = True
            return _Body(b"")
        head = bytearray()
        for part in stream:
            head += part
            if len(head) > REPLAY_LIMIT:
                return _Body(bytes(head), self._rest(stream))
        self.handler.body_read = True
        return _Body(bytes(head))

    def _rest(self, stream: Iterator[bytes]) -> Iterator[bytes]:
        yield from stream
        self.handler.body_read = True

    def _tries(
        self, plan: Plan, target: str, headers: dict[str, str], body: _Body, prefix: str
    ) -> None:
        held: _Answer | None = None
        error: LambdaMeshError = unreachable(plan.call)
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
            error = late(plan.call)
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
            exchange = self._send(plan, instance, target, headers, body)
        except TRY_FAILURES as exc:
            return self._failed(plan, instance, exc)
        except AppBodyFailed:
            plan.gave_up()
            raise
        except TimeoutError:
            return self._failed(plan, instance, UpstreamTimeout("no answer in time"))
        except (OSError, http.client.HTTPException) as exc:
            return self._broken(plan, instance, UpstreamUnreachable(_reason(exc)))
        self._log_ejection(instance, plan.answered(instance, exchange.response.status))
        first = b""
        if plan.retryable:
            first, whole = self._read_upto(exchange, RETRY_ANSWER_LIMIT)
            if whole:
                response = exchange.response
                self._release(exchange)
                return _Answer(response.status, response.getheaders(), first)
            plan.gave_up()
        self._stream(exchange, instance, plan, prefix, first)
        return None

    def _failed(self, plan: Plan, instance: Instance, exc: LambdaMeshError) -> LambdaMeshError:
        if isinstance(exc, HostNotAllowed):
            self._log_refusal(instance, exc.message)
        else:
            self._log_failure(instance, exc.code, exc.message)
        outcome = failed(plan, instance, exc, "the outbound port")
        self._log_ejection(instance, outcome.ejected_seconds)
        return outcome.error

    def _broken(self, plan: Plan, instance: Instance, exc: UpstreamUnreachable) -> LambdaMeshError:
        """The connection broke before an answer came: the instance's failure, unless the
        app's body was still streaming, since then the upstream may have given up waiting on
        an app slow to send it."""
        if self.handler.body_read:
            return self._failed(plan, instance, exc)
        self._log_failure(instance, exc.code, exc.message)
        plan.gave_up()
        return unreachable(plan.call)

    def _send(
        self, plan: Plan, instance: Instance, target: str, headers: dict[str, str], body: _Body
    ) -> _Exchange:
        """The request sent and the answer's head read. A kept-alive connection the upstream
        closed meanwhile costs one more try on a new one, for what may safely be sent again."""
        ip, connection, reused = self._connect(instance, plan)
        try:
            return self._exchange(plan, instance, ip, connection, target, headers, body)
        except _STALE:
            connection.close()
            safe = body.replayable and may_retry_after_sending(self.method)
            if not (reused and safe):
                raise
        except BaseException:
            connection.close()
            raise
        ip, connection, _ = self._connect(instance, plan, fresh=True)
        try:
            return self._exchange(plan, instance, ip, connection, target, headers, body)
        except BaseException:
            connection.close()
            raise

    def _connect(
        self, instance: Instance, plan: Plan, fresh: bool = False
    ) -> tuple[str, http.client.HTTPConnection, bool]:
        """A connection to one of the instance's addresses. ``ConnectFailed`` when the instance
        refused or did not answer within the connect timeout; ``ConnectLate`` when only the
        call's deadline, which may have cut the connect timeout short, stopped it."""
        addresses = allowed_addresses(
            instance.host, instance.port, self.outbound.host_policy, self.outbound.resolver
        )
        failure: str | None = None
        clock = self.outbound.router.clock
        connect_timeout = self.outbound.settings.connect_timeout_seconds
        for ip in addresses[:MAX_ADDRESSES]:
            left = plan.deadline - clock()
            if left <= 0:
                break
            try:
                connection, reused = self.outbound.pool.get(
                    ip, instance.port, min(connect_timeout, left), fresh
                )
                return ip, connection, reused
            except TimeoutError as exc:
                if left >= connect_timeout:  # given its whole connect timeout
                    failure = _reason(exc)
            except OSError as exc:
                failure = _reason(exc)
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
        target: str,
        headers: dict[str, str],
        body: _Body,
    ) -> _Exchange:
        sock = connection.sock
        assert sock is not None
        sock.settimeout(max(0.001, plan.try_deadline() - self.outbound.router.clock()))
        early = False
        try:
            self._write_request(instance, connection, target, headers, body)
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
        exchange = _Exchange(ip, instance.port, connection, sock, response, reusable=not early)
        # http.client passes over 100 Continue only: other interim answers (103 Early Hints)
        # are dropped here, and the connection, whose state http.client lost, not reused.
        while 102 <= exchange.response.status < 200:
            interim = exchange.response
            final = http.client.HTTPResponse(sock, method=self.method)
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
        self,
        instance: Instance,
        connection: http.client.HTTPConnection,
        target: str,
        headers: dict[str, str],
        body: _Body,
    ) -> None:
        connection.putrequest(self.method, target, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host_header(instance.host, instance.port))
        for name, value in headers.items():
            connection.putheader(name, value)
        if body.rest is None:
            if body.data or self.method in ("POST", "PUT", "PATCH"):
                connection.putheader("Content-Length", str(len(body.data)))
            connection.endheaders(body.data or None)
            return
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        connection.send(chunk(body.data))
        for part in body.rest:
            connection.send(chunk(part))
        connection.send(b"0\r\n\r\n")

    def _read_upto(self, exchange: _Exchange, limit: int) -> tuple[bytes, bool]:
        """Up to ``limit`` bytes of the answer, and whether that was all of it."""
        data = bytearray()
        response = exchange.response
        try:
            while len(data) <= limit:
                part = response.read1(CHUNK)
                if not part:
                    return bytes(data), _complete(response)
                data += part
        except (OSError, http.client.HTTPException):
            exchange.reusable = False
            return bytes(data), False
        return bytes(data), False

    def _send_held(self, held: _Answer) -> None:
        headers = downstream_headers(held.headers, self.rid, head=self.method == "HEAD")
        if self.method == "HEAD":
            self.handler.write(self._head(held.status, headers, None))
            return
        self.handler.write(self._head(held.status, headers, len(held.body)) + held.body)

    def _stream(
        self, exchange: _Exchange, instance: Instance, plan: Plan, prefix: str, first: bytes
    ) -> None:
        response = exchange.response
        headers = downstream_headers(response.getheaders(), self.rid, head=self.method == "HEAD")
        if plan.policy.rewrite_redirects and 300 <= response.status < 400:
            rewrite_redirect(headers, prefix, instance.host, instance.port)
        if self.method == "HEAD" or response.status in _NO_BODY_STATUSES:
            self._release(exchange, bodiless=True)  # back in the pool before the app reads on
            self.handler.write(self._head(response.status, headers, None))
            return
        # Framed as http.client reads it (chunked wins over a Content-Length beside it).
        size = None if response.chunked or response.length is None else len(first) + response.length
        close_delimited = size is None and self.handler.request_version == "HTTP/1.0"
        if close_delimited:
            self.handler.close_connection = True
        frame = chunk if size is None and not close_delimited else _as_is
        released = False
        try:
            # Once the answer streams, each read may wait as long as one try may.
            exchange.sock.settimeout(self.outbound.settings.timeout_seconds)
            part = first or response.read1(CHUNK)
            pending = self._head(response.status, headers, size, chunked=frame is chunk)
            sent = 0
            # Each part is written once the next read is known, so that the connection to the
            # upstream is back in the pool before the app sees the end of its answer.
            while part and not (size is not None and sent + len(part) >= size):
                self.handler.write(pending + frame(part))
                sent += len(part)
                pending, part = b"", response.read1(CHUNK)
            sent += len(part)
            if not _complete(response) or (size is not None and sent != size):
                self.handler.write(pending + frame(part) if part else pending)
                raise http.client.IncompleteRead(b"", None if size is None else size - sent)
            self._release(exchange)
            released = True
            ending = b"0\r\n\r\n" if frame is chunk else b""
            self.handler.write(pending + (frame(part) if part else b"") + ending)
        except (OSError, http.client.HTTPException) as exc:
            # Too late for an error answer: cut the app's connection so it sees the body end
            # early rather than a short body that looks whole.
            self._log_failure(instance, "upstream_unreachable", f"answer cut short: {_reason(exc)}")
            self.handler.close_connection = True
        finally:
            if not released:
                exchange.connection.close()

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

    def _release(self, exchange: _Exchange, bodiless: bool = False) -> None:
        """Back to the pool, once its answer was read to the end (``read1`` leaves a finished
        answer open, so it is closed here) and the upstream keeps the connection alive. The
        answer to a HEAD, a 204 or a 304 has no body, whatever its headers announce."""
        response = exchange.response
        finished = bodiless or _complete(response)
        keep = exchange.reusable and not response.will_close and finished
        response.close()
        if keep and exchange.connection.sock is not None:
            self.outbound.pool.put(exchange.ip, exchange.port, exchange.connection)
        else:
            exchange.connection.close()

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

    def _log_refusal(self, instance: Instance, reason: str) -> None:
        """Not an upstream failure: the reason names the setting that refused the address."""
        self.outbound.log.warning(
            "instance address refused by this sidecar's settings %s",
            fields(
                request_id=self.rid,
                service=instance.service,
                instance=instance.instance_id,
                error="upstream_not_allowed",
                reason=reason,
            ),
        )

    def _log_ejection(self, instance: Instance, seconds: float) -> None:
        if seconds:
            self.outbound.log.warning(
                "outlier ejected %s",
                fields(service=instance.service, instance=instance.instance_id, seconds=seconds),
            )


def _complete(response: http.client.HTTPResponse) -> bool:
    """Whether the answer's body was read to its announced end (a close-delimited one ends
    where the upstream closed)."""
    if response.chunked:
        return response.isclosed()  # http.client closes it after the last chunk
    return response.length is None or response.length == 0


def _incoming_headers(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    """The app's headers, repeated ones joined as the gateway joins them."""
    grouped: dict[str, list[str]] = {}
    for name, value in handler.headers.items():
        grouped.setdefault(name, []).append(value)
    return {name: joined_field(name, values) for name, values in grouped.items()}


def _as_is(data: bytes) -> bytes:
    return data


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
