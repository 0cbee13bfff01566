"""The app fed events exactly as API Gateway REST sends them when deployed.

Chalice's local server and test client build events of their own; these tests hand the app
the deployed shape directly (``multiValueHeaders``, base64 bodies, the raw ``path``), which is
where local and deployed behaviour could part ways.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import app as application
from chalicelib import wiring
from chalicelib.instances import Registration
from chalicelib.storage import InstanceStore
from tests.functional.conftest import Upstream


class Context:
    function_name = "lambdamesh"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:lambdamesh"
    aws_request_id = "c0ffee"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def api_gateway_event(
    method: str,
    path: str,
    service: str,
    version: str,
    headers: dict[str, list[str]] | None = None,
    body: bytes | None = None,
) -> dict[str, Any]:
    rest = path.removeprefix(f"/api/v1/{service}/{version}").strip("/")
    resource = "/api/v1/{service}/{version}" + ("/{proxy+}" if rest else "")
    params = {"service": service, "version": version, **({"proxy": rest} if rest else {})}
    multi = {k: v for k, v in (headers or {}).items()}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {k: v[-1] for k, v in multi.items()},
        "multiValueHeaders": multi,
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": params,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/api{path}",
            "stage": "api",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "203.0.113.9"},
        },
        "body": base64.b64encode(body).decode() if body is not None else None,
        "isBase64Encoded": body is not None,
    }


@pytest.fixture
def deployed(
    environment: dict[str, str],
    store: InstanceStore,
    upstreams: Callable[[str], Upstream],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[dict[str, Any]], dict[str, Any]]]:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    upstream = upstreams("orders")
    store.register(
        Registration("orders", "i-1", "v1", "127.0.0.1", upstream.port, lease_seconds=300),
        time.time(),
    )
    yield lambda event: application.app(event, Context())
    wiring.reset()


def decoded(response: dict[str, Any]) -> bytes:
    body = response["body"]
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


def test_repeated_request_headers_all_reach_the_upstream(deployed: Any) -> None:
    event = api_gateway_event(
        "GET",
        "/api/v1/orders/v1/x",
        "orders",
        "v1",
        headers={"Accept": ["text/html", "application/json"], "Cookie": ["a=1", "b=2"]},
    )

    seen = json.loads(decoded(deployed(event)))["headers"]

    assert seen["Accept"] == "text/html, application/json"
    assert seen["Cookie"] == "a=1; b=2"


def test_the_path_reaches_the_upstream_as_sent_with_its_trailing_slash_and_escapes(
    deployed: Any,
) -> None:
    event = api_gateway_event("GET", "/api/v1/orders/v1/dir/a%2Fb/", "orders", "v1")

    seen = json.loads(decoded(deployed(event)))

    assert seen["path"] == "/dir/a%2Fb/"


def test_a_base64_body_arrives_intact_and_the_answer_is_base64(deployed: Any) -> None:
    payload = bytes(range(256)) * 3
    event = api_gateway_event(
        "POST",
        "/api/v1/orders/v1/echo",
        "orders",
        "v1",
        headers={"Content-Type": ["application/octet-stream"]},
        body=payload,
    )

    response = deployed(event)

    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is True
    assert decoded(response) == payload


def test_an_error_reaches_a_client_that_sent_no_accept_header(deployed: Any) -> None:
    # Chalice's own check would turn this into a 400 about Accept headers.
    response = deployed(api_gateway_event("GET", "/api/v1/nosuch/v1/x", "nosuch", "v1"))

    assert response["statusCode"] == 404
    assert json.loads(decoded(response))["error"]["code"] == "service_not_found"


def test_x_forwarded_for_ends_with_the_caller_api_gateway_saw(deployed: Any) -> None:
    event = api_gateway_event(
        "GET",
        "/api/v1/orders/v1/",
        "orders",
        "v1",
        headers={"X-Forwarded-For": ["198.51.100.7, 203.0.113.9"]},
    )

    seen = json.loads(decoded(deployed(event)))["headers"]

    assert seen["X-Forwarded-For"] == "198.51.100.7, 203.0.113.9"


def encoded_event(path: str, proxy: str) -> dict[str, Any]:
    """A request to ``orders``/``v1`` whose path spells the route's segments in escapes:
    API Gateway matches on the decoded segments and hands over the raw ``path``."""
    event = api_gateway_event("GET", path, "orders", "v1")
    resource = "/api/v1/{service}/{version}/{proxy+}"
    event.update(
        resource=resource,
        pathParameters={"service": "orders", "version": "v1", "proxy": proxy},
    )
    event["requestContext"]["resourcePath"] = resource
    return event


def test_an_escaped_route_segment_cannot_steer_the_path_to_a_later_lookalike(
    deployed: Any,
) -> None:
    event = encoded_event(
        "/api/v1/ord%65rs/v1/public/api/v1/orders/v1/admin", "public/api/v1/orders/v1/admin"
    )

    seen = json.loads(decoded(deployed(event)))

    assert seen["path"] == "/public/api/v1/orders/v1/admin"


def test_escapes_after_an_escaped_route_segment_reach_the_upstream_as_sent(
    deployed: Any,
) -> None:
    event = encoded_event("/api/v1/ord%65rs/%761/a%2Fb/", "a/b/")

    seen = json.loads(decoded(deployed(event)))

    assert seen["path"] == "/a%2Fb/"


def test_a_custom_domain_base_path_before_the_route_is_not_forwarded(deployed: Any) -> None:
    # A base path mapping (`mesh`) stays in the event's path; the route starts after it.
    event = encoded_event("/mesh/api/v1/orders/v1/api/v1/orders/v1/x%2F", "api/v1/orders/v1/x/")

    seen = json.loads(decoded(deployed(event)))

    assert seen["path"] == "/api/v1/orders/v1/x%2F"
