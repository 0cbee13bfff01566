"""The same registry and gateway cases through both lanes: API Gateway's REST proxy event
(payload 1.0) and a Lambda function URL event (payload 2.0), each given to ``app(event,
context)`` as deployed, against moto's DynamoDB and a loopback upstream."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

import app as application
from chalicelib import wiring
from chalicelib.storage import InstanceStore
from lambdamesh.events import HttpRequest, RouteTable, Stage, build_event
from lambdamesh.invokers import LambdaContext, read_proxy_response
from tests.functional.conftest import Upstream
from tests.helpers import admin_token, bearer, service_token

INSTANCE = "/registry/services/orders/instances/task-1"
JSON = {"Content-Type": "application/json"}
URL_HOST = "abcdefghij.lambda-url.eu-west-1.on.aws"


@dataclass(frozen=True)
class Answer:
    """What the client receives, whichever lane carried it."""

    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Lane = Callable[[str, str, Mapping[str, str], bytes], Answer]


def through_api_gateway(
    method: str, target: str, headers: Mapping[str, str], body: bytes
) -> Answer:
    request = HttpRequest(method, target, tuple(headers.items()), body)
    match = RouteTable(application.app.routes).match(request.path)
    assert match is not None, "answer_unrouted() gives every path a resource"
    event = build_event(
        request, match, Stage(), request_id=str(uuid.uuid4()), epoch_ms=int(time.time() * 1000)
    )
    answer = read_proxy_response(application.app(event, LambdaContext()))
    cookies = [v for k, v in answer.headers if k.lower() == "set-cookie"]
    named = {k.lower(): v for k, v in answer.headers if k.lower() != "set-cookie"}
    return Answer(answer.status, named, cookies, answer.body)


def url_event(method: str, target: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """A function URL event as AWS sends it: lower-case names, cookies apart, a text body
    as text and any other body base64."""
    split = urlsplit(target)
    sent = {k.lower(): v for k, v in headers.items()}
    cookies = [c.strip() for c in sent.pop("cookie", "").split(";") if c.strip()]
    text = sent.get("content-type", "").startswith(("application/json", "text/"))
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": split.path or "/",
        "rawQueryString": split.query,
        **({"cookies": cookies} if cookies else {}),
        "headers": {
            **sent,
            "host": URL_HOST,
            "x-forwarded-for": "127.0.0.1",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": URL_HOST.split(".", 1)[0],
            "domainName": URL_HOST,
            "domainPrefix": URL_HOST.split(".", 1)[0],
            "http": {
                "method": method,
                "path": split.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": sent.get("user-agent", "test"),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        **(
            {
                "body": body.decode() if text else base64.b64encode(body).decode(),
                "isBase64Encoded": not text,
            }
            if body
            else {"isBase64Encoded": False}
        ),
    }


def through_function_url(
    method: str, target: str, headers: Mapping[str, str], body: bytes
) -> Answer:
    answer = application.app(url_event(method, target, headers, body), LambdaContext())
    assert set(answer) <= {"statusCode", "headers", "cookies", "body", "isBase64Encoded"}
    assert all(isinstance(v, str) for v in answer["headers"].values())
    raw = answer.get("body") or ""
    payload = base64.b64decode(raw) if answer.get("isBase64Encoded") else raw.encode()
    named = {k.lower(): v for k, v in answer["headers"].items()}
    return Answer(int(answer["statusCode"]), named, list(answer.get("cookies") or []), payload)


@pytest.fixture(params=[through_api_gateway, through_function_url], ids=["rest", "url"])
def send(
    request: pytest.FixtureRequest,
    environment: dict[str, str],
    store: InstanceStore,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Lane]:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    yield request.param
    wiring.reset()


def register(send: Lane, port: int = 8080, token: str | None = None) -> Answer:
    body = {"version": "v1", "host": "127.0.0.1", "port": port, "lease_seconds": 10}
    headers = {**JSON, **bearer(token or service_token("orders"))}
    return send("PUT", INSTANCE, headers, json.dumps(body).encode())


def test_registering_answers_201_with_the_lease_and_a_request_id(send: Lane) -> None:
    answer = register(send)

    assert answer.status == 201
    assert answer.json()["instance_id"] == "task-1"
    assert answer.json()["status"] == "UP"
    assert answer.headers["x-request-id"]


def test_a_heartbeat_renews_the_lease(send: Lane) -> None:
    register(send)

    answer = send(
        "PUT", INSTANCE + "/heartbeat", {**JSON, **bearer(service_token("orders"))}, b"{}"
    )

    assert answer.status == 200
    assert answer.json()["expires_in"] > 9


def test_listing_shows_the_registered_instance(send: Lane) -> None:
    register(send)
    auth = bearer(admin_token())

    services = send("GET", "/registry/services", auth, b"")
    instances = send("GET", "/registry/services/orders/instances?version=v1", auth, b"")

    assert services.status == 200
    assert [s["service"] for s in services.json()["services"]] == ["orders"]
    assert [i["instance_id"] for i in instances.json()["instances"]] == ["task-1"]


def test_a_request_is_proxied_to_the_upstream_with_path_query_cookies_and_body(
    send: Lane, upstreams: Callable[[str], Upstream]
) -> None:
    upstream = upstreams("orders")
    register(send, port=upstream.port)

    answer = send(
        "POST",
        "/api/v1/orders/v1/deep/path%20x?q=1&q=2&z=",
        {"Content-Type": "application/octet-stream", "Cookie": "a=1; b=2", "X-Custom": "yes"},
        bytes(range(256)),
    )

    assert answer.status == 200
    seen = answer.json()
    sent = {k.lower(): v for k, v in seen["headers"].items()}
    assert seen["method"] == "POST"
    assert seen["path"] == "/deep/path%20x?q=1&q=2&z="
    assert sent["x-custom"] == "yes"
    assert sent["cookie"] == "a=1; b=2"
    assert base64.b64decode(seen["body_base64"]) == bytes(range(256))
    assert answer.headers["x-served-by"] == f"orders:{upstream.port}"


def test_the_upstream_root_is_reached_without_a_path(
    send: Lane, upstreams: Callable[[str], Upstream]
) -> None:
    upstream = upstreams("orders")
    register(send, port=upstream.port)

    answer = send("GET", "/api/v1/orders/v1", {}, b"")

    assert answer.status == 200
    assert answer.json()["path"] == "/"


def test_deregistering_answers_204_and_the_instance_is_gone(send: Lane) -> None:
    register(send)
    auth = bearer(service_token("orders"))

    answer = send("DELETE", INSTANCE, auth, b"")
    listed = send("GET", "/registry/services/orders/instances", auth, b"")

    assert answer.status == 204
    assert answer.body == b""
    assert listed.json()["instances"] == []


def test_a_bad_token_answers_401(send: Lane) -> None:
    answer = register(send, token="not-a-token")

    assert answer.status == 401
    assert answer.json()["error"]["code"] == "unauthorized"


def test_a_malformed_body_answers_400(send: Lane) -> None:
    headers = {**JSON, **bearer(service_token("orders"))}

    answer = send("PUT", INSTANCE, headers, b"{not json")

    assert answer.status == 400
    assert "JSON" in answer.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/nowhere", "/registry/nowhere/at/all", "/"])
def test_an_unknown_route_answers_the_404_envelope(send: Lane, path: str) -> None:
    answer = send("GET", path, {"X-Request-Id": "trace-123"}, b"")

    assert answer.status == 404
    assert answer.json()["error"]["code"] == "route_not_found"
    assert answer.json()["error"]["request_id"] == "trace-123"


def test_a_method_the_route_lacks_answers_405_with_allow(send: Lane) -> None:
    answer = send("POST", "/registry/services", {}, b"")

    assert answer.status == 405
    assert answer.headers["allow"] == "GET"


def test_a_method_no_route_knows_answers_405_in_the_envelope_through_the_function_url(
    environment: dict[str, str], store: InstanceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Behind API Gateway such a method never reaches the Lambda; a function URL passes it on.
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    answer = through_function_url("TRACE", "/registry/services", {"X-Request-Id": "t-1"}, b"")

    assert answer.status == 405
    assert answer.json()["error"]["code"] == "method_not_allowed"
    assert answer.json()["error"]["request_id"] == "t-1"
    assert answer.headers["x-request-id"] == "t-1"
    assert "GET" in answer.headers["allow"]
