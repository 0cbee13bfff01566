"""Greedy routes and the deployed event shape, without a socket."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
from chalice.app import Chalice, Response
from chalice.config import Config

from lambdamesh.localgateway import (
    GreedyRouteMatcher,
    ProxyEventConverter,
    ProxyLocalGateway,
    create_test_client,
)

GATEWAY_ROUTES = [
    "/api/v1/{service}/{version}/{proxy+}",
    "/api/v1/{service}/{version}",
    "/registry/services",
    "/registry/services/{service}",
    "/registry/{proxy+}",
    "/",
]
BINARY = bytes(range(256))


@pytest.fixture
def matcher() -> GreedyRouteMatcher:
    return GreedyRouteMatcher(GATEWAY_ROUTES)


def converter(binary_types: list[str] | None = None) -> ProxyEventConverter:
    return ProxyEventConverter(GreedyRouteMatcher(GATEWAY_ROUTES), binary_types)


def as_bytes(body: str | bytes) -> bytes:
    return body if isinstance(body, bytes) else body.encode("utf-8")


def make_app() -> Chalice:
    app = Chalice(app_name="tiny")

    @app.route(
        "/api/v1/{service}/{version}/{proxy+}",
        methods=["GET", "POST"],
        content_types=["application/json", "application/octet-stream"],
    )
    def forward(service: str, version: str) -> Response:
        request = app.current_request
        assert request is not None
        event = request.to_original_event()
        return Response(
            body={
                "service": service,
                "version": version,
                "uri_params": request.uri_params,
                "query": event["multiValueQueryStringParameters"],
                "resource": event["resource"],
                "path": event["path"],
                "raw_body": base64.b64encode(as_bytes(request.raw_body)).decode("ascii"),
                "env": os.environ.get("LAMBDAMESH_TABLE"),
            }
        )

    @app.route("/api/v1/{service}/{version}")
    def service_root(service: str, version: str) -> dict[str, Any]:
        return {"service": service, "version": version, "root": True}

    return app


@pytest.mark.parametrize(
    ("url", "proxy"),
    [
        ("/api/v1/orders/v2/a", "a"),
        ("/api/v1/orders/v2/a/b", "a/b"),
        ("/api/v1/orders/v2/a/b/c/d/e/f/g", "a/b/c/d/e/f/g"),
        ("/api/v1/orders/v2/a/b/", "a/b"),
    ],
)
def test_greedy_route_captures_the_rest_of_the_path(
    matcher: GreedyRouteMatcher, url: str, proxy: str
) -> None:
    match = matcher.match_route(url)

    assert match.route == "/api/v1/{service}/{version}/{proxy+}"
    assert match.captured == {"service": "orders", "version": "v2", "proxy": proxy}


@pytest.mark.parametrize("url", ["/api/v1/orders/v2", "/api/v1/orders/v2/"])
def test_zero_depth_route_is_chosen_when_nothing_follows_the_version(
    matcher: GreedyRouteMatcher, url: str
) -> None:
    match = matcher.match_route(url)

    assert match.route == "/api/v1/{service}/{version}"
    assert match.captured == {"service": "orders", "version": "v2"}


def test_literal_route_is_not_shadowed_by_a_param_or_greedy_route(
    matcher: GreedyRouteMatcher,
) -> None:
    assert matcher.match_route("/registry/services").route == "/registry/services"
    assert matcher.match_route("/registry/services/orders").captured == {"service": "orders"}
    assert matcher.match_route("/registry/leases/x").route == "/registry/{proxy+}"


def test_exact_depth_param_route_wins_over_a_more_literal_greedy_route() -> None:
    matcher = GreedyRouteMatcher(["/api/{proxy+}", "/{a}/{b}"])

    assert matcher.match_route("/api/x").route == "/{a}/{b}"
    assert matcher.match_route("/api/x/y").route == "/api/{proxy+}"


def test_deeper_greedy_prefix_wins_over_a_shallower_one() -> None:
    matcher = GreedyRouteMatcher(["/{proxy+}", "/api/{proxy+}"])

    assert matcher.match_route("/api/x/y").captured == {"proxy": "x/y"}
    assert matcher.match_route("/other/x").captured == {"proxy": "other/x"}


def test_failed_route_attempts_do_not_leak_captured_params() -> None:
    matcher = GreedyRouteMatcher(["/a/{x}/c", "/{y}/b/d"])

    assert matcher.match_route("/a/b/d").captured == {"y": "a"}


def test_path_parameters_are_url_decoded(matcher: GreedyRouteMatcher) -> None:
    match = matcher.match_route("/api/v1/my%20svc/v1/a%2Fb/c%3Fd")

    assert match.captured == {"service": "my svc", "version": "v1", "proxy": "a/b/c?d"}


def test_query_is_parsed_like_chalice_with_blank_values_kept(matcher: GreedyRouteMatcher) -> None:
    match = matcher.match_route("/api/v1/s/v1/a?x=1&x=2&empty=")

    assert match.query_params == {"x": ["1", "2"], "empty": [""]}


@pytest.mark.parametrize("url", ["/nowhere", "/api/v1/s", "/registry", "/api/v1//v1/a"])
def test_no_matching_route_raises_value_error_like_chalice(
    matcher: GreedyRouteMatcher, url: str
) -> None:
    with pytest.raises(ValueError, match="No matching route found"):
        matcher.match_route(url)


def test_event_has_the_api_gateway_rest_proxy_shape() -> None:
    event = converter().create_lambda_event(
        "GET", "/api/v1/orders/v2/a/b?x=1&x=2&blank=", {"Accept": "application/json"}
    )

    assert event["resource"] == "/api/v1/{service}/{version}/{proxy+}"
    assert event["path"] == "/api/v1/orders/v2/a/b"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"service": "orders", "version": "v2", "proxy": "a/b"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "blank": [""]}
    assert event["queryStringParameters"] == {"x": "2", "blank": ""}
    assert event["headers"] == {"accept": "application/json"}
    assert event["multiValueHeaders"] == {"accept": ["application/json"]}
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["resourcePath"] == event["resource"]
    assert event["requestContext"]["stage"] == "api"
    assert len(event["requestContext"]["requestId"]) == 36


def test_event_without_query_or_params_maps_them_to_none() -> None:
    event = converter().create_lambda_event("GET", "/registry/services", {})

    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None


def test_each_event_gets_its_own_request_id() -> None:
    events = [converter().create_lambda_event("GET", "/", {}) for _ in range(2)]

    assert events[0]["requestContext"]["requestId"] != events[1]["requestContext"]["requestId"]


@pytest.mark.parametrize(
    ("header", "binary_types"),
    [
        ("Content-Type", ["application/octet-stream"]),
        ("content-type", ["application/octet-stream"]),
        ("Content-Type", ["*/*"]),
    ],
)
def test_binary_body_is_base64_encoded_whatever_the_header_spelling(
    header: str, binary_types: list[str]
) -> None:
    content_type = "application/octet-stream" if binary_types != ["*/*"] else "text/plain"
    event = converter(binary_types).create_lambda_event(
        "POST", "/api/v1/s/v1/blob", {header: content_type}, BINARY
    )

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == BINARY


def test_text_body_is_passed_as_a_string_as_api_gateway_does() -> None:
    event = converter(["application/octet-stream"]).create_lambda_event(
        "POST", "/api/v1/s/v1/x", {"Content-Type": "application/json"}, b'{"a": 1}'
    )

    assert event["isBase64Encoded"] is False
    assert event["body"] == '{"a": 1}'


def test_gateway_uses_the_greedy_matcher_and_proxy_converter() -> None:
    gateway = ProxyLocalGateway(make_app(), Config.create())

    assert isinstance(gateway.event_converter, ProxyEventConverter)


def test_test_client_routes_a_deep_path_to_the_greedy_view() -> None:
    with create_test_client(make_app()) as client:
        response = client.http.get("/api/v1/svc/v1/a/b/c?x=1&x=2")

    assert response.status_code == 200
    body = response.json_body
    assert body["uri_params"] == {"service": "svc", "version": "v1", "proxy": "a/b/c"}
    assert (body["service"], body["version"]) == ("svc", "v1")
    assert body["query"] == {"x": ["1", "2"]}
    assert body["resource"] == "/api/v1/{service}/{version}/{proxy+}"
    assert body["path"] == "/api/v1/svc/v1/a/b/c"


def test_test_client_routes_the_zero_depth_path() -> None:
    with create_test_client(make_app()) as client:
        response = client.http.get("/api/v1/svc/v1/")

    assert response.json_body == {"service": "svc", "version": "v1", "root": True}


def test_test_client_delivers_a_binary_body_byte_identical() -> None:
    with create_test_client(make_app()) as client:
        response = client.http.post(
            "/api/v1/svc/v1/upload",
            headers={"Content-Type": "application/octet-stream"},
            body=BINARY,
        )

    assert response.status_code == 200
    assert base64.b64decode(response.json_body["raw_body"]) == BINARY


def test_test_client_applies_environment_variables_during_the_request() -> None:
    with create_test_client(make_app(), environment_variables={"LAMBDAMESH_TABLE": "t"}) as c:
        response = c.http.get("/api/v1/svc/v1/a")

    assert json.loads(response.body)["env"] == "t"


def test_test_client_answers_403_for_an_unknown_path_like_api_gateway() -> None:
    with create_test_client(make_app()) as client:
        response = client.http.get("/nowhere/at/all")

    assert response.status_code == 403
