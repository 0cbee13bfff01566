"""The outbound port: the app calls ``http://127.0.0.1:{port}/{service}/{version}/{path}``
and the sidecar sends the request straight to a live instance of that service, inside the VPC.

The routing decisions are the gateway's own (``lambdamesh_routing``): the same routable
instances, aliases, strategies, ejection, retries and header rules, and the same JSON errors.
What differs is the transport, which streams:

* a request body of up to ``outbound_call.REPLAY_LIMIT`` bytes is kept, so an idempotent
  request may be sent again to another instance; a longer one streams through and is not
  retried once sent;
* an answer streams back as it arrives, except a 502/503/504 that may be retried, which is
  read (up to ``outbound_call.RETRY_ANSWER_LIMIT``) so that it can be returned if no retry
  happens;
* ``LAMBDAMESH_OUTBOUND_TIMEOUT_SECONDS`` (or the policy's) bounds connecting and each wait
  for the answer's head, retries included; once an answer streams, each read may wait as
  long again.

A call for a service or version its view does not know has the view read again at once
(``ViewSource.recheck``, bounded by the catalog) and is routed on what that says.

It listens on loopback only, needs no token from the app, and connects only to addresses the
gateway would, its settings read by the gateway's rule (``hosts.address_policy``): link-local,
metadata and multicast never; loopback, and private addresses within the allowed networks,
only when allowed. An address those settings refuse is the deployment's fault: 502
``upstream_not_allowed``, logged naming the sidecar's setting, and nothing ejected. Only
failures of an upstream count against it: a request the app framed badly, stopped sending or
sent too slowly for the upstream, a connect the call's deadline cut short, and an answer whose
header fields may not be relayed (the instance may have copied them from the request) are
answered (or dropped) without counting against the instance.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import Any

from lambdamesh_routing.errors import LambdaMeshError
from lambdamesh_routing.forwarding import METHODS, request_id
from lambdamesh_routing.hosts import AddressPolicy, Resolver, resolve
from lambdamesh_routing.router import Router
from lambdamesh_sidecar.exchange import Transport
from lambdamesh_sidecar.logs import LOGGER_NAME
from lambdamesh_sidecar.messages import NO_HEAD, MethodNotImplemented, RequestReader
from lambdamesh_sidecar.outbound_call import AppGone, OutboundCall, ViewSource, phrase
from lambdamesh_sidecar.outbound_settings import OutboundSettings
from lambdamesh_sidecar.upstreams import UpstreamPool

LOOPBACK = "127.0.0.1"
# How long a keep-alive connection from the app may sit idle (and each read of its body take).
APP_IDLE_SECONDS = 60.0
# How long a connection refused past the limit is read from, at most, before it is closed.
REFUSAL_SECONDS = 0.1


_DEFAULTS = OutboundSettings()


class Overloaded(LambdaMeshError):
    status = 503
    code = "sidecar_overloaded"
    retry_after = 1


class OutboundProxy:
    """The outbound port's routing and transport; ``serve`` binds the loopback port."""

    def __init__(
        self,
        views: ViewSource,
        router: Router,
        address_policy: AddressPolicy,
        caller_address: str | None,
        settings: OutboundSettings = _DEFAULTS,
        resolver: Resolver = resolve,
        logger: logging.Logger | None = None,
        pool: UpstreamPool | None = None,
    ) -> None:
        self.views = views
        self.router = router
        self.caller_address = caller_address
        self.settings = settings
        self.pool = pool or UpstreamPool()
        self.transport = Transport(
            self.pool, address_policy, resolver, router.clock, settings.connect_timeout_seconds
        )
        self.log = logger or logging.getLogger(LOGGER_NAME)

    def serve(self, port: int) -> OutboundServer:
        """Bind ``127.0.0.1:port`` (``OSError`` if taken); serve with ``serve_forever``."""
        return OutboundServer((LOOPBACK, port), self)


class OutboundServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Connections the kernel completes while none is being accepted. socketserver's 5 would
    # drop a burst of the app's connects (Linux tries a dropped one again after 1 s, 2 s, 4 s).
    request_queue_size = socket.SOMAXCONN

    def __init__(self, address: tuple[str, int], outbound: OutboundProxy) -> None:
        self.outbound = outbound
        self._slots = threading.BoundedSemaphore(outbound.settings.max_connections)
        super().__init__(address, _Connection)

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
    """A 503 in the JSON envelope, then the request read off the wire, so that closing does
    not reset the connection before the app has read the answer: for ``REFUSAL_SECONDS`` in
    all, since no other connection is accepted meanwhile (an app that keeps sending must not
    hold the port)."""
    error = Overloaded("the sidecar's outbound port is serving as many connections as it may")
    body = _error_body(error, request_id(None))
    head = (
        f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    deadline = time.monotonic() + REFUSAL_SECONDS
    try:
        sock.settimeout(REFUSAL_SECONDS)
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536) and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
    except OSError:
        pass


def _error_body(error: LambdaMeshError, rid: str) -> bytes:
    envelope = {"error": {"code": error.code, "message": error.message, "request_id": rid}}
    return json.dumps(envelope).encode()


class _Connection(socketserver.BaseRequestHandler):
    """One connection from the app: its requests, one after another, each an
    ``OutboundCall``."""

    server: OutboundServer
    request: socket.socket

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.settimeout(APP_IDLE_SECONDS)
        self.reader = RequestReader(self.request)
        self.head = NO_HEAD
        self.close_connection = False
        # Whether this request's body has been read to its end: if not when it is answered,
        # the connection is closed, since what is left of the body must never be read as a
        # request.
        self.body_read = True

    def handle(self) -> None:
        while not self.close_connection:
            self.head = NO_HEAD
            try:
                head = self.reader.next_head()
            except LambdaMeshError as error:
                self.close_connection = True
                self._answer_error(error, request_id(None))
                return
            if head is None:
                return
            self.head = head
            self.close_connection = not head.keep_alive
            if head.method not in METHODS:
                self.close_connection = True
                refused = MethodNotImplemented(f"the outbound port does not take {head.method}")
                self._answer_error(refused, request_id(None))
                return
            self._proxy()
            self.reader.done()

    def body(self) -> Iterator[bytes] | None:
        if not self.reader.has_body():
            return None
        if self.head.version != "1.0" and (self.head.get("Expect") or "").lower() == (
            "100-continue"
        ):
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return self.reader.body()

    def _proxy(self) -> None:
        rid = request_id(self.head.get("X-Request-Id"))
        self.body_read = False
        try:
            OutboundCall(self, self.server.outbound, rid).run()
            if not self.body_read:
                self.close_connection = True  # answered before the body was all read
        except LambdaMeshError as error:
            if not self.body_read:
                self.close_connection = True
            self._answer_error(error, rid)
        except AppGone:
            self.close_connection = True

    def write(self, data: bytes) -> None:
        """To the app; ``AppGone`` when it has gone."""
        try:
            self.request.sendall(data)
        except OSError as exc:
            raise AppGone(str(exc)) from None

    def _answer_error(self, error: LambdaMeshError, rid: str) -> None:
        body = _error_body(error, rid)
        lines = [
            f"HTTP/1.1 {error.status} {phrase(error.status)}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            f"X-Request-Id: {rid}",
            *(f"{name}: {value}" for name, value in error.headers().items()),
            *(["Connection: close"] if self.close_connection else []),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        try:
            self.write(head if self.head.method == "HEAD" else head + body)
        except AppGone:
            self.close_connection = True
