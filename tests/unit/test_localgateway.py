"""The local API Gateway without a socket: route precedence, the deployed event, framing."""

from __future__ import annotations

import ast
import base64
import io
import json
import os
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from chalice.app import Chalice, Response

from lambdamesh.events import (
    HttpRequest,
    RouteMatch,
    RouteTable,
    Stage,
    build_event,
    build_url_event,
    is_binary,
)
from lambdamesh.framing import RequestError, read_body, read_chunked
from lambdamesh.invokers import (
    Invoker,
    LambdaContext,
    UrlInvoker,
    read_proxy_response,
    read_url_response,
)
from lambdamesh.testclient import create_test_client

GATEWAY_ROUTES = [
    "/api/v1/{service}/{version}/{proxy+}",
    "/api/v1/{service}/{version}",
    "/registry/services",
    "/registry/services/{service}",
    "/registry/{proxy+}",
    "/",
]
BINARY = bytes(range(256))
GREEDY = RouteMatch("/api/v1/{service}/{version}/{proxy+}", {"service": "s", "version": "v1"})
LAMBDAMESH = Path(__file__).resolve().parents[2] / "lambdamesh"


@pytest.fixture
def table() -> RouteTable:
    return RouteTable(GATEWAY_ROUTES)


def event_for(request: HttpRequest, stage: Stage | None = None) -> dict[str, Any]:
    return build_event(
        request, GREEDY, stage or Stage(), request_id="r-1", epoch_ms=1_700_000_000_000
    )


def make_app() -> Chalice:
    app = Chalice(app_name="tiny")

    @app.route(
        "/api/v1/{service}/{version}/{proxy+}", methods=["GET", "POST"], content_types=["*/*"]
    )
    def forward(service: str, version: str) -> dict[str, Any]:
        request = app.current_request
        assert request is not None
        event = request.to_original_event()
        raw = request.raw_body
        assert isinstance(raw, bytes)
        return {
            "uri_params": request.uri_params,
            "query": event["multiValueQueryStringParameters"],
            "resource": event["resource"],
            "path": event["path"],
            "raw_body": base64.b64encode(raw).decode("ascii"),
            "env": os.environ.get("LAMBDAMESH_TABLE"),
            "remaining": app.lambda_context.get_remaining_time_in_millis(),
        }

    @app.route("/api/v1/{service}/{version}")
    def service_root(service: str, version: str) -> dict[str, Any]:
        return {"service": service, "version": version, "root": True}

    @app.route("/cookies")
    def cookies() -> Response:
        return Response(body="", headers={"Set-Cookie": ["a=1", "b=2"], "X-One": "1"})

    return app


# Route matching


@pytest.mark.parametrize(
    ("path", "proxy"),
    [
        ("/api/v1/orders/v2/a", "a"),
        ("/api/v1/orders/v2/a/b/c/d/e/f/g", "a/b/c/d/e/f/g"),
        ("/api/v1/orders/v2/a/b/", "a/b"),
    ],
)
def test_a_greedy_resource_captures_the_rest_of_the_path(
    table: RouteTable, path: str, proxy: str
) -> None:
    match = table.match(path)

    assert match == RouteMatch(
        "/api/v1/{service}/{version}/{proxy+}",
        {"service": "orders", "version": "v2", "proxy": proxy},
    )


@pytest.mark.parametrize("path", ["/api/v1/orders/v2", "/api/v1/orders/v2/"])
def test_nothing_after_the_version_matches_the_zero_depth_resource(
    table: RouteTable, path: str
) -> None:
    assert table.match(path) == RouteMatch(
        "/api/v1/{service}/{version}", {"service": "orders", "version": "v2"}
    )


def test_a_literal_segment_wins_over_a_parameter_and_a_parameter_over_a_greedy_one(
    table: RouteTable,
) -> None:
    assert table.match("/registry/services") == RouteMatch("/registry/services", {})
    assert table.match("/registry/services/orders") == RouteMatch(
        "/registry/services/{service}", {"service": "orders"}
    )
    assert table.match("/registry/leases/x") == RouteMatch(
        "/registry/{proxy+}", {"proxy": "leases/x"}
    )


