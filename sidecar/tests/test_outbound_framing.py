"""The outbound port where HTTP framing is hostile or odd, byte for byte: upstreams scripted on
raw sockets, the app played on a raw socket. Each case once let one message's bytes be read as
another's, crashed a call, or blamed an upstream for the app's fault."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import unquote_to_bytes

import pytest

from lambdamesh_routing.hosts import AddressPolicy
from lambdamesh_routing.instances import Instance, ServiceView
from lambdamesh_routing.policy import OutlierDetection, Policy
from lambdamesh_routing.router import Router
from lambdamesh_sidecar.outbound import OutboundProxy, OutboundServer
from lambdamesh_sidecar.outbound_call import REPLAY_LIMIT
from lambdamesh_sidecar.outbound_settings import OutboundSettings

Script = Callable[["RawUpstream", socket.socket], None]


class RawUpstream:
    """Runs ``script`` on every connection it accepts; records request lines."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.script(self, conn)
        except OSError:
            pass
        finally:
            conn.close()

    def head(self, conn: socket.socket, buffer: bytearray) -> bytes | None:
        """The next request's head (its body, if any, is left in ``buffer``)."""
        while b"\r\n\r\n" not in buffer:
            data = conn.recv(65536)
            if not data:
                return None
            buffer += data
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        buffer[:] = rest
        self.requests.append(head.split(b"\r\n")[0])
        return head

    def close(self) -> None:
        self.sock.close()


def serve(answers: Callable[[bytes], bytes]) -> Script:
    """A keep-alive upstream answering each request head with ``answers(head)``."""

    def script(upstream: RawUpstream, conn: socket.socket) -> None:
        buffer = bytearray()
        while (head := upstream.head(conn, buffer)) is not None:
            conn.sendall(answers(head))

    return script


def ok(head: bytes) -> bytes:
    path = head.split(b" ")[1]
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path)


class Views:
    def __init__(self) -> None:
        self.current = ServiceView(())

    def view(self, service: str) -> ServiceView:
        return self.current

    def recheck(self, service: str) -> ServiceView:
        return self.current


@pytest.fixture
def port() -> Iterator[Callable[..., OutboundServer]]:
    servers: list[OutboundServer] = []
    upstreams: list[RawUpstream] = []

    def start(*scripts: Script, timeout: float = 3.0) -> OutboundServer:
        views = Views()
        started = [RawUpstream(s) for s in scripts]
        upstreams.extend(started)
        views.current = ServiceView(
            tuple(
                Instance(
                    "inventory",
                    f"i{n}",
                    "v1",
                    "127.0.0.1",
                    u.port,
                    1,
                    None,
                    {},
                    "UP",
                    30,
                    2e9,
                    0.0,
                    0.0,
                )
                for n, u in enumerate(started)
            )
        )
        outbound = OutboundProxy(
            views,
            Router(sleep=lambda seconds: None),
            AddressPolicy(allow_loopback=True),
            caller_address="10.0.1.7",
            settings=OutboundSettings(timeout_seconds=timeout, connect_timeout_seconds=1.0),
        )
        server = outbound.serve(0)
        server.upstreams = started  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
    for upstream in upstreams:
        upstream.close()


