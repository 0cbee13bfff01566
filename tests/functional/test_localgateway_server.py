"""Chalice's dev server with greedy routes, spoken to over real loopback HTTP."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from chalice.app import Chalice, Response
from chalice.config import Config
from chalice.local import LocalDevServer

from lambdamesh.localgateway import create_dev_server

BINARY = bytes(range(256)) * 4
OCTET = "application/octet-stream"


def make_app(barrier: threading.Barrier) -> Chalice:
    app = Chalice(app_name="tiny")

    @app.route("/api/v1/{service}/{version}/{proxy+}", methods=["GET", "HEAD"])
    def forward(service: str, version: str) -> dict[str, object]:
        request = app.current_request
        assert request is not None
        return {"service": service, "version": version, "uri_params": request.uri_params}

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
        upstream = {"Server": "upstream/1", "Date": "Sat, 28 Nov 2026 07:00:00 GMT"}
        return Response(body="hi", headers=upstream)

    @app.route("/slow/{proxy+}")
    def slow() -> dict[str, object]:
        barrier.wait()  # Both requests are in flight before either reads current_request.
        request = app.current_request
        assert request is not None
        return {"proxy": request.uri_params}

    return app


@pytest.fixture
def barrier() -> threading.Barrier:
    return threading.Barrier(2, timeout=10)


@pytest.fixture
def server(barrier: threading.Barrier) -> Iterator[LocalDevServer]:
    dev_server = create_dev_server(make_app(barrier), Config.create(), "127.0.0.1", 0)
    thread = threading.Thread(target=dev_server.serve_forever, daemon=True)
    thread.start()
    yield dev_server
    dev_server.shutdown()
    dev_server.server.server_close()
    thread.join(timeout=10)
    assert not thread.is_alive()


def connect(server: LocalDevServer) -> http.client.HTTPConnection:
    host, port = server.server.server_address[:2]
    return http.client.HTTPConnection(str(host), int(port), timeout=10)


def test_deep_path_reaches_the_greedy_view(server: LocalDevServer) -> None:
    conn = connect(server)
    conn.request("GET", "/api/v1/orders/v2/a/b/c/d?x=1")
    response = conn.getresponse()

    assert response.status == 200
    assert json.loads(response.read()) == {
        "service": "orders",
        "version": "v2",
        "uri_params": {"service": "orders", "version": "v2", "proxy": "a/b/c/d"},
    }
    conn.close()


def test_binary_body_round_trips_byte_identical(server: LocalDevServer) -> None:
    conn = connect(server)
    conn.request(
        "POST", "/echo/blob", body=BINARY, headers={"Content-Type": OCTET, "Accept": OCTET}
    )
    response = conn.getresponse()

    assert response.status == 200
    assert response.read() == BINARY
    conn.close()


def test_head_has_no_body_and_the_connection_stays_usable(server: LocalDevServer) -> None:
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


def test_content_type_from_the_view_is_sent_exactly_once(server: LocalDevServer) -> None:
    conn = connect(server)
    conn.request("GET", "/text")
    response = conn.getresponse()
    response.read()

    assert response.msg.get_all("Content-Type") == ["text/plain"]
    conn.close()


def test_server_and_date_from_the_view_replace_the_local_servers_own(
    server: LocalDevServer,
) -> None:
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


def test_two_concurrent_requests_each_see_their_own_request(server: LocalDevServer) -> None:
    def fetch(name: str) -> object:
        conn = connect(server)
        conn.request("GET", f"/slow/{name}/deep")
        response = conn.getresponse()
        body = json.loads(response.read())
        conn.close()
        return body

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(fetch, ["one", "two"]))

    assert results == [{"proxy": {"proxy": "one/deep"}}, {"proxy": {"proxy": "two/deep"}}]
