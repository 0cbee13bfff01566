"""The inbound port faces callers it cannot trust: strangers on the network, and tasks holding
a valid certificate of another service. What they send, on real sockets with real TLS, never
makes the port print a traceback, keep a socket open, hold a turn with the app it is not
using, or tell the app something about the caller the port did not prove."""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import time
from collections.abc import Callable

import pytest
from inbound_kit import SERVICE, Port, anonymous_context
from mesh_certificates import STAGE, answer, authority

from lambdamesh_routing.wire import MeshSettings
from lambdamesh_sidecar.identity import Credentials, load
from lambdamesh_sidecar.inbound import CLIENT_CERT_HEADER, WHOLE_BODY


def orders() -> Credentials:
    return load(answer("orders"), "orders")


def permissive(port: Port) -> Port:
    port.views.set(None, MeshSettings(mtls="permissive"))
    port.policy.read()
    return port


def exchange(port: Port, request: bytes, context: ssl.SSLContext | None = None) -> bytes:
    """``request`` sent on a new connection; all the port answered until it closed."""
    raw = socket.create_connection(("127.0.0.1", port.port), timeout=5)
    with context.wrap_socket(raw) if context else raw as sock:
        sock.sendall(request)
        received = b""
        while part := sock.recv(65536):
            received += part
        return received


def seen_headers(answer_bytes: bytes) -> dict[str, str]:
    """The headers the kit's app saw, from its answer."""
    headers: dict[str, str] = json.loads(answer_bytes.partition(b"\r\n\r\n")[2])["headers"]
    return headers


def wait_for(condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` came true; it is given at most 5 s."""
    end = time.monotonic() + 5
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


@pytest.mark.parametrize("caller", ["TLS 1.2", "another CA's certificate"])
def test_a_failed_handshake_is_logged_as_a_refusal_and_prints_no_traceback(
    start: Callable[..., Port], capfd: pytest.CaptureFixture[str], caller: str
) -> None:
    port = start()
    if caller == "TLS 1.2":
        context = anonymous_context()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    else:
        context = load(answer("orders", ca=authority("another CA")), "orders").client
    with pytest.raises((ssl.SSLError, ConnectionError)):
        exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", context)

    def refused() -> bool:
        return any(r.getMessage().startswith("inbound connection refused") for r in port.records)

    assert wait_for(refused)
    assert "Traceback" not in capfd.readouterr().err
    assert port.app.seen == []


@pytest.mark.filterwarnings("error::ResourceWarning")
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_the_port_closes_a_tls_connection_itself_when_it_ends(
    start: Callable[..., Port],
) -> None:
    port = start()
    for _ in range(3):
        answered = exchange(
            port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", orders().client
        )
        assert answered.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("tls", [False, True])
def test_no_spelling_of_a_forged_client_cert_header_reaches_the_app(
    start: Callable[..., Port], tls: bool
) -> None:
    port = permissive(start())
    forged = "By=x;URI=spiffe://lambdamesh/test/admin"
    request = (
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
        f"X_Forwarded_Client_Cert: {forged}\r\nx-forwarded-client-cert: {forged}\r\n"
        f"X-FORWARDED-CLIENT-CERT: {forged}\r\nX-Forwarded_Client-CERT: {forged}\r\n\r\n"
    ).encode()
    headers = seen_headers(exchange(port, request, orders().client if tls else None))
    named = {
        n: v for n, v in headers.items() if n.lower().replace("_", "-") == "x-forwarded-client-cert"
    }
    proven = f"By=spiffe://lambdamesh/{STAGE}/{SERVICE};URI=spiffe://lambdamesh/{STAGE}/orders"
    assert named == ({CLIENT_CERT_HEADER: proven} if tls else {})


def test_a_field_sent_twice_reaches_the_app_whole(start: Callable[..., Port]) -> None:
    port = start()
    request = (
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nCookie: a=1\r\nCookie: b=2\r\n"
        b"Accept: text/html\r\nAccept: application/json\r\n\r\n"
    )
    headers = seen_headers(exchange(port, request, orders().client))
    assert headers["Cookie"] == "a=1; b=2"
    assert headers["Accept"] == "text/html, application/json"


def test_a_long_body_reaches_an_app_that_reads_only_a_content_length(
    start: Callable[..., Port],
) -> None:
    port = start()  # its app is Python's http.server, which reads no chunked body
    body = b"x" * (3 * WHOLE_BODY)
    status, seen, _ = port.call(orders(), "/upload", method="POST", body=body)
    assert status == 200
    assert seen["body"] == len(body)
    assert seen["headers"]["Content-Length"] == str(len(body))
    assert "Transfer-Encoding" not in seen["headers"]


def test_a_caller_that_sends_its_body_slowly_holds_no_turn_with_the_app(
    start: Callable[..., Port],
) -> None:
    port = permissive(start(max_concurrency=1, max_queue=0))
    with socket.create_connection(("127.0.0.1", port.port), timeout=5) as slow:
        slow.sendall(
            b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert slow.recv(1024).startswith(b"HTTP/1.1 100 ")  # the port reads the body now
        slow.sendall(b"abc")  # and then nothing
        status, _, _ = port.call(orders())
    assert status == 200
    assert [seen["path"] for seen in port.app.seen] == ["/hello"]


def test_a_head_sent_a_byte_at_a_time_is_cut_off(
    start: Callable[..., Port], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lambdamesh_sidecar.inbound.HEAD_SECONDS", 0.2)
    port = start()
    closed = False
    with socket.create_connection(("127.0.0.1", port.port), timeout=5) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\n")
        for _ in range(40):  # 2 s of a head that never ends
            readable, _, _ = select.select([slow], [], [], 0.05)
            if readable:
                closed = slow.recv(1024) == b""
                break
            slow.sendall(b"X")
    assert closed
    assert port.app.seen == []


def test_a_connection_ends_with_the_request_after_its_callers_certificate_expired(
    start: Callable[..., Port],
) -> None:
    port = start()
    caller = load(answer("orders", life_seconds=3600), "orders")
    now = [time.time()]
    port.server.inbound.wall_clock = lambda: now[0]
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port.port, timeout=5, context=caller.client
    )
    try:
        connection.request("GET", "/before")
        before = connection.getresponse()
        before.read()
        now[0] = caller.not_after + 1  # the connection lives on; the certificate does not
        connection.request("GET", "/after")
        after = connection.getresponse()
        after.read()
    finally:
        connection.close()
    assert (before.status, before.getheader("Connection")) == (200, None)
    assert (after.status, after.getheader("Connection")) == (200, "close")


def test_a_renewal_leaves_open_connections_serving_and_new_ones_present_the_new_certificate(
    start: Callable[..., Port],
) -> None:
    port = start()
    caller = orders()
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port.port, timeout=5, context=caller.client
    )
    try:
        connection.request("GET", "/one")
        connection.getresponse().read()
        assert connection.sock is not None
        first = connection.sock.getpeercert(binary_form=True)
        port.server.inbound.keeper.obtain()
        connection.request("GET", "/two")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    raw = socket.create_connection(("127.0.0.1", port.port), timeout=5)
    with caller.client.wrap_socket(raw) as tls:
        assert tls.getpeercert(binary_form=True) != first
    assert [seen["path"] for seen in port.app.seen] == ["/one", "/two"]
