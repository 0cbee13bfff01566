"""The local API Gateway's HTTP server, spoken to over real loopback HTTP."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from chalice.app import Chalice, Response

from lambdamesh.devserver import DevRequestHandler
from lambdamesh.invokers import UrlInvoker
from lambdamesh.localgateway import LocalGatewayServer, create_dev_server
from tests.functional.conftest import serve_in_background

BINARY = bytes(range(256)) * 4
OCTET = "application/octet-stream"


def make_app(barrier: threading.Barrier) -> Chalice:
    app = Chalice(app_name="tiny")

    @app.route("/api/v1/{service}/{version}/{proxy+}", methods=["GET", "HEAD"])
    def forward(service: str, version: str) -> dict[str, object]:
        request = app.current_request
        assert request is not None
        event = request.to_original_event()
        return {
            "service": service,
            "version": version,
            "uri_params": request.uri_params,
            "headers": event["multiValueHeaders"],
        }

    @app.route("/echo/{proxy+}", methods=["POST"], content_types=[OCTET])
    def echo() -> Response:
        request = app.current_request
        assert request is not None
        return Response(body=request.raw_body, headers={"Content-Type": OCTET})

    @app.route("/text", methods=["GET", "HEAD"])
    def text() -> Response:
        return Response(body="hello", headers={"content-type": "text/plain"})

    @app.route("/proxied", methods=["GET"])
    def proxied() -> Response:
        upstream: dict[str, str | list[str]] = {
            "Server": "upstream/1",
            "Date": "Sat, 28 Nov 2026 07:00:00 GMT",
        }
        return Response(body="hi", headers=upstream)

    @app.route("/slow/{proxy+}")
    def slow() -> dict[str, object]:
        barrier.wait()  # Both requests are in flight before either reads current_request.
        request = app.current_request
        assert request is not None
        return {"proxy": request.uri_params}

    @app.route("/registry/services/{service}/instances/{instance_id}/heartbeat", methods=["PUT"])
    def heartbeat(service: str, instance_id: str) -> dict[str, object]:
        return {"ok": True}

    return app


@pytest.fixture
def barrier() -> threading.Barrier:
    return threading.Barrier(2, timeout=10)


def started(server: LocalGatewayServer) -> Iterator[LocalGatewayServer]:
    thread = serve_in_background(server)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)
    assert not thread.is_alive()


@pytest.fixture
def server(barrier: threading.Barrier) -> Iterator[LocalGatewayServer]:
    yield from started(create_dev_server(make_app(barrier), "127.0.0.1", 0))


def connect(server: LocalGatewayServer) -> http.client.HTTPConnection:
    host, port = server.server_address[:2]
    return http.client.HTTPConnection(str(host), int(port), timeout=10)


def exchange(server: LocalGatewayServer, raw: bytes) -> bytes:
    """Sends ``raw`` as is and reads until the server closes or a full answer arrived."""
    host, port = server.server_address[:2]
    with socket.create_connection((str(host), int(port)), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def get_json(server: LocalGatewayServer, method: str, path: str, **kwargs: Any) -> Any:
    conn = connect(server)
    conn.request(method, path, **kwargs)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, json.loads(body)


def test_a_deep_path_reaches_the_greedy_view(server: LocalGatewayServer) -> None:
    status, body = get_json(server, "GET", "/api/v1/orders/v2/a/b/c/d?x=1")

    assert status == 200
    assert (body["service"], body["version"]) == ("orders", "v2")
    assert body["uri_params"] == {"service": "orders", "version": "v2", "proxy": "a/b/c/d"}


def test_repeated_request_headers_keep_every_value(server: LocalGatewayServer) -> None:
    conn = connect(server)
    conn.putrequest("GET", "/api/v1/orders/v1/x")
    conn.putheader("Accept", "text/html")
    conn.putheader("Accept", "application/json")
    conn.endheaders()
    response = conn.getresponse()
    headers = json.loads(response.read())["headers"]
    conn.close()

    assert headers["Accept"] == ["text/html", "application/json"]


def test_a_binary_body_round_trips_byte_identical(server: LocalGatewayServer) -> None:
    conn = connect(server)
    conn.request(
        "POST", "/echo/blob", body=BINARY, headers={"Content-Type": OCTET, "Accept": OCTET}
    )
    response = conn.getresponse()

    assert response.status == 200
    assert response.read() == BINARY
    conn.close()


def test_a_chunked_request_body_arrives_whole(server: LocalGatewayServer) -> None:
    conn = connect(server)
    chunks = iter([BINARY[:100], BINARY[100:700], BINARY[700:]])
    conn.request(
        "POST",
        "/echo/blob",
        body=chunks,
        headers={"Content-Type": OCTET, "Accept": OCTET},
        encode_chunked=True,
    )
    response = conn.getresponse()

    assert response.status == 200
    assert response.read() == BINARY
    conn.close()


def test_obsolete_line_folding_is_refused_with_400(server: LocalGatewayServer) -> None:
    raw = b"GET /text HTTP/1.1\r\nHost: x\r\nX-Folded: one\r\n two\r\n\r\n"

    answer = exchange(server, raw)

    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"hello" not in answer


@pytest.mark.parametrize("value", [b"a\x00b", b"a\x0bb", b"a\x1fb", b"a\x7fb"])
def test_a_control_character_in_a_header_value_is_refused_with_400(
    server: LocalGatewayServer, value: bytes
) -> None:
    raw = b"GET /text HTTP/1.1\r\nHost: x\r\nX-Odd: " + value + b"\r\n\r\n"

    answer = exchange(server, raw)

    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"control character" in answer
    assert b"hello" not in answer


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /text HTTP/1.1\r\nHost: x\r\nX-A: b\rX-Injected: 2\r\n\r\n",
        b"GET /text HTTP/1.1\r\nHost: x\r\nX-A: b\r\r\n\r\n",
        b"GET /text\r HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /text HTTP/1.1\r\r\nHost: x\r\n\r\n",
    ],
    ids=["in-header-value", "ending-header-line", "in-request-line", "ending-request-line"],
)
def test_a_bare_cr_in_the_request_line_or_a_header_line_is_refused_with_400(
    server: LocalGatewayServer, raw: bytes
) -> None:
    # RFC 9112 section 2.2; the standard library's parsers would read it as a line end.
    answer = exchange(server, raw)

    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"bare CR" in answer and b"Connection: close" in answer
    assert b"hello" not in answer


def test_a_transfer_encoding_hidden_behind_a_bare_cr_never_frames_a_body(
    server: LocalGatewayServer,
) -> None:
    inner = b"POST /echo/smuggled HTTP/1.1"
    raw = (
        b"GET /text HTTP/1.1\r\nHost: x\r\nX-A: b\rTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner)
        + b"GET /text HTTP/1.1\r\nHost: x\r\n\r\n"
    )

    answer = exchange(server, raw)

    assert answer.startswith(b"HTTP/1.1 400 ") and answer.count(b"HTTP/1.1 ") == 1
    assert b"hello" not in answer


def test_a_request_line_without_a_version_is_refused_with_a_status_line(
    server: LocalGatewayServer,
) -> None:
    answer = exchange(server, b"GET /text\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"HTTP/0.9" in answer
    assert b"hello" not in answer


def post_octets(server: LocalGatewayServer, length: bytes) -> bytes:
    head = f"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Type: {OCTET}\r\nAccept: {OCTET}\r\n"
    return exchange(server, head.encode() + b"Content-Length: " + length + b"\r\n\r\nab")


@pytest.mark.parametrize("after", [b"\x0b", b"\x0c", b"\xa0"], ids=["vt", "ff", "nbsp"])
def test_only_spaces_and_tabs_may_follow_a_content_length(
    server: LocalGatewayServer, after: bytes
) -> None:
    refused = post_octets(server, b"2" + after)
    read = post_octets(server, b"2 \t")

    assert refused.startswith(b"HTTP/1.1 400 ") and not refused.endswith(b"ab")
    assert read.startswith(b"HTTP/1.1 200 ") and read.endswith(b"\r\n\r\nab")


def test_tabs_and_obs_text_in_a_header_value_reach_the_app(server: LocalGatewayServer) -> None:
    raw = (
        b"GET /api/v1/orders/v1/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"X-Odd: a\tb caf\xe9\r\n\r\n"
    )

    answer = exchange(server, raw)

    assert answer.startswith(b"HTTP/1.1 200 ")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["headers"]["X-Odd"] == ["a\tb caf\u00e9"]


def test_a_multipart_content_type_is_not_mistaken_for_folding(server: LocalGatewayServer) -> None:
    raw = (
        b"GET /text HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n"
    )

    answer = exchange(server, raw)

    # The app answers (this view takes no multipart bodies): the server let the request by.
    assert not answer.startswith(b"HTTP/1.1 400 ")
    assert b"folding" not in answer


def test_a_line_that_is_no_header_is_refused_as_malformed(server: LocalGatewayServer) -> None:
    answer = exchange(server, b"GET /text HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"malformed header line" in answer


@pytest.mark.parametrize("length", ["\u00b2", "+2", " 2x", "0x2"])
def test_a_content_length_of_anything_but_ascii_digits_is_refused(
    server: LocalGatewayServer, length: str
) -> None:
    raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + length.encode("latin-1")

    answer = exchange(server, raw + b"\r\n\r\nab")

    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"invalid Content-Length" in answer


def test_a_head_answer_has_no_body_and_the_connection_stays_usable(
    server: LocalGatewayServer,
) -> None:
    conn = connect(server)
    conn.request("HEAD", "/text")
    head = conn.getresponse()
    head_body = head.read()
    # A stray body would be read here as the start of the next response.
    conn.request("GET", "/text")
    get = conn.getresponse()

    assert head.status == 200
    assert head_body == b""
    assert head.getheader("Content-Length") == "5"
    assert get.status == 200
    assert get.read() == b"hello"
    assert not get.will_close
    conn.close()


def test_the_views_content_type_is_sent_exactly_once(server: LocalGatewayServer) -> None:
    conn = connect(server)
    conn.request("GET", "/text")
    response = conn.getresponse()
    response.read()

    assert response.msg.get_all("Content-Type") == ["text/plain"]
    conn.close()


def test_server_and_date_are_sent_once_the_views_own_winning(server: LocalGatewayServer) -> None:
    conn = connect(server)
    conn.request("GET", "/proxied")
    proxied = conn.getresponse()
    proxied.read()
    conn.request("GET", "/text")
    plain = conn.getresponse()
    plain.read()
    conn.close()

    assert proxied.msg.get_all("Server") == ["upstream/1"]
    assert proxied.msg.get_all("Date") == ["Sat, 28 Nov 2026 07:00:00 GMT"]
    assert len(plain.msg.get_all("Server") or []) == 1
    assert len(plain.msg.get_all("Date") or []) == 1


@pytest.mark.parametrize(("method", "path"), [("GET", "/nowhere/at/all"), ("DELETE", "/text")])
def test_an_unknown_path_or_method_answers_what_api_gateway_answers(
    server: LocalGatewayServer, method: str, path: str
) -> None:
    status, body = get_json(server, method, path)

    assert status == 403
    assert body == {"message": "Missing Authentication Token"}


def test_a_root_catch_all_takes_paths_no_other_route_has(barrier: threading.Barrier) -> None:
    app = make_app(barrier)

    @app.route("/{proxy+}", methods=["GET"])
    def catch_all() -> Response:
        return Response(body={"caught": True}, status_code=404)

    for running in started(create_dev_server(app, "127.0.0.1", 0)):
        status, body = get_json(running, "GET", "/nowhere/at/all")
        conn = connect(running)
        conn.request("GET", "/text")
        text = conn.getresponse()
        text_body = text.read()
        conn.close()

    assert (status, body) == (404, {"caught": True})
    assert (text.status, text_body) == (200, b"hello")


def test_two_concurrent_requests_each_see_their_own_request(server: LocalGatewayServer) -> None:
    def fetch(name: str) -> object:
        return get_json(server, "GET", f"/slow/{name}/deep")[1]

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(fetch, ["one", "two"]))

    assert results == [{"proxy": {"proxy": "one/deep"}}, {"proxy": {"proxy": "two/deep"}}]


def test_the_dev_server_logs_requests_but_not_successful_heartbeats(
    barrier: threading.Barrier, capsys: pytest.CaptureFixture[str]
) -> None:
    dev = create_dev_server(make_app(barrier), "127.0.0.1", 0, handler_cls=DevRequestHandler)
    for running in started(dev):
        get_json(running, "PUT", "/registry/services/s/instances/i/heartbeat")
        get_json(running, "GET", "/nowhere")

    logged = capsys.readouterr().err
    assert '"GET /nowhere HTTP/1.1" 403' in logged
    assert "heartbeat" not in logged


def echo_url_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A function URL's app: answers the event it was given, with two cookies."""
    body = json.dumps(event).encode()
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


