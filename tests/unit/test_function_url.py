"""Function URL events (payload 2.0) in the REST proxy shape the app handles, and back."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from chalicelib.errors import MethodNotAllowed, RouteNotFound
from chalicelib.function_url import is_url_event, to_rest_event, to_url_response

ROUTES: dict[str, tuple[str, ...]] = {
    "/registry/services": ("GET",),
    "/registry/services/{service}/instances/{instance_id}": ("PUT", "DELETE"),
    "/registry/services/{service}/instances/{instance_id}/heartbeat": ("PUT",),
    "/api/v1/{service}/{version}": ("ANY",),
    "/api/v1/{service}/{version}/{proxy+}": ("GET", "POST"),
    "/{proxy+}": ("GET",),
}

# As a function URL sends it: lower-case header names, repeats comma-joined, cookies apart.
URL_EVENT: dict[str, Any] = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/api/v1/orders/v1/items/a%2Fb",
    "rawQueryString": "tag=red&tag=blue&q=a%20b+c&empty=",
    "cookies": ["session=abc", "theme=dark"],
    "headers": {
        "accept": "application/json, text/plain",
        "content-type": "application/json",
        "host": "abcdefg.lambda-url.eu-west-1.on.aws",
        "x-forwarded-for": "203.0.113.9",
        "x-forwarded-proto": "https",
        "x-forwarded-port": "443",
        "user-agent": "curl/8.5.0",
    },
    "queryStringParameters": {"tag": "red,blue", "q": "a b c", "empty": ""},
    "requestContext": {
        "accountId": "anonymous",
        "apiId": "abcdefg",
        "domainName": "abcdefg.lambda-url.eu-west-1.on.aws",
        "domainPrefix": "abcdefg",
        "http": {
            "method": "POST",
            "path": "/api/v1/orders/v1/items/a%2Fb",
            "protocol": "HTTP/1.1",
            "sourceIp": "203.0.113.9",
            "userAgent": "curl/8.5.0",
        },
        "requestId": "5f0d6c1e-8c1a-4b6e-9d0e-2f1c3b4a5d6e",
        "routeKey": "$default",
        "stage": "$default",
        "time": "28/Nov/2026:17:00:00 +0000",
        "timeEpoch": 1_795_885_200_000,
    },
    "body": '{"n": 1}',
    "isBase64Encoded": False,
}


def url_event(**changes: Any) -> dict[str, Any]:
    event = copy.deepcopy(URL_EVENT)
    method = changes.pop("method", None)
    if method is not None:
        event["requestContext"]["http"]["method"] = method
    event.update(changes)
    return event


def test_only_payload_2_0_events_are_function_url_events() -> None:
    assert is_url_event(URL_EVENT)
    assert not is_url_event({"httpMethod": "GET", "path": "/"})
    assert not is_url_event({"version": "1.0"})
    assert not is_url_event(None)


def test_the_route_template_and_its_decoded_parameters_are_found() -> None:
    rest = to_rest_event(URL_EVENT, ROUTES)

    assert rest["resource"] == "/api/v1/{service}/{version}/{proxy+}"
    assert rest["requestContext"]["resourcePath"] == rest["resource"]
    assert rest["path"] == "/api/v1/orders/v1/items/a%2Fb"
    assert rest["httpMethod"] == "POST"
    assert rest["pathParameters"] == {"service": "orders", "version": "v1", "proxy": "items/a/b"}


@pytest.mark.parametrize(
    ("method", "path", "resource"),
    [
        ("GET", "/registry/services", "/registry/services"),
        (
            "PUT",
            "/registry/services/orders/instances/a/heartbeat",
            "/registry/services/{service}/instances/{instance_id}/heartbeat",
        ),
        ("GET", "/api/v1/orders/v1", "/api/v1/{service}/{version}"),
        ("GET", "/registry/other", "/{proxy+}"),
    ],
)
def test_static_routes_win_over_parameters_and_parameters_over_greedy(
    method: str, path: str, resource: str
) -> None:
    rest = to_rest_event(url_event(rawPath=path, method=method), ROUTES)

    assert rest["resource"] == resource


def test_repeated_query_keys_are_kept_and_decoded_as_api_gateway_does() -> None:
    rest = to_rest_event(URL_EVENT, ROUTES)

    assert rest["multiValueQueryStringParameters"] == {
        "tag": ["red", "blue"],
        "q": ["a b c"],
        "empty": [""],
    }
    assert rest["queryStringParameters"] == {"tag": "blue", "q": "a b c", "empty": ""}


def test_no_query_string_gives_no_query_parameters() -> None:
    rest = to_rest_event(url_event(rawQueryString=""), ROUTES)

    assert rest["queryStringParameters"] is None
    assert rest["multiValueQueryStringParameters"] is None


def test_cookies_come_back_as_the_cookie_header() -> None:
    rest = to_rest_event(URL_EVENT, ROUTES)

    assert rest["multiValueHeaders"]["cookie"] == ["session=abc", "theme=dark"]
    assert rest["headers"]["cookie"] == "session=abc; theme=dark"
    assert rest["headers"]["accept"] == "application/json, text/plain"
    assert rest["multiValueHeaders"]["x-forwarded-for"] == ["203.0.113.9"]


def test_the_caller_and_the_request_id_reach_the_request_context() -> None:
    context = to_rest_event(URL_EVENT, ROUTES)["requestContext"]

    assert context["identity"]["sourceIp"] == "203.0.113.9"
    assert context["requestId"] == "5f0d6c1e-8c1a-4b6e-9d0e-2f1c3b4a5d6e"
    assert context["httpMethod"] == "POST"
    assert context["stage"] == "$default"


def test_a_text_body_is_passed_base64_as_api_gateway_passes_every_body() -> None:
    rest = to_rest_event(URL_EVENT, ROUTES)

    assert rest["isBase64Encoded"] is True
    assert base64.b64decode(rest["body"]) == b'{"n": 1}'


def test_a_base64_body_is_passed_as_sent() -> None:
    raw = base64.b64encode(bytes(range(256))).decode("ascii")

    rest = to_rest_event(url_event(body=raw, isBase64Encoded=True), ROUTES)

    assert rest["isBase64Encoded"] is True
    assert base64.b64decode(rest["body"]) == bytes(range(256))


def test_no_body_gives_none() -> None:
    rest = to_rest_event(url_event(body=None), ROUTES)

    assert rest["body"] is None
    assert rest["isBase64Encoded"] is False


def test_a_path_no_route_matches_raises_route_not_found() -> None:
    with pytest.raises(RouteNotFound):
        to_rest_event(url_event(rawPath="/elsewhere"), {"/health": ("GET",)})


def test_a_method_the_route_lacks_raises_method_not_allowed_naming_the_others() -> None:
    with pytest.raises(MethodNotAllowed) as raised:
        to_rest_event(url_event(rawPath="/registry/services", method="POST"), ROUTES)

    assert raised.value.headers()["Allow"] == "GET"


def test_a_response_becomes_a_function_url_answer_with_cookies_apart() -> None:
    answer = to_url_response(
        {
            "statusCode": 200,
            "headers": {"Content-Type": "application/json", "X-Request-Id": "r-1"},
            "multiValueHeaders": {
                "Set-Cookie": ["a=1; Path=/", "b=2; HttpOnly"],
                "Vary": ["Accept", "Origin"],
            },
            "body": "eyJvayI6IHRydWV9",
            "isBase64Encoded": True,
        }
    )

    assert answer == {
        "statusCode": 200,
        "headers": {
            "Content-Type": "application/json",
            "X-Request-Id": "r-1",
            "Vary": "Accept, Origin",
        },
        "cookies": ["a=1; Path=/", "b=2; HttpOnly"],
        "body": "eyJvayI6IHRydWV9",
        "isBase64Encoded": True,
    }


def test_a_name_in_both_header_maps_keeps_the_multi_values_as_api_gateway_does() -> None:
    answer = to_url_response(
        {
            "statusCode": 204,
            "headers": {"X-Thing": "single", "set-cookie": "lost=1"},
            "multiValueHeaders": {"x-thing": ["one", "two"], "Set-Cookie": ["kept=1"]},
            "body": "",
        }
    )

    assert answer["headers"] == {"x-thing": "one, two"}
    assert answer["cookies"] == ["kept=1"]
    assert answer["isBase64Encoded"] is False


def test_a_single_set_cookie_header_is_also_a_cookie() -> None:
    answer = to_url_response({"statusCode": 200, "headers": {"Set-Cookie": "a=1"}, "body": "x"})

    assert answer["cookies"] == ["a=1"]
    assert "Set-Cookie" not in answer["headers"]