def exchange(server: OutboundServer, raw: bytes, wait: float = 1.0) -> bytes:
    """Send ``raw`` on one app connection; everything answered until it closes or idles."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as sock:
        sock.sendall(raw)
        received = b""
        try:
            while data := sock.recv(65536):
                received += data
        except TimeoutError:
            pass
    return received


def statuses(received: bytes) -> list[bytes]:
    return [line for line in received.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def upstream_of(server: OutboundServer) -> RawUpstream:
    return server.upstreams[0]  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.0 200 OK\r\n\r\nhello",
    ],
    ids=["connection-close", "http-1.0", "http-1.0-close-delimited"],
)
def test_an_upstream_that_closes_after_answering_is_relayed(
    port: Callable[..., OutboundServer], answer: bytes
) -> None:
    def script(upstream: RawUpstream, conn: socket.socket) -> None:
        if upstream.head(conn, bytearray()) is not None:
            conn.sendall(answer)

    server = port(script)

    received = exchange(server, b"GET /inventory/v1/x HTTP/1.1\r\nHost: x\r\n\r\n")

    assert statuses(received) == [b"HTTP/1.1 200 OK"]
    assert received.endswith(b"hello") or received.endswith(b"5\r\nhello\r\n0\r\n\r\n")


def test_an_interim_answer_is_passed_over_and_never_crosses_calls(
    port: Callable[..., OutboundServer],
) -> None:
    def answers(head: bytes) -> bytes:
        return b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + ok(head)

    server = port(serve(answers))

    first = exchange(server, b"GET /inventory/v1/alice HTTP/1.1\r\nHost: x\r\n\r\n")
    second = exchange(server, b"GET /inventory/v1/bob HTTP/1.1\r\nHost: x\r\n\r\n")

    assert statuses(first) == [b"HTTP/1.1 200 OK"] and first.endswith(b"/alice")
    assert statuses(second) == [b"HTTP/1.1 200 OK"] and second.endswith(b"/bob")


def test_an_answer_framed_two_ways_reaches_the_app_framed_one_way(
    port: Callable[..., OutboundServer],
) -> None:
    smuggled = b"realHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nFORGED"

    def answers(head: bytes) -> bytes:
        if b"/first" in head:
            return (
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled)
            )
        return ok(head)

    server = port(serve(answers))

    received = exchange(
        server,
        b"GET /inventory/v1/first HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /inventory/v1/second HTTP/1.1\r\nHost: x\r\n\r\n",
    )

    assert statuses(received) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK"]
    first, second = received.split(b"HTTP/1.1 200 OK\r\nX-Request-Id")[1:]
    head = first.split(b"\r\n\r\n")[0]
    assert b"Content-Length" not in head and b"Transfer-Encoding: chunked" in head
    assert second.endswith(b"/second")


SMUGGLED = b"DELETE /inventory/v1/everything HTTP/1.1\r\nHost: x\r\n\r\n"
CHUNKED = b"POST /inventory/v1/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /Inventory!/v1/x HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED), 400),
        (b"POST /inventory/v1/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST /inventory/v1/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 400),
        (b"POST /inventory/v1/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\n", 400),
        (b"POST /inventory/v1/x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST /inventory/v1/x HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 55\r\n\r\n", 400),
        (b"POST /inventory/v1/x HTTP/1.1\r\nContent-Length: \xc2\xb2\r\n\r\n", 400),
        (
            b"POST /inventory/v1/x HTTP/1.1\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        # str.strip() takes a no-break space (latin-1 0xa0) off as if it were whitespace.
        (b"POST /inventory/v1/x HTTP/1.1\r\nContent-Length: 3\xa0\r\n\r\n", 400),
        (b"POST /inventory/v1/x HTTP/1.1\r\nTransfer-Encoding: chunked\xa0\r\n\r\n", 501),
        # A chunk-size line is hex digits, spaces or tabs, extensions and CRLF, nothing else.
        (CHUNKED + b"5\x0b\r\nhello\r\n0\r\n\r\n", 400),
        (CHUNKED + b" 5\r\nhello\r\n0\r\n\r\n", 400),
        (CHUNKED + b"5\r\r\nhello\r\n0\r\n\r\n", 400),
        (CHUNKED + b"5;a=b\rc\r\nhello\r\n0\r\n\r\n", 400),
        (CHUNKED + b"5\nhello\r\n0\r\n\r\n", 400),
        (CHUNKED + b"5\r\nhello\n0\r\n\r\n", 400),
        (CHUNKED + b"5\r\nhello\r\n0\r\n\n", 400),
        (CHUNKED + b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n", 400),
        (CHUNKED + b"5\r\nhello\r\n0\r\nX-T: 1\rX-U: 2\r\n\r\n", 400),
        # An extension's name is a token, right after the ";" (llhttp's reading: it takes no
        # space there, which RFC 9112 would; no HTTP client sends one).
        (CHUNKED + b"5; a=b\r\nhello\r\n0\r\n\r\n", 400),
        (CHUNKED + b"00005;\xe9\r\nhello\r\n0\r\n\r\n", 400),
    ],
    ids=[
        "invalid-name",
        "bad-chunk-size",
        "negative-chunk",
        "hex-prefix-chunk",
        "gzip-coding",
        "two-lengths",
        "superscript-length",
        "length-and-chunked",
        "no-break-space-after-length",
        "no-break-space-after-chunked",
        "vertical-tab-after-chunk-size",
        "space-before-chunk-size",
        "bare-cr-after-chunk-size",
        "bare-cr-in-chunk-extension",
        "chunk-size-ended-by-lf",
        "chunk-data-ended-by-lf",
        "last-line-ended-by-lf",
        "trailer-ended-by-lf",
        "bare-cr-in-trailer",
        "space-after-extension-semicolon",
        "obs-text-extension-name",
    ],
)
def test_a_request_whose_body_cannot_be_framed_is_refused_and_its_connection_closed(
    port: Callable[..., OutboundServer], request_bytes: bytes, status: int
) -> None:
    server = port(serve(ok))

    received = exchange(server, request_bytes + SMUGGLED)

    assert statuses(received) == [b"HTTP/1.1 %d %s" % (status, _phrase(status))]
    assert b"Connection: close" in received
    assert b'"code": ' in received
    assert upstream_of(server).requests == []


@pytest.mark.parametrize(
    "size_line",
    [b"5\r\n", b"5 \t\r\n", b"5;a=b\r\n", b'5 ;a="x y"\r\n', b"00005;a\r\n"],
    ids=["bare", "spaces-and-tabs", "extension", "spaced-quoted-extension", "leading-zeros"],
)
def test_a_chunk_size_may_be_followed_by_spaces_tabs_and_extensions(
    port: Callable[..., OutboundServer], size_line: bytes
) -> None:
    bodies: list[bytes] = []

    def script(upstream: RawUpstream, conn: socket.socket) -> None:
        buffer = bytearray()
        head = upstream.head(conn, buffer)
        if head is not None and b"\r\nContent-Length: 5" in head:
            while len(buffer) < 5 and (data := conn.recv(65536)):
                buffer += data
            bodies.append(bytes(buffer))
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = port(script)

    head = (
        b"POST /inventory/v1/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    received = exchange(server, head + size_line + b"hello\r\n0\r\nX-T: 1\r\n\r\n")

    assert statuses(received) == [b"HTTP/1.1 200 OK"]
    assert bodies == [b"hello"]


def _phrase(status: int) -> bytes:
    return {400: b"Bad Request", 501: b"Not Implemented"}[status]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /inventory/v1/x HTTP/1.1\r\nX-A: 1\r\n X-Injected: 2\r\n\r\n",
        b"GET /inventory/v1/x HTTP/1.1\r\nX-A: 1\r\n\tX-Injected: 2\r\n\r\n",
        b"GET /inventory/v1/x HTTP/1.1\r\n X-Injected: 2\r\nHost: x\r\n\r\n",
        # Every header after a line that is none would go unseen: here, the body's length.
        b"POST /inventory/v1/x HTTP/1.1\r\nX A: b\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED),
        b"GET /inventory/v1/x HTTP/1.1\r\nX-A: a\x00b\r\n\r\n",
        b"GET /inventory/v1/x HTTP/1.1\r\nX-A: a\x7fb\r\n\r\n",
        b"POST /inventory/v1/x HTTP/1.1\r\nContent-Length: 5\x0b\r\n\r\nhello",
        b"POST /inventory/v1/x HTTP/1.1\r\nContent-Length: 5\x0c\r\n\r\nhello",
        b"GET /inventory/v1/x\r\n\r\n",
        b"GET /inventory/v1/x HTTP/01.1\r\n\r\n",
        # RFC 9112 section 2.2: a bare CR is invalid; Python's parsers read it as a line end.
        b"GET /inventory/v1/x HTTP/1.1\r\nX-A: b\rX-Injected: 2\r\n\r\n",
        b"GET /inventory/v1/x HTTP/1.1\r\nX-A: b\r\r\n\r\n",
        b"GET /inventory/v1/x\r HTTP/1.1\r\n\r\n",
        b"GET /inventory/v1/x HTTP/1.1\r\r\n\r\n",
    ],
    ids=[
        "obs-fold-space",
        "obs-fold-tab",
        "fold-before-the-first-header",
        "line-that-is-no-header",
        "nul-in-value",
        "del-in-value",
        "vertical-tab-after-length",
        "form-feed-after-length",
        "http-0.9",
        "malformed-version",
        "bare-cr-in-header-value",
        "bare-cr-ending-header-line",
        "bare-cr-in-request-line",
        "bare-cr-ending-request-line",
    ],
)
def test_a_request_head_a_proxy_must_not_pass_on_is_refused_and_its_connection_closed(
    port: Callable[..., OutboundServer], request_bytes: bytes
) -> None:
    server = port(serve(ok))

    received = exchange(server, request_bytes + SMUGGLED)

    assert statuses(received) == [b"HTTP/1.1 400 Bad Request"]
    assert b"Connection: close" in received
    assert b'"code": "bad_request"' in received
    assert b"X-Injected" not in received
    assert upstream_of(server).requests == []


def test_a_transfer_encoding_hidden_behind_a_bare_cr_never_frames_a_body(
    port: Callable[..., OutboundServer],
) -> None:
    inner = b"GET /inventory/v1/smuggled HTTP/1.1"
    server = port(serve(ok))

    received = exchange(
        server,
        b"GET /inventory/v1/a HTTP/1.1\r\nHost: x\r\nX-A: b\rTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner)
        + b"GET /inventory/v1/next HTTP/1.1\r\nHost: x\r\n\r\n",
    )

    assert statuses(received) == [b"HTTP/1.1 400 Bad Request"]
    assert b"bare CR" in received and b"Connection: close" in received
    assert upstream_of(server).requests == []


def test_tabs_and_obs_text_in_a_header_value_are_passed_on(
    port: Callable[..., OutboundServer],
) -> None:
    heads: list[bytes] = []

    def answers(head: bytes) -> bytes:
        heads.append(head)
        return ok(head)

    server = port(serve(answers))

    received = exchange(
        server, b"GET /inventory/v1/x HTTP/1.1\r\nConnection: close\r\nX-A: a\tb \xe9c\r\n\r\n"
    )

    assert statuses(received) == [b"HTTP/1.1 200 OK"]
    assert b"\r\nX-A: a\tb \xe9c\r\n" in heads[0]


MALFORMED_ANSWERS = [
    b"HTTP/1.1 200 OK\r\nX-A: 1\r\n X-Injected: 2\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\tX-Injected: 2\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nX-A: a\x00X-Injected\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nX Injected\r\nContent-Length: 2\r\n\r\nok",
]
MALFORMED_IDS = ["obs-fold-space", "obs-fold-tab", "nul-in-value", "line-that-is-no-header"]


@pytest.mark.parametrize("answer", MALFORMED_ANSWERS, ids=MALFORMED_IDS)
def test_an_answer_whose_header_section_is_malformed_is_not_relayed(
    port: Callable[..., OutboundServer], answer: bytes
) -> None:
    server = port(serve(lambda head: answer))

    received = exchange(server, b"GET /inventory/v1/x HTTP/1.1\r\nConnection: close\r\n\r\n")

    assert statuses(received) == [b"HTTP/1.1 502 Bad Gateway"]
    assert b'"code": "upstream_answer_invalid"' in received
    assert b"X-Injected" not in received
    assert not received.endswith(b"ok")


def eject_on_first_failure(server: OutboundServer) -> Instance:
    """Routes ``server``'s calls with a policy that ejects at the first failure; returns its
    first instance."""
    views = server.outbound.views
    ejecting = Policy(outlier_detection=OutlierDetection(consecutive_failures=1))
    views.current = ServiceView(views.view("inventory").instances, ejecting)  # type: ignore[attr-defined]
    return views.view("inventory").instances[0]


@pytest.mark.parametrize("answer", MALFORMED_ANSWERS, ids=MALFORMED_IDS)
def test_an_answer_with_malformed_headers_neither_ejects_its_instance_nor_is_retried(
    port: Callable[..., OutboundServer], answer: bytes
) -> None:
    server = port(serve(lambda head: answer), serve(ok))
    malformed = eject_on_first_failure(server)

    call = b"GET /inventory/v1/x HTTP/1.1\r\nConnection: close\r\n\r\n"
    answers = [exchange(server, call) for _ in range(6)]

    refused = [a for a in answers if statuses(a) == [b"HTTP/1.1 502 Bad Gateway"]]
    relayed = [a for a in answers if statuses(a) == [b"HTTP/1.1 200 OK"]]
    assert len(refused) + len(relayed) == 6
    assert all(b'"code": "upstream_answer_invalid"' in a for a in refused)
    assert all(a.endswith(b"/x") and b"X-Injected" not in a for a in relayed)
    bad, good = server.upstreams  # type: ignore[attr-defined]
    # Still in the rotation (every other call), and each call reached one instance only.
    assert (len(bad.requests), len(good.requests)) == (3, 3) == (len(refused), len(relayed))
    assert not server.outbound.router.outliers.is_ejected(malformed)


def test_a_client_cannot_eject_an_instance_that_copies_its_input_into_a_header(
    port: Callable[..., OutboundServer],
) -> None:
    def redirect(head: bytes) -> bytes:
        target = unquote_to_bytes(head.split(b" ")[1].partition(b"?to=")[2])
        return b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % target

    server = port(serve(redirect))
    instance = eject_on_first_failure(server)

    hostile = exchange(
        server, b"GET /inventory/v1/go?to=%01x HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    plain = exchange(server, b"GET /inventory/v1/go?to=/home HTTP/1.1\r\nConnection: close\r\n\r\n")

    assert statuses(hostile) == [b"HTTP/1.1 502 Bad Gateway"]
    assert b'"code": "upstream_answer_invalid"' in hostile
    assert not server.outbound.router.outliers.is_ejected(instance)
    assert statuses(plain) == [b"HTTP/1.1 302 Found"]


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        # llhttp reads both; relayed, the first would reach the app as "HTTP/1.1 99".
        b"HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["garbled-status-line", "switching-protocols", "status-below-100", "http-2.0"],
)
def test_an_instance_answering_a_garbled_status_line_or_a_101_is_ejected_and_the_call_retried(
    port: Callable[..., OutboundServer], answer: bytes
) -> None:
    server = port(serve(lambda head: answer), serve(ok))
    garbled = eject_on_first_failure(server)

    call = b"GET /inventory/v1/x HTTP/1.1\r\nConnection: close\r\n\r\n"
    answers = [exchange(server, call) for _ in range(4)]

    assert [statuses(a) for a in answers] == [[b"HTTP/1.1 200 OK"]] * 4
    assert server.outbound.router.outliers.is_ejected(garbled)


def test_a_target_with_spaces_controls_or_non_ascii_is_quoted_not_refused(
    port: Callable[..., OutboundServer],
) -> None:
    server = port(serve(ok))

    received = exchange(
        server, b"GET /inventory/v1/caf\xc3\xa9/\x01x?q=\xc3\xa9#frag HTTP/1.1\r\n\r\n"
    )

    assert statuses(received) == [b"HTTP/1.1 200 OK"]
    assert upstream_of(server).requests == [b"GET /caf%C3%A9/%01x?q=%C3%A9 HTTP/1.1"]


def test_an_answer_cut_short_is_never_passed_on_as_whole(
    port: Callable[..., OutboundServer],
) -> None:
    def script(upstream: RawUpstream, conn: socket.socket) -> None:
        if upstream.head(conn, bytearray()) is not None:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789")

    server = port(script)
    started = time.monotonic()

    received = exchange(server, b"GET /inventory/v1/x HTTP/1.1\r\nHost: x\r\n\r\n", wait=5)

    assert received.endswith(b"0123456789")  # the app's connection ended early: not complete
    assert time.monotonic() - started < 2


def test_an_app_that_stops_sending_its_body_costs_the_upstream_nothing(
    port: Callable[..., OutboundServer],
) -> None:
    def script(upstream: RawUpstream, conn: socket.socket) -> None:
        buffer = bytearray()
        upstream.head(conn, buffer)
        while conn.recv(65536):
            pass

    server = port(script)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(
                b"PUT /inventory/v1/x HTTP/1.1\r\nContent-Length: 4000000\r\n\r\n"
                + b"x" * 1_200_000
            )
            time.sleep(0.05)

    time.sleep(0.3)
    outbound = server.outbound
    instance = outbound.views.view("inventory").instances[0]
    assert not outbound.router.outliers.is_ejected(instance)


def drop_after(body_bytes: int, dropped: threading.Event) -> Script:
    """An upstream that reads a request's head and ``body_bytes`` of its body, then resets
    the connection without answering."""

    def script(upstream: RawUpstream, conn: socket.socket) -> None:
        buffer = bytearray()
        if upstream.head(conn, buffer) is None:
            return
        while len(buffer) < body_bytes and (data := conn.recv(65536)):
            buffer += data
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        dropped.set()

    return script


def app_call(server: OutboundServer, head: bytes, body: bytes, then: Callable[[], object]) -> None:
    """The app sends ``head`` and ``body``, waits for ``then``, and reads the answer to its
    end (or to the reset of a connection closed with the rest of the body unread)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head + body)
        then()
        with contextlib.suppress(OSError):
            sock.sendall(b"x" * 300_000)  # the rest of the body, late
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass


def test_an_upstream_that_drops_the_body_an_app_is_slow_to_send_is_not_ejected(
    port: Callable[..., OutboundServer],
) -> None:
    dropped = threading.Event()
    server = port(drop_after(REPLAY_LIMIT, dropped))
    instance = eject_on_first_failure(server)
    head = b"PUT /inventory/v1/x HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (4 * REPLAY_LIMIT)

    # The app sends more than the sidecar keeps, so the body streams; then it stalls until
    # the upstream, tired of waiting, has reset the connection.
    app_call(server, head, b"x" * (REPLAY_LIMIT + 100_000), lambda: dropped.wait(5))

    assert dropped.is_set()
    assert len(upstream_of(server).requests) == 1
    assert not server.outbound.router.outliers.is_ejected(instance)


def test_an_upstream_that_resets_after_reading_the_whole_body_is_ejected(
    port: Callable[..., OutboundServer],
) -> None:
    dropped = threading.Event()
    server = port(drop_after(5, dropped))
    instance = eject_on_first_failure(server)

    received = exchange(
        server,
        b"PUT /inventory/v1/x HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )

    assert statuses(received) == [b"HTTP/1.1 502 Bad Gateway"]
    assert server.outbound.router.outliers.is_ejected(instance)


def test_an_http_1_0_app_gets_a_close_delimited_body_not_chunks(
    port: Callable[..., OutboundServer],
) -> None:
    def answers(head: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"

    server = port(serve(answers))

    received = exchange(server, b"GET /inventory/v1/x HTTP/1.0\r\n\r\n")

    assert received.endswith(b"\r\n\r\nhello")
    assert b"Transfer-Encoding" not in received


def test_what_the_standard_library_refuses_is_answered_in_the_json_envelope(
    port: Callable[..., OutboundServer],
) -> None:
    server = port(serve(ok))

    unknown = exchange(server, b"PROPFIND /inventory/v1/x HTTP/1.1\r\n\r\n")
    garbled = exchange(server, b"GARBAGE\r\n\r\n")

    assert statuses(unknown) == [b"HTTP/1.1 501 Not Implemented"]
    assert b'"code": "method_not_implemented"' in unknown
    assert b'"code": "bad_request"' in garbled


def test_an_upstream_that_answers_before_reading_the_body_is_relayed(
    port: Callable[..., OutboundServer],
) -> None:
    def script(upstream: RawUpstream, conn: socket.socket) -> None:
        if upstream.head(conn, bytearray()) is not None:
            conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n\r\ntoo big!")
            conn.shutdown(socket.SHUT_WR)
            time.sleep(0.2)

    server = port(script)
    body = b"x" * 3_000_000

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"PUT /inventory/v1/x HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body))
        with contextlib.suppress(OSError):  # the sidecar may stop reading once answered
            sock.sendall(body)
        received = b""
        while data := sock.recv(65536):
            received += data

    assert [s[:12] for s in statuses(received)] == [b"HTTP/1.1 413"]
    assert received.endswith(b"too big!")


def test_a_kept_alive_connection_the_upstream_dropped_costs_a_get_nothing(
    port: Callable[..., OutboundServer],
) -> None:
    def one_answer_a_connection(upstream: RawUpstream, conn: socket.socket) -> None:
        buffer = bytearray()
        if (head := upstream.head(conn, buffer)) is not None:
            conn.sendall(ok(head))
        upstream.head(conn, buffer)  # a second request on it: dropped unanswered

    server = port(one_answer_a_connection)

    answers = [exchange(server, b"GET /inventory/v1/n HTTP/1.1\r\n\r\n", 0.5) for _ in range(4)]

    assert [statuses(a) for a in answers] == [[b"HTTP/1.1 200 OK"]] * 4
    instance = server.outbound.views.view("inventory").instances[0]
    assert not server.outbound.router.outliers.is_ejected(instance)


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /inventory/v1/" + b"a" * (16 * 1024) + b" HTTP/1.1\r\n\r\n", 414, b"uri_too_long"),
        (
            b"GET /inventory/v1/x HTTP/1.1\r\n" + b"X-A: " + b"a" * (64 * 1024) + b"\r\n\r\n",
            431,
            b"request_header_fields_too_large",
        ),
        (
            b"GET /inventory/v1/x HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n",
            431,
            b"request_header_fields_too_large",
        ),
        (
            CHUNKED + b"5\r\nhello\r\n0\r\n" + b"X-T: 1\r\n" * 101 + b"\r\n",
            400,
            b"bad_request",
        ),
        (b"GET /inventory/v1/x HTTP/2.0\r\n\r\n", 505, b"http_version_not_supported"),
        (b"FOO /inventory/v1/x HTTP/1.1\r\n\r\n", 501, b"method_not_implemented"),
    ],
    ids=["long-target", "large-head", "101-headers", "101-trailers", "http-2.0", "unknown-method"],
)
def test_a_request_over_the_outbound_ports_limits_is_refused_and_never_sent(
    port: Callable[..., OutboundServer], request_bytes: bytes, status: int, code: bytes
) -> None:
    server = port(serve(ok))

    received = exchange(server, request_bytes)

    assert statuses(received)[0].startswith(b"HTTP/1.1 %d " % status)
    assert b'"code": "%s"' % code in received
    assert b"Connection: close" in received
    assert upstream_of(server).requests == []