@pytest.fixture
def url_server() -> Iterator[LocalGatewayServer]:
    yield from started(LocalGatewayServer(("127.0.0.1", 0), UrlInvoker(echo_url_event)))


def test_the_url_server_sends_the_function_url_event_over_real_loopback(
    url_server: LocalGatewayServer,
) -> None:
    conn = connect(url_server)
    conn.putrequest("POST", "/any/path?x=1&x=2", skip_accept_encoding=True)
    conn.putheader("X-Tag", "one")
    conn.putheader("X-Tag", "two")
    conn.putheader("Cookie", "c=3; d=4")
    conn.putheader("Content-Length", str(len(BINARY)))
    conn.endheaders(BINARY)
    response = conn.getresponse()
    event = json.loads(response.read())
    conn.close()

    assert response.status == 200
    assert response.headers.get_all("Set-Cookie") == ["a=1; Path=/", "b=2"]
    assert event["version"] == "2.0"
    assert event["rawPath"] == "/any/path"
    assert event["rawQueryString"] == "x=1&x=2"
    assert event["headers"]["x-tag"] == "one,two"
    assert event["cookies"] == ["c=3", "d=4"]
    assert base64.b64decode(event["body"]) == BINARY
    assert event["requestContext"]["http"]["method"] == "POST"


def test_a_head_on_the_url_server_is_framed_like_the_rest_lane(
    url_server: LocalGatewayServer,
) -> None:
    conn = connect(url_server)
    conn.request("HEAD", "/any")
    head = conn.getresponse()
    head.read()
    conn.request("GET", "/any")
    following = conn.getresponse()
    following.read()
    conn.close()

    assert head.status == 200
    assert len(head.headers.get_all("Server") or []) == 1
    assert len(head.headers.get_all("Date") or []) == 1
    assert following.status == 200


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "BREW"])
def test_a_method_api_gateway_has_no_resource_for_gets_its_403_not_a_501(
    server: LocalGatewayServer, method: str
) -> None:
    status, body = get_json(server, method, "/api/v1/orders/v2/a")

    assert status == 403
    assert body == {"message": "Missing Authentication Token"}
