"""The gateway through Chalice's test client: moto's DynamoDB, real upstream servers."""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from lambdamesh.testclient import TestClient as Client
from tests.functional.conftest import Upstream, body_json
from tests.helpers import admin_token, bearer

BINARY = bytes(range(256)) * 8


def register(
    client: Client, service: str, instance: str, port: int, version: str = "v1", **fields: Any
) -> None:
    body = {"version": version, "host": "127.0.0.1", "port": port, **fields}
    response = client.http.put(
        f"/registry/services/{service}/instances/{instance}",
        headers={"Content-Type": "application/json", **bearer(admin_token())},
        body=json.dumps(body),
    )
    assert response.status_code in (200, 201), response.body


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_request_reaches_an_instance_with_path_query_and_headers_intact(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    upstream = upstreams("orders")
    register(client, "orders", "a", upstream.port)

    response = client.http.get(
        "/api/v1/orders/v1/deep/er/path%20x?q=1&q=2&z=",
        headers={"X-Custom": "yes", "Connection": "keep-alive, X-Drop", "X-Drop": "secret"},
    )

    assert response.status_code == 200
    seen = body_json(response)
    assert seen["path"] == "/deep/er/path%20x?q=1&q=2&z="
    # Names are case-insensitive, and a function URL sends them in lower case.
    headers = {name.lower(): value for name, value in seen["headers"].items()}
    assert headers["x-custom"] == "yes"
    assert "x-drop" not in headers
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-request-id"] == response.headers["X-Request-Id"]
    assert response.headers["X-Served-By"] == f"orders:{upstream.port}"


def test_the_zero_segment_path_reaches_the_upstream_root(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    upstream = upstreams("orders")
    register(client, "orders", "a", upstream.port)

    response = client.http.get("/api/v1/orders/v1")

    assert response.status_code == 200
    assert body_json(response)["path"] == "/"


def test_a_binary_body_arrives_and_returns_byte_for_byte(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    upstream = upstreams("files")
    register(client, "files", "a", upstream.port)

    response = client.http.post(
        "/api/v1/files/v1/a/b/echo",
        headers={"Content-Type": "application/octet-stream"},
        body=BINARY,
    )

    assert response.status_code == 200
    assert response.body == BINARY


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_every_method_is_forwarded(
    client: Client, upstreams: Callable[[str], Upstream], method: str
) -> None:
    upstream = upstreams("orders")
    register(client, "orders", "a", upstream.port)

    response = client.http.request(method, "/api/v1/orders/v1/x", headers={}, body=b"")

    assert response.status_code == 200
    assert body_json(response)["method"] == method


def test_head_is_forwarded_without_a_body(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    upstream = upstreams("orders")
    register(client, "orders", "a", upstream.port)

    response = client.http.request("HEAD", "/api/v1/orders/v1/x", headers={}, body=b"")

    assert response.status_code == 200
    assert response.body == b""
    assert response.headers["X-Served-By"] == f"orders:{upstream.port}"
    assert int(response.headers["Content-Length"]) > 0


def test_traffic_is_spread_by_weight(client: Client, upstreams: Callable[[str], Upstream]) -> None:
    heavy, light = upstreams("orders"), upstreams("orders")
    register(client, "orders", "heavy", heavy.port, weight=300)
    register(client, "orders", "light", light.port, weight=100)

    served = Counter(
        client.http.get("/api/v1/orders/v1/").headers["X-Served-By"] for _ in range(40)
    )

    assert served == {f"orders:{heavy.port}": 30, f"orders:{light.port}": 10}


def test_a_refused_connection_is_retried_on_another_instance(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    alive = upstreams("orders")
    register(client, "orders", "dead", closed_port())
    register(client, "orders", "alive", alive.port)

    statuses = [
        client.http.post("/api/v1/orders/v1/x", headers={}, body=b"{}").status_code
        for _ in range(6)
    ]

    assert statuses == [200] * 6


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/v1/nosuch/v1/x", 404, "service_not_found"),
        ("/api/v1/orders/v9/x", 404, "version_not_found"),
        ("/api/v1/Bad_Name/v1/x", 400, "invalid_name"),
    ],
)
def test_unroutable_requests_get_clear_errors(
    client: Client, upstreams: Callable[[str], Upstream], path: str, status: int, code: str
) -> None:
    register(client, "orders", "a", upstreams("orders").port)

    response = client.http.get(path)

    assert response.status_code == status
    error = body_json(response)["error"]
    assert error["code"] == code
    assert error["request_id"] == response.headers["X-Request-Id"]


def test_a_service_whose_instances_are_all_down_answers_503(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    register(client, "orders", "a", upstreams("orders").port, status="DOWN")

    response = client.http.get("/api/v1/orders/v1/x")

    assert response.status_code == 503
    assert body_json(response)["error"]["code"] == "no_live_instance"


def test_an_unreachable_upstream_answers_502(client: Client) -> None:
    register(client, "orders", "a", closed_port())

    response = client.http.get("/api/v1/orders/v1/x")

    assert response.status_code == 502
    assert body_json(response)["error"]["code"] == "upstream_unreachable"


def test_a_slow_upstream_answers_504(client: Client) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        register(client, "orders", "a", silent.getsockname()[1])

        response = client.http.get("/api/v1/orders/v1/x")

    assert response.status_code == 504
    assert body_json(response)["error"]["code"] == "upstream_timeout"


def test_the_client_request_id_is_kept(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    register(client, "orders", "a", upstreams("orders").port)

    response = client.http.get("/api/v1/orders/v1/x", headers={"X-Request-Id": "abc-123"})

    assert response.headers["X-Request-Id"] == "abc-123"
    assert body_json(response)["headers"]["X-Request-Id"] == "abc-123"


def test_an_upstream_that_trickles_forever_is_cut_off_at_the_request_timeout(
    client: Client,
) -> None:
    # Each read gets a byte well within the read timeout; only the overall budget ends it.
    stop = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def trickle() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                while not stop.wait(0.2):
                    try:
                        conn.sendall(b"x")
                    except OSError:
                        return

        threading.Thread(target=trickle, daemon=True).start()
        register(client, "orders", "a", listener.getsockname()[1])
        try:
            response = client.http.get("/api/v1/orders/v1/x")
        finally:
            stop.set()

    assert response.status_code == 504
    assert body_json(response)["error"]["code"] == "upstream_timeout"


def test_the_demo_apps_redirect_takes_no_header_injection(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    register(client, "orders", "a", upstreams("orders").port)

    injected = client.http.get("/api/v1/orders/v1/redirect?to=/x%0d%0aSet-Cookie:%20a=b")
    plain = client.http.get("/api/v1/orders/v1/redirect?to=/x")

    assert injected.status_code == 400
    assert "Set-Cookie" not in injected.headers
    assert (plain.status_code, plain.headers["Location"]) == (302, "/x")