def test_requests_at_the_outbound_ports_limits_are_relayed(
    port: Callable[..., OutboundServer],
) -> None:
    server = port(serve(ok))
    target = b"/inventory/v1/" + b"a" * (16 * 1024 - len(b"/inventory/v1/"))
    headers = b"X-A: 1\r\n" * 99 + b"Connection: close\r\n"

    received = exchange(server, b"GET " + target + b" HTTP/1.1\r\n" + headers + b"\r\n")

    assert statuses(received) == [b"HTTP/1.1 200 OK"]
    assert len(upstream_of(server).requests) == 1


def test_pipelined_requests_are_answered_in_order_each_once(
    port: Callable[..., OutboundServer],
) -> None:
    server = port(serve(ok))

    received = exchange(
        server,
        b"GET /inventory/v1/one HTTP/1.1\r\n\r\n"
        b"GET /inventory/v1/two HTTP/1.1\r\n\r\n"
        b"GET /inventory/v1/three HTTP/1.1\r\nConnection: close\r\n\r\n",
    )

    # Each body (the path) runs into the next answer's status line.
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert [part.rsplit(b"\r\n\r\n", 1)[-1] for part in received.split(b"HTTP/1.1 200 OK")[1:]] == [
        b"/one",
        b"/two",
        b"/three",
    ]
    assert [line.split(b" ")[1] for line in upstream_of(server).requests] == [
        b"/one",
        b"/two",
        b"/three",
    ]


