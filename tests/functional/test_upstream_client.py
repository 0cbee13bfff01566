"""The pooled upstream client against real servers on loopback."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import urllib3
from urllib3.exceptions import LocationParseError

from chalicelib.errors import (
    ConnectLate,
    UpstreamAnswerInvalid,
    UpstreamResponseTooLarge,
    UpstreamTimeout,
)
from chalicelib.gateway import Gateway, ProxyRequest
from chalicelib.instances import Instance, ServiceView
from chalicelib.upstream import UpstreamClient
from lambdamesh_routing.balancing import Strategies
from lambdamesh_routing.errors import ConnectFailed
from lambdamesh_routing.hosts import AddressPolicy
from lambdamesh_routing.outliers import Outliers
from tests.functional.conftest import serve_in_background
from tests.routing.fakes import InOrder

LOOPBACK = AddressPolicy(allow_loopback=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: ClassVar[set[tuple[str, int]]] = set()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        Handler.connections.add(self.client_address[:2])
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        size = int(self.path.rsplit("/", 1)[-1]) if self.path.startswith("/bytes/") else 2
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        self.send_header("X-Host-Seen", self.headers["Host"])
        self.end_headers()
        self.wfile.write(b"x" * size)

    do_POST = do_GET


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    Handler.connections = set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serve_in_background(httpd)
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def port_of(server: ThreadingHTTPServer) -> int:
    return int(server.server_address[1])


def test_connections_are_kept_and_reused_across_requests(server: ThreadingHTTPServer) -> None:
    client = UpstreamClient(LOOPBACK)

    for _ in range(5):
        assert client.send("GET", "127.0.0.1", port_of(server), "/", {}, None).status == 200

    assert len(Handler.connections) == 1


def test_repeated_response_headers_are_all_returned(server: ThreadingHTTPServer) -> None:
    answer = UpstreamClient(LOOPBACK).send("GET", "127.0.0.1", port_of(server), "/", {}, None)

    assert [v for k, v in answer.headers if k.lower() == "set-cookie"] == ["a=1", "b=2"]
    assert dict(answer.headers)["X-Host-Seen"] == f"127.0.0.1:{port_of(server)}"


def test_an_oversized_answer_is_refused_and_its_connection_not_reused(
    server: ThreadingHTTPServer,
) -> None:
    client = UpstreamClient(LOOPBACK, max_response_body=1000)

    with pytest.raises(UpstreamResponseTooLarge):
        client.send("GET", "127.0.0.1", port_of(server), "/bytes/200000", {}, None)
    after = client.send("GET", "127.0.0.1", port_of(server), "/bytes/10", {}, None)

    assert (after.status, after.body) == (200, b"x" * 10)
    assert len(Handler.connections) == 2


def test_a_refused_connection_is_a_connect_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(ConnectFailed):
        UpstreamClient(LOOPBACK).send("GET", "127.0.0.1", port, "/", {}, None)


def answer_once(raw: bytes) -> tuple[socket.socket, threading.Thread]:
    """A listening socket that answers its first request with ``raw`` and closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(raw)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize(
    "field", [b"X-A: 1\x00b", b"X-A: 1\x0bb", b"X-A: \x7f"], ids=["nul", "vt", "del"]
)
def test_an_answer_whose_header_fields_a_proxy_must_not_pass_on_is_not_relayed(
    field: bytes,
) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + field + b"\r\n\r\nok"
    listener, thread = answer_once(raw)
    with listener, pytest.raises(UpstreamAnswerInvalid, match="header X-A"):
        UpstreamClient(LOOPBACK).send("GET", "127.0.0.1", listener.getsockname()[1], "/", {}, None)
    thread.join(5)


def test_an_answers_obsolete_line_folding_is_unfolded_into_one_field() -> None:
    """RFC 9112 section 5.2 lets a proxy replace obs-fold with spaces before passing a field
    on; urllib3 does, so no second header line can be smuggled to the client."""
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n X-Injected: 2\r\n\r\nok"
    listener, thread = answer_once(raw)
    with listener:
        answer = UpstreamClient(LOOPBACK).send(
            "GET", "127.0.0.1", listener.getsockname()[1], "/", {}, None
        )
    thread.join(5)

    assert [(k, v) for k, v in answer.headers if k.lower().startswith("x-")] == [
        ("X-A", "1 X-Injected: 2")
    ]


def test_tabs_and_obs_text_in_an_answers_header_fields_are_passed_on() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\tb \xe9\r\n\r\nok"
    listener, thread = answer_once(raw)
    with listener:
        answer = UpstreamClient(LOOPBACK).send(
            "GET", "127.0.0.1", listener.getsockname()[1], "/", {}, None
        )
    thread.join(5)

    assert answer.body == b"ok"
    assert dict(answer.headers)["X-A"] == "a\tb \xe9"


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose listener's accept queue is full: a connect to it hangs until its timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.1)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