def test_a_literal_first_segment_wins_over_parameters_matching_the_same_depth() -> None:
    table = RouteTable(["/{a}/{b}", "/api/{proxy+}"])

    assert table.match("/api/x") == RouteMatch("/api/{proxy+}", {"proxy": "x"})
    assert table.match("/other/x") == RouteMatch("/{a}/{b}", {"a": "other", "b": "x"})


def test_a_root_catch_all_takes_what_nothing_else_matches_but_not_the_root() -> None:
    table = RouteTable(["/{proxy+}", "/api/{proxy+}", "/health"])

    assert table.match("/api/x/y") == RouteMatch("/api/{proxy+}", {"proxy": "x/y"})
    assert table.match("/health") == RouteMatch("/health", {})
    assert table.match("/health/deep") == RouteMatch("/{proxy+}", {"proxy": "health/deep"})
    assert table.match("/") is None


def test_a_failed_candidate_leaks_no_parameters_into_the_next() -> None:
    table = RouteTable(["/a/{x}/c", "/{y}/b/d"])

    assert table.match("/a/b/d") == RouteMatch("/{y}/b/d", {"y": "a"})


def test_path_parameters_are_decoded(table: RouteTable) -> None:
    match = table.match("/api/v1/my%20svc/v1/a%2Fb/c%3Fd")

    assert match is not None
    assert match.path_parameters == {"service": "my svc", "version": "v1", "proxy": "a/b/c?d"}


@pytest.mark.parametrize("path", ["/nowhere", "/api/v1/s", "/registry", "/api/v1//v1/a"])
def test_a_path_no_resource_matches_has_no_match(table: RouteTable, path: str) -> None:
    assert table.match(path) is None


# The event


def test_the_event_has_api_gateways_rest_proxy_shape() -> None:
    request = HttpRequest(
        "GET",
        "/api/v1/s/v1/a%2Fb?x=1&x=2&blank=&sp=a%20b",
        (("Host", "localhost:8000"), ("Accept", "text/html"), ("Accept", "application/json")),
        source_ip="10.1.2.3",
    )

    event = event_for(request)

    assert event["resource"] == "/api/v1/{service}/{version}/{proxy+}"
    assert event["path"] == "/api/v1/s/v1/a%2Fb"
    assert event["httpMethod"] == "GET"
    forwarding = {
        "X-Forwarded-For": "10.1.2.3",
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Port": "80",
    }
    assert event["headers"] == {
        "Host": "localhost:8000",
        "Accept": "application/json",
        **forwarding,
    }
    assert event["multiValueHeaders"] == {
        "Host": ["localhost:8000"],
        "Accept": ["text/html", "application/json"],
        **{name: [value] for name, value in forwarding.items()},
    }
    assert event["queryStringParameters"] == {"x": "2", "blank": "", "sp": "a b"}
    assert event["multiValueQueryStringParameters"] == {
        "x": ["1", "2"],
        "blank": [""],
        "sp": ["a b"],
    }
    assert event["pathParameters"] == {"service": "s", "version": "v1"}
    assert event["stageVariables"] is None
    assert (event["body"], event["isBase64Encoded"]) == (None, False)
    context = event["requestContext"]
    assert context["resourcePath"] == event["resource"]
    assert context["httpMethod"] == "GET"
    assert context["path"] == "/api/api/v1/s/v1/a%2Fb"
    assert context["stage"] == "api"
    assert context["requestId"] == "r-1"
    assert context["requestTimeEpoch"] == 1_700_000_000_000
    assert context["requestTime"] == "14/Nov/2023:22:13:20 +0000"
    assert context["identity"]["sourceIp"] == "10.1.2.3"
    assert context["domainName"] == "localhost:8000"
    assert context["protocol"] == "HTTP/1.1"
    assert context["apiId"] == "local"


def test_an_event_without_query_or_params_says_none_and_has_only_api_gateways_headers() -> None:
    event = build_event(
        HttpRequest("GET", "/"), RouteMatch("/", {}), Stage(), request_id="r", epoch_ms=0
    )

    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert set(event["headers"]) == {"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Port"}
    assert event["pathParameters"] is None


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json; charset=utf-8"])
def test_every_body_is_base64_when_the_binary_media_type_is_any(content_type: str | None) -> None:
    headers = () if content_type is None else (("content-type", content_type),)

    event = event_for(HttpRequest("POST", "/api/v1/s/v1/x", headers, BINARY))

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == BINARY