def test_an_answer_whose_head_never_ends_is_cut_off_not_held_in_memory(
    port: Callable[..., OutboundServer],
) -> None:
    sent: list[int] = []

    def script(upstream: RawUpstream, conn: socket.socket) -> None:
        if upstream.head(conn, bytearray()) is not None:
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Endless: ")
            for _ in range(64):  # 4 MiB of one header value, if nothing stops it
                conn.sendall(b"a" * 65536)
                sent.append(65536)

    server = port(script)

    received = exchange(server, b"GET /inventory/v1/x HTTP/1.1\r\nConnection: close\r\n\r\n")

    assert statuses(received) == [b"HTTP/1.1 502 Bad Gateway"]
    assert b'"code": "upstream_unreachable"' in received
    assert sum(sent) < 4 * 1024 * 1024  # the port stopped reading and closed the connection


def test_an_answer_with_more_than_100_header_fields_is_not_relayed(
    port: Callable[..., OutboundServer],
) -> None:
    def script(upstream: RawUpstream, conn: socket.socket) -> None:
        if upstream.head(conn, bytearray()) is not None:
            conn.sendall(
                b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"Content-Length: 2\r\n\r\nok"
            )

    server = port(script)

    received = exchange(server, b"GET /inventory/v1/x HTTP/1.1\r\nConnection: close\r\n\r\n")

    assert statuses(received) == [b"HTTP/1.1 502 Bad Gateway"]
    assert b'"code": "upstream_answer_invalid"' in received


