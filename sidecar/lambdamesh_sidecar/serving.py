"""The server side of the sidecar's two ports: connections accepted up to a bound, each served
on a thread of its own, and the HTTP/1.1 requests on each read by ``messages`` one after
another, with errors answered in the JSON envelope the gateway uses.

What a request becomes is the port's own (``outbound``: a routed call; ``inbound``: a call to
the app on loopback): ``HttpConnection.serve_request``.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from lambdamesh_routing.errors import LambdaMeshError
from lambdamesh_routing.forwarding import METHODS, request_id
from lambdamesh_sidecar.messages import NO_HEAD, Head, MethodNotImplemented, RequestReader

# How long a connection refused past the limit is read from, at most, before it is closed.
REFUSAL_SECONDS = 0.1


class Overloaded(LambdaMeshError):
    status = 503
    code = "sidecar_overloaded"
    retry_after = 1


class PeerGone(Exception):
    """The peer's connection failed while an answer was written to it: nothing to answer,
    and nothing to count against an upstream."""


class BoundedServer(socketserver.ThreadingTCPServer):
    """A thread per connection, at most ``max_connections`` at once; one more is answered 503
    ``sidecar_overloaded`` and closed."""

    daemon_threads = True
    allow_reuse_address = True
    # Connections the kernel completes while none is being accepted. socketserver's 5 would
    # drop a burst of connects (Linux tries a dropped one again after 1 s, 2 s, 4 s).
    request_queue_size = socket.SOMAXCONN
    # Named in the 503's message.
    port_name = "port"

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[socketserver.BaseRequestHandler],
        max_connections: int,
    ) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refuse(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def refuse(self, sock: socket.socket) -> None:
        """A 503 in the JSON envelope, then the request read off the wire, so that closing
        does not reset the connection before the peer has read the answer: for
        ``REFUSAL_SECONDS`` in all, since no other connection is accepted meanwhile (a peer
        that keeps sending must not hold the port)."""
        error = Overloaded(
            f"the sidecar's {self.port_name} is serving as many connections as it may"
        )
        body = error_body(error, request_id(None))
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


def error_body(error: LambdaMeshError, rid: str) -> bytes:
    envelope = {"error": {"code": error.code, "message": error.message, "request_id": rid}}
    return json.dumps(envelope).encode()


class HttpConnection(socketserver.BaseRequestHandler):
    """One connection: its requests, one after another, each handed to ``serve_request``."""

    request: socket.socket
    # How long the connection may sit idle between requests (and each read of a body take).
    idle_seconds = 60.0
    # How long a request's head may take to arrive whole, from its first byte (None: each
    # read may take ``idle_seconds``, however many there are).
    head_seconds: float | None = None
    # Named in the 501 for a method no port takes.
    port_name = "port"

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.settimeout(self.idle_seconds)
        self.reader = RequestReader(self.request, self.head_seconds)
        self.head: Head = NO_HEAD
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
                self.answer_error(error, request_id(None))
                return
            if head is None:
                return
            self.head = head
            self.close_connection = not head.keep_alive
            if head.method not in METHODS:
                self.close_connection = True
                refused = MethodNotImplemented(f"the {self.port_name} does not take {head.method}")
                self.answer_error(refused, request_id(None))
                return
            self._serve()
            self.reader.done()

    def _serve(self) -> None:
        rid = request_id(self.head.get("X-Request-Id"))
        self.body_read = False
        try:
            self.serve_request(rid)
            if not self.body_read:
                self.close_connection = True  # answered before the body was all read
        except LambdaMeshError as error:
            if not self.body_read:
                self.close_connection = True
            self.answer_error(error, rid)
        except PeerGone:
            self.close_connection = True

    def serve_request(self, rid: str) -> None:
        """Answer ``self.head``'s request; a ``LambdaMeshError`` raised before anything was
        written is answered in the envelope."""
        raise NotImplementedError

    def body(self) -> Iterator[bytes] | None:
        if not self.reader.has_body():
            return None
        if self.head.version != "1.0" and (self.head.get("Expect") or "").lower() == (
            "100-continue"
        ):
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return self.reader.body()

    def write(self, data: bytes) -> None:
        """To the peer; ``PeerGone`` when it has gone."""
        try:
            self.request.sendall(data)
        except OSError as exc:
            raise PeerGone(str(exc)) from None

    def answer_error(self, error: LambdaMeshError, rid: str) -> None:
        body = error_body(error, rid)
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
        except PeerGone:
            self.close_connection = True


_PHRASES = {status.value: status.phrase for status in HTTPStatus}


def phrase(status: int) -> str:
    """The reason phrase of ``status``, or "" for a status without one."""
    return _PHRASES.get(status, "")