def test_a_connect_cut_short_by_the_deadline_is_late_not_a_failure_of_the_instance(
    unanswered_port: int,
) -> None:
    patient = UpstreamClient(LOOPBACK, connect_timeout=5)
    impatient = UpstreamClient(LOOPBACK, connect_timeout=0.2)

    with pytest.raises(ConnectLate):
        patient.send(
            "GET", "127.0.0.1", unanswered_port, "/", {}, None, deadline=time.monotonic() + 0.2
        )
    with pytest.raises(ConnectFailed, match="timed out"):
        impatient.send(
            "GET", "127.0.0.1", unanswered_port, "/", {}, None, deadline=time.monotonic() + 5
        )


def test_a_silent_upstream_times_out_at_the_read_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        client = UpstreamClient(LOOPBACK, read_timeout=0.3)

        with pytest.raises(UpstreamTimeout):
            client.send("GET", "127.0.0.1", silent.getsockname()[1], "/", {}, None)


def test_an_ipv6_upstream_gets_a_bracketed_host_header() -> None:
    server_cls = type("V6Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
    httpd = server_cls(("::1", 0), Handler)
    serve_in_background(httpd)
    try:
        port = int(httpd.server_address[1])
        answer = UpstreamClient(LOOPBACK).send("GET", "::1", port, "/", {}, None)
    finally:
        httpd.shutdown()
        httpd.server_close()

    assert dict(answer.headers)["X-Host-Seen"] == f"[::1]:{port}"


def test_a_name_with_several_addresses_is_tried_address_by_address(
    server: ThreadingHTTPServer,
) -> None:
    # 127.0.0.2 is loopback too, but nothing listens there on this port: refused at once.
    client = UpstreamClient(LOOPBACK, resolver=lambda host, port: ["127.0.0.2", "127.0.0.1"])

    answer = client.send("GET", "orders.internal", port_of(server), "/", {}, None)

    assert answer.status == 200
    assert dict(answer.headers)["X-Host-Seen"] == f"orders.internal:{port_of(server)}"


def test_a_name_none_of_whose_addresses_answer_is_a_connect_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = UpstreamClient(LOOPBACK, resolver=lambda host, port: ["127.0.0.2", "127.0.0.1"])

    with pytest.raises(ConnectFailed):
        client.send("GET", "orders.internal", port, "/", {}, None)


def test_an_address_urllib3_refuses_to_pool_is_a_connect_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise LocationParseError("127.0.0.1: not a valid host")

    monkeypatch.setattr(urllib3.PoolManager, "connection_from_host", refuse)

    with pytest.raises(ConnectFailed, match="not a valid host"):
        UpstreamClient(LOOPBACK).send("GET", "127.0.0.1", 80, "/", {}, None)


class RecordingDiscovery:
    def __init__(self, instances: list[Instance]) -> None:
        self.instances = instances
        self.outliers = Outliers()
        self.wall_clock = time.time

    def view(self, service: str) -> ServiceView:
        return ServiceView(tuple(self.instances))

    @property
    def ejected(self) -> list[str]:
        return [i.instance_id for i in self.instances if self.outliers.is_ejected(i)]


def stored(instance_id: str, host: str, port: int) -> Instance:
    return Instance("orders", instance_id, "v1", host, port, 1, None, {}, "UP", 30, 2e9, 0.0, 0.0)


@pytest.mark.parametrize(
    ("bad_host", "ejected"),
    [
        # A zone id, stored before they were refused: the address rules refuse it, which is
        # no failure of the instance, so it is skipped, not ejected.
        ("::1%lo\r\nX-Injected: 1", []),
        # A name IDNA cannot encode, so it cannot be resolved: a failed connect.
        ("a" * 64 + ".example.com", ["bad"]),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_stored_host_that_cannot_be_connected_to_is_skipped_and_the_next_instance_answers(
    server: ThreadingHTTPServer, bad_host: str, ejected: list[str], method: str
) -> None:
    # Given a stored instance whose host the client cannot even build a connection for
    discovery = RecordingDiscovery(
        [stored("bad", bad_host, port_of(server)), stored("good", "127.0.0.1", port_of(server))]
    )
    gateway = Gateway(
        discovery,
        Strategies(InOrder()),
        UpstreamClient(LOOPBACK),
        outliers=discovery.outliers,
    )

    # When a request is routed to it first
    response = gateway.forward(ProxyRequest(method, "orders", "v1", "/", body=b"{}"))

    # Then the good instance answers, and a bad one that failed to connect leaves rotation
    assert response.status == 200
    assert discovery.ejected == ejected