def test_an_answer_in_a_transfer_coding_other_than_chunked_is_not_relayed(
    port: Callable[..., OutboundServer],
) -> None:
    forged = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nFORGED"

    def script(upstream: RawUpstream, conn: socket.socket) -> None:
        if upstream.head(conn, bytearray()) is not None:
            # Read until the upstream closes (RFC 9112 section 6.3), not by the length beside.
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello"
                + forged
            )

    server = port(script)

    received = exchange(server, b"GET /inventory/v1/x HTTP/1.1\r\nConnection: close\r\n\r\n")

    assert statuses(received) == [b"HTTP/1.1 502 Bad Gateway"]
    assert b'"code": "upstream_unreachable"' in received
    assert b"FORGED" not in received


def serve_with_bodies(received: list[tuple[bytes, bytes]]) -> Script:
    """A keep-alive upstream that reads each request's body by its Content-Length (the port
    sends a kept body so), records the head and body in ``received`` and answers ``ok``."""

    def script(upstream: RawUpstream, conn: socket.socket) -> None:
        buffer = bytearray()
        while (head := upstream.head(conn, buffer)) is not None:
            length = head.lower().partition(b"\r\ncontent-length: ")[2].split(b"\r\n")[0]
            while len(buffer) < int(length or 0) and (data := conn.recv(65536)):
                buffer += data
            received.append((head, bytes(buffer[: int(length or 0)])))
            del buffer[: int(length or 0)]
            conn.sendall(ok(head))

    return script


