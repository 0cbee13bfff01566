"""Outlier ejection through the app: which answers take an instance out of rotation, and how
much of a version they may take, with moto's DynamoDB and real upstream servers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lambdamesh.testclient import TestClient as Client
from tests.functional.conftest import body_json, serve_in_background
from tests.helpers import admin_token, bearer

POLICY = "/registry/services/orders/policy"


class _App(BaseHTTPRequestHandler):
    """A healthy app with one path, ``/boom``, that answers 500 on purpose."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        status = 500 if self.path.startswith("/boom") else 200
        assert isinstance(self.server, ThreadingHTTPServer)
        port = self.server.server_address[1]
        self.send_response(status)
        self.send_header("X-Served-By", str(port))
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def four_apps() -> Iterator[list[int]]:
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _App) for _ in range(4)]
    for server in servers:
        serve_in_background(server)
    yield [int(server.server_address[1]) for server in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


def admin_put(client: Client, path: str, body: Any) -> Any:
    headers = {"Content-Type": "application/json", **bearer(admin_token())}
    return client.http.put(path, headers=headers, body=json.dumps(body))


def register(client: Client, ports: list[int]) -> None:
    for n, port in enumerate(ports):
        body = {"version": "v1", "host": "127.0.0.1", "port": port}
        answer = admin_put(client, f"/registry/services/orders/instances/i{n}", body)
        assert answer.status_code == 201, answer.body


def served_by(client: Client, count: int) -> set[str]:
    seen = set()
    for _ in range(count):
        answer = client.http.get("/api/v1/orders/v1/ok")
        assert answer.status_code == 200, answer.body
        seen.add(answer.headers["X-Served-By"])
    return seen


@pytest.mark.parametrize(
    ("outlier_detection", "serving"),
    [(None, 4), ({"failure_statuses": "all_5xx"}, 3)],
    ids=["by default", "all_5xx"],
)
def test_forty_requests_to_a_path_answered_500_eject_nothing_unless_the_policy_counts_all_5xx(
    client: Client,
    four_apps: list[int],
    outlier_detection: dict[str, Any] | None,
    serving: int,
) -> None:
    register(client, four_apps)
    if outlier_detection is not None:
        answer = admin_put(client, POLICY, {"outlier_detection": outlier_detection})
        assert answer.status_code == 201, answer.body

    statuses = {client.http.get("/api/v1/orders/v1/boom").status_code for _ in range(40)}

    assert statuses == {500}
    # Ejected instances get none of the next requests; with all_5xx the 10 % cap still
    # leaves three of the four serving.
    assert len(served_by(client, 12)) == serving


def test_a_policy_reads_back_counting_gateway_errors_and_ejecting_a_tenth_by_default(
    client: Client,
) -> None:
    assert admin_put(client, POLICY, {"strategy": "random"}).status_code == 201

    answer = client.http.get(POLICY, headers=bearer(admin_token()))

    ejection = body_json(answer)["policy"]["outlier_detection"]
    assert (ejection["failure_statuses"], ejection["max_ejected_percent"]) == (
        "gateway_errors",
        10,
    )


@pytest.mark.parametrize("value", ["everything", "5xx", None, 500])
def test_failure_statuses_is_one_of_two_names(client: Client, value: Any) -> None:
    refused = admin_put(client, POLICY, {"outlier_detection": {"failure_statuses": value}})

    assert refused.status_code == 400, refused.body
    message = body_json(refused)["error"]["message"]
    assert "outlier_detection.failure_statuses must be one of" in message
    assert "gateway_errors" in message and "all_5xx" in message


def test_the_api_document_lists_the_choices(client: Client) -> None:
    document = body_json(client.http.get("/registry/openapi.json"))

    ejection = document["components"]["schemas"]["Policy"]["properties"]["outlier_detection"]
    assert ejection["properties"]["failure_statuses"] == {"enum": ["gateway_errors", "all_5xx"]}