def test_a_text_body_stays_text_when_its_type_is_not_binary() -> None:
    request = HttpRequest("POST", "/x", (("Content-Type", "application/json"),), b'{"a": 1}')

    event = event_for(request, Stage(binary_types=("application/octet-stream",)))

    assert (event["body"], event["isBase64Encoded"]) == ('{"a": 1}', False)


@pytest.mark.parametrize(
    ("content_type", "binary_types", "expected"),
    [
        ("image/png", ("image/*",), True),
        ("IMAGE/PNG; q=1", ("image/png",), True),
        ("text/plain", ("image/*",), False),
        (None, ("*/*",), True),
    ],
)
def test_binary_media_types_match_as_api_gateway_matches_them(
    content_type: str | None, binary_types: tuple[str, ...], expected: bool
) -> None:
    assert is_binary(content_type, binary_types) is expected


# Framing


def headers_of(*pairs: tuple[str, str]) -> Message:
    message = Message()
    for name, value in pairs:
        message[name] = value
    return message


def test_a_chunked_body_arrives_whole_with_extensions_and_trailers_dropped() -> None:
    wire = io.BytesIO(b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\nNEXT")

    assert read_chunked(wire) == b"hello world"
    assert wire.read() == b"NEXT"


@pytest.mark.parametrize(
    "wire",
    [
        b"zz\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhel",
        b"5\r\nhelloXX0\r\n\r\n",
        b"0\r\n",
        # A chunk-size line is hex digits, spaces or tabs, extensions and CRLF, nothing else.
        b"5\x0b\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"5\r\r\nhello\r\n0\r\n\r\n",
        b"5;a\rb\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\n\r\n",
        # and every line of the body ends with CRLF, without a bare CR.
        b"5\r\nhello\r\n0\r\n\n",
        b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n",
        b"5\r\nhello\r\n0\r\nX-T: 1\rX-U: 2\r\n\r\n",
    ],
)
def test_a_malformed_chunked_body_is_refused(wire: bytes) -> None:
    with pytest.raises(RequestError) as refused:
        read_chunked(io.BytesIO(wire))

    assert refused.value.status == 400


def test_a_chunk_size_may_be_followed_by_spaces_tabs_and_extensions() -> None:
    wire = io.BytesIO(b'5 \t\r\nhello\r\n1 ; a="b c"\r\n \r\n0\r\n\r\n')

    assert read_chunked(wire) == b"hello "


def test_a_chunked_body_over_the_limit_is_refused_with_413() -> None:
    with pytest.raises(RequestError) as refused:
        read_chunked(io.BytesIO(b"a\r\n0123456789\r\n0\r\n\r\n"), limit=5)

    assert refused.value.status == 413


@pytest.mark.parametrize(
    ("pairs", "status"),
    [
        ((("Content-Length", "5"), ("Transfer-Encoding", "chunked")), 400),
        ((("Transfer-Encoding", "gzip, chunked"),), 501),
        ((("Content-Length", "5"), ("Content-Length", "6")), 400),
        ((("Content-Length", "-1"),), 400),
        ((("Content-Length", "50"),), 400),
        # str.strip() would take these off and read 5: only spaces and tabs surround a value.
        ((("Content-Length", "5\x0b"),), 400),
        ((("Content-Length", "5\xa0"),), 400),
        ((("Transfer-Encoding", "chunked\x0c"),), 501),
    ],
)
def test_ambiguous_or_unsupported_framing_is_refused(
    pairs: tuple[tuple[str, str], ...], status: int
) -> None:
    with pytest.raises(RequestError) as refused:
        read_body(headers_of(*pairs), io.BytesIO(b"hello"))

    assert refused.value.status == status


def test_a_body_is_read_to_its_content_length() -> None:
    assert read_body(headers_of(("Content-Length", "3")), io.BytesIO(b"abcdef")) == b"abc"
    assert read_body(headers_of(("Content-Length", " 3\t")), io.BytesIO(b"abcdef")) == b"abc"
    assert read_body(headers_of(), io.BytesIO(b"abcdef")) == b""


# The proxy response


def test_a_proxy_response_merges_headers_with_multi_values_winning() -> None:
    answer = read_proxy_response(
        {
            "statusCode": 201,
            "headers": {"X-One": "1", "Set-Cookie": "ignored"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": base64.b64encode(BINARY).decode(),
            "isBase64Encoded": True,
        }
    )

    assert answer.status == 201
    assert answer.headers == [("X-One", "1"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    assert answer.body == BINARY


def test_the_context_counts_down_from_the_timeout() -> None:
    now = [100.0]
    context = LambdaContext(timeout_seconds=29, clock=lambda: now[0])
    now[0] += 4.5

    assert context.get_remaining_time_in_millis() == 24_500
    assert len(context.aws_request_id) == 36


# The invoker and the test client


def test_a_path_no_resource_matches_answers_what_api_gateway_answers() -> None:
    answer = Invoker(make_app())(HttpRequest("GET", "/nowhere/at/all"))

    assert answer.status == 403
    assert json.loads(answer.body) == {"message": "Missing Authentication Token"}
    assert answer.header("x-amzn-ErrorType") == "MissingAuthenticationTokenException"


def test_a_method_the_resource_lacks_answers_what_api_gateway_answers() -> None:
    answer = Invoker(make_app())(HttpRequest("DELETE", "/api/v1/s/v1/a"))

    assert answer.status == 403
    assert json.loads(answer.body) == {"message": "Missing Authentication Token"}


def test_the_test_client_routes_a_deep_path_to_the_greedy_view() -> None:
    with create_test_client(make_app()) as client:
        response = client.http.get("/api/v1/svc/v1/a/b/c?x=1&x=2")

    assert response.status_code == 200
    body = response.json_body
    assert body["uri_params"] == {"service": "svc", "version": "v1", "proxy": "a/b/c"}
    assert body["query"] == {"x": ["1", "2"]}
    assert body["resource"] == "/api/v1/{service}/{version}/{proxy+}"
    assert body["path"] == "/api/v1/svc/v1/a/b/c"
    assert 0 < body["remaining"] <= 29_000


def test_the_test_client_routes_the_zero_depth_path() -> None:
    with create_test_client(make_app()) as client:
        response = client.http.get("/api/v1/svc/v1/")

    assert response.json_body == {"service": "svc", "version": "v1", "root": True}


def test_the_test_client_delivers_a_binary_body_byte_identical() -> None:
    with create_test_client(make_app()) as client:
        response = client.http.post(
            "/api/v1/svc/v1/upload",
            headers={"Content-Type": "application/octet-stream"},
            body=BINARY,
        )

    assert base64.b64decode(response.json_body["raw_body"]) == BINARY


def test_the_test_client_sets_the_environment_only_while_the_app_runs() -> None:
    assert "LAMBDAMESH_TABLE_PROBE" not in os.environ
    app = make_app()
    with create_test_client(app, environment_variables={"LAMBDAMESH_TABLE": "t"}) as client:
        response = client.http.get("/api/v1/svc/v1/a")
        outside = os.environ.get("LAMBDAMESH_TABLE")

    assert response.json_body["env"] == "t"
    assert outside != "t"


def test_the_test_client_keeps_repeated_response_headers_under_any_case() -> None:
    with create_test_client(make_app()) as client:
        response = client.http.get("/cookies")

    assert response.headers["set-cookie"] == ["a=1", "b=2"]
    assert response.headers.get_all("SET-COOKIE") == ["a=1", "b=2"]
    assert response.headers["x-one"] == "1"


# No private names of Chalice's local server or test client


def imported_modules(source: str) -> set[str]:
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_lambdamesh_module_imports_chalices_local_server_or_test_client() -> None:
    offenders = {
        f"{path.name}: {name}"
        for path in sorted(LAMBDAMESH.glob("*.py"))
        for name in imported_modules(path.read_text(encoding="utf-8"))
        if name.split(".")[:2] in (["chalice", "local"], ["chalice", "test"])
    }

    assert offenders == set()


def test_the_import_scan_sees_every_spelling_of_a_chalice_local_import() -> None:
    source = "from chalice import local\nimport chalice.test as t\nfrom chalice.local import X\n"

    assert {"chalice.local", "chalice.test", "chalice.local.X"} <= imported_modules(source)


def test_the_event_carries_the_forwarding_headers_api_gateway_writes_not_the_clients() -> None:
    request = HttpRequest(
        "GET",
        "/api/v1/s/v1/x",
        (
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Port", "443"),
            ("X-Forwarded-For", "203.0.113.9"),
        ),
        source_ip="127.0.0.1",
        port=8000,
    )

    headers = event_for(request)["multiValueHeaders"]

    assert headers["X-Forwarded-Proto"] == ["http"]
    assert headers["X-Forwarded-Port"] == ["8000"]
    assert headers["X-Forwarded-For"] == ["203.0.113.9, 127.0.0.1"]


def url_event_for(request: HttpRequest) -> dict[str, Any]:
    return build_url_event(request, Stage(), request_id="r-1", epoch_ms=1_700_000_000_000)


def test_the_url_event_has_the_function_url_payload_2_shape() -> None:
    request = HttpRequest(
        "POST",
        "/registry/services/a%20b?x=1&x=2&y=",
        headers=(("Host", "abc.lambda-url.localhost"), ("User-Agent", "ua/1")),
        body=b"{}",
        protocol="HTTP/1.1",
    )

    event = url_event_for(request)

    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/registry/services/a%20b"
    assert event["rawQueryString"] == "x=1&x=2&y="
    assert event["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert event["body"] == base64.b64encode(b"{}").decode()
    assert event["isBase64Encoded"] is True
    assert event["requestContext"] == {
        "accountId": "anonymous",
        "apiId": "local",
        "domainName": "abc.lambda-url.localhost",
        "domainPrefix": "abc",
        "http": {
            "method": "POST",
            "path": "/registry/services/a%20b",
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": "ua/1",
        },
        "requestId": "r-1",
        "routeKey": "$default",
        "stage": "$default",
        "time": "14/Nov/2023:22:13:20 +0000",
        "timeEpoch": 1_700_000_000_000,
    }


def test_the_url_event_lowers_header_names_and_comma_joins_repeats() -> None:
    request = HttpRequest("GET", "/", headers=(("X-Tag", "a"), ("x-tag", "b"), ("Accept", "*/*")))

    headers = url_event_for(request)["headers"]

    assert headers["x-tag"] == "a,b"
    assert headers["accept"] == "*/*"
    assert all(name == name.lower() for name in headers)
    assert headers["x-forwarded-for"] == "127.0.0.1"


def test_the_url_event_carries_cookies_apart_from_the_headers() -> None:
    request = HttpRequest("GET", "/", headers=(("Cookie", "a=1; b=2"), ("Cookie", "c=3")))

    event = url_event_for(request)

    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    assert "cookie" not in event["headers"]


def test_a_url_event_without_a_body_or_query_has_neither() -> None:
    event = url_event_for(HttpRequest("GET", "/registry/services"))

    assert event["isBase64Encoded"] is False
    assert "body" not in event
    assert "cookies" not in event
    assert "queryStringParameters" not in event
    assert event["rawQueryString"] == ""


def test_a_url_response_sends_each_cookie_as_its_own_set_cookie() -> None:
    answer = read_url_response(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain", "X-Many": "a, b"},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": "made",
            "isBase64Encoded": False,
        }
    )

    assert answer.status == 201
    assert answer.headers == [
        ("Content-Type", "text/plain"),
        ("X-Many", "a, b"),
        ("Set-Cookie", "a=1; Path=/"),
        ("Set-Cookie", "b=2"),
    ]
    assert answer.body == b"made"


def test_a_base64_url_response_body_is_decoded_byte_identical() -> None:
    encoded = base64.b64encode(BINARY).decode()

    answer = read_url_response({"statusCode": 200, "body": encoded, "isBase64Encoded": True})

    assert answer.body == BINARY


def test_the_url_invoker_hands_the_app_the_url_event_and_reads_its_answer() -> None:
    seen: list[dict[str, Any]] = []

    def app(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(event)
        return {"statusCode": 200, "cookies": ["s=1"], "body": "ok"}

    answer = UrlInvoker(app, clock=lambda: 1_700_000_000.0)(HttpRequest("PUT", "/anything/at/all"))

    assert seen[0]["rawPath"] == "/anything/at/all"
    assert seen[0]["requestContext"]["http"]["method"] == "PUT"
    assert seen[0]["requestContext"]["timeEpoch"] == 1_700_000_000_000
    assert answer.header("Set-Cookie") == "s=1"
    assert answer.body == b"ok"