UPGRADE = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQ\r\n"


@pytest.mark.parametrize(
    "upgrading",
    [
        b"GET /inventory/v1/a HTTP/1.1\r\n" + UPGRADE + b"\r\n",
        # What curl --http2 -d and Java's HttpClient send on a new connection.
        b"POST /inventory/v1/a HTTP/1.1\r\n" + UPGRADE + b"Content-Length: 5\r\n\r\nhello",
        b"POST /inventory/v1/a HTTP/1.1\r\n"
        + UPGRADE
        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ],
    ids=["without-a-body", "with-a-length", "chunked"],
)
def test_an_upgrade_request_is_relayed_as_plain_http_and_the_next_one_read_after_it(
    port: Callable[..., OutboundServer], upgrading: bytes
) -> None:
    relayed: list[tuple[bytes, bytes]] = []
    server = port(serve_with_bodies(relayed))
    inner = b"GET /inventory/v1/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        # The next request's head comes with the upgrading one, its body in a later read.
        sock.sendall(
            upgrading
            + b"POST /inventory/v1/b HTTP/1.1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
            % len(inner)
        )
        received = sock.recv(65536)
        with contextlib.suppress(OSError):
            sock.sendall(inner)
            while data := sock.recv(65536):
                received += data

    # Each body (the path) runs into the next answer's status line.
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 2 and received.endswith(b"/b")
    method = upgrading.split(b" ")[0]
    assert upstream_of(server).requests == [method + b" /a HTTP/1.1", b"POST /b HTTP/1.1"]
    assert [body for _, body in relayed] == [b"hello" if method == b"POST" else b"", inner]
    assert not any(b"upgrade" in head.lower() for head, _ in relayed)


