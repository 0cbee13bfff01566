"""The router's own answers: a path or method no route has answers in the error envelope.

Deployed, API Gateway would answer such requests itself (403 "Missing Authentication Token")
unless the app owns them; these tests hand the app the event API Gateway sends for the
resources the app declares, and drive the same requests through the local test client.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import app as application
from chalicelib.instances import Registration
from chalicelib.storage import InstanceStore
from lambdamesh.testclient import TestClient as Client
from tests.functional.conftest import Upstream, body_json


class Context:
    function_name = "lambdamesh"
    aws_request_id = "c0ffee"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def deployed_event(method: str, path: str, resource: str, params: dict[str, str]) -> dict[str, Any]:
    """The REST proxy event API Gateway sends once it has matched ``resource``."""
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": None,
        "multiValueHeaders": None,
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": params or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/api{path}",
            "stage": "api",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "203.0.113.9"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


def invoke(event: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    response: dict[str, Any] = application.app(event, Context())
    body = response["body"]
    return response, json.loads(base64.b64decode(body) if response["isBase64Encoded"] else body)


@pytest.mark.parametrize(
    ("path", "resource", "params"),
    [
        ("/", "/", {}),
        ("/nowhere/at/all", "/{proxy+}", {"proxy": "nowhere/at/all"}),
        ("/api/v2/x", "/api/{proxy+}", {"proxy": "v2/x"}),
        ("/api/v1/orders", "/api/v1/{service}", {"service": "orders"}),
        ("/health/deep", "/health/{proxy+}", {"proxy": "deep"}),
        (
            "/registry/services/orders/leases",
            "/registry/services/{service}/{proxy+}",
            {"service": "orders", "proxy": "leases"},
        ),
    ],
)
def test_a_path_no_route_has_answers_404_in_the_error_envelope(
    path: str, resource: str, params: dict[str, str]
) -> None:
    response, body = invoke(deployed_event("POST", path, resource, params))

    assert response["statusCode"] == 404
    assert body["error"]["code"] == "route_not_found"
    assert body["error"]["request_id"] == response["headers"]["X-Request-Id"]


@pytest.mark.parametrize(
    ("method", "path", "resource", "params", "allow"),
    [
        ("POST", "/health", "/health", {}, "GET"),
        ("DELETE", "/registry/services", "/registry/services", {}, "GET"),
        (
            "GET",
            "/registry/services/orders/instances/i-1",
            "/registry/services/{service}/instances/{instance_id}",
            {"service": "orders", "instance_id": "i-1"},
            "DELETE, PUT",
        ),
    ],
)
def test_a_method_a_route_lacks_answers_405_with_allow_in_the_error_envelope(
    method: str, path: str, resource: str, params: dict[str, str], allow: str
) -> None:
    response, body = invoke(deployed_event(method, path, resource, params))

    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == allow
    assert body["error"]["code"] == "method_not_allowed"
    assert body["error"]["request_id"] == response["headers"]["X-Request-Id"]


def test_every_declared_resource_has_every_method_so_api_gateway_never_answers_itself() -> None:
    methods = {"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}

    assert {path: set(entries) for path, entries in application.app.routes.items()} == {
        path: methods for path in application.app.routes
    }
    assert "/{proxy+}" in application.app.routes


@pytest.mark.parametrize("path", ["/", "/nowhere", "/api/v2/x", "/api/v1/orders", "/health/x"])
def test_the_local_client_answers_an_unknown_path_as_deployed(client: Client, path: str) -> None:
    response = client.http.get(path)

    assert response.status_code == 404
    assert body_json(response)["error"]["code"] == "route_not_found"


def test_the_local_client_answers_a_wrong_method_as_deployed(client: Client) -> None:
    response = client.http.post("/health")

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert body_json(response)["error"]["code"] == "method_not_allowed"


def test_the_local_client_forwards_exactly_what_follows_an_escaped_route(
    client: Client, store: InstanceStore, upstreams: Callable[[str], Upstream]
) -> None:
    upstream = upstreams("orders")
    store.register(
        Registration("orders", "i-1", "v1", "127.0.0.1", upstream.port, lease_seconds=300),
        time.time(),
    )

    lookalike = client.http.get("/api/v1/ord%65rs/v1/public/api/v1/orders/v1/admin")
    escaped = client.http.get("/api/v1/ord%65rs/v1/a%2Fb/")

    assert body_json(lookalike)["path"] == "/public/api/v1/orders/v1/admin"
    assert body_json(escaped)["path"] == "/a%2Fb/"