def test_upgrade_requests_pipelined_in_one_read_are_each_answered(
    port: Callable[..., OutboundServer],
) -> None:
    server = port(serve(ok))
    one = b"GET /inventory/v1/ HTTP/1.1\r\nConnection:upgrade\r\nUpgrade:x\r\n\r\n"
    last = one.replace(b"upgrade", b"upgrade, close")
    received = b""

    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        # More than Python's default recursion limit, in one read of the port's (64 KiB).
        sock.sendall(one * 1049 + last)
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                received += data

    assert received.count(b"HTTP/1.1 200 OK\r\n") == 1050


def test_a_trailer_that_never_ends_is_refused_not_held_in_memory(
    port: Callable[..., OutboundServer],
) -> None:
    server = port(serve(ok))
    sent = 0
    received = b""

    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        with contextlib.suppress(OSError):  # the port stops reading and closes
            sock.sendall(CHUNKED + b"5\r\nhello\r\n0\r\nX-Endless: ")
            for _ in range(256):  # 16 MiB of one trailer value, if nothing stops it
                sock.sendall(b"a" * 65536)
                sent += 65536
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                received += data

    assert statuses(received) == [b"HTTP/1.1 400 Bad Request"]
    assert b'"code": "bad_request"' in received
    assert sent < 16 * 1024 * 1024
    assert upstream_of(server).requests == []


def test_an_answers_trailer_that_never_ends_is_cut_off_not_held_in_memory(
    port: Callable[..., OutboundServer],
) -> None:
    sent: list[int] = []

    def script(upstream: RawUpstream, conn: socket.socket) -> None:
        if upstream.head(conn, bytearray()) is not None:
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Endless: "
            )
            for _ in range(256):  # 16 MiB of one trailer value, if nothing stops it
                conn.sendall(b"a" * 65536)
                sent.append(65536)

    server = port(script)

    received = exchange(server, b"GET /inventory/v1/x HTTP/1.1\r\n\r\n")

    assert statuses(received) == [b"HTTP/1.1 200 OK"]
    assert received.endswith(b"2\r\nok\r\n")  # cut: no last chunk
    assert sum(sent) < 16 * 1024 * 1024
