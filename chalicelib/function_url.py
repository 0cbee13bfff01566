"""A Lambda function URL event (payload format 2.0) in the REST proxy shape, and back.

The app is written against API Gateway's REST proxy event (payload 1.0). A function URL
sends another shape: no matched resource, lower-case headers with repeats comma-joined,
cookies apart, a raw query string. These two pure functions translate at the edge so every
route, check and answer is the one API Gateway reaches. Standard library only: this runs in
the Lambda.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import parse_qsl

from chalicelib.errors import MethodNotAllowed, RouteNotFound
from chalicelib.route_matching import RouteMatch, RouteTable
from lambdamesh_routing.forwarding import METHODS, joined_field

__all__ = [
    "URL_LANE",
    "URL_LANE_KEY",
    "URL_PAYLOAD_VERSION",
    "is_url_event",
    "to_rest_event",
    "to_url_response",
]

URL_PAYLOAD_VERSION = "2.0"
# Marks a converted event's requestContext as the function URL's: only the Lambda writes it
# (API Gateway builds its own requestContext, and a client cannot add to either).
URL_LANE_KEY = "lambdamesh_lane"
URL_LANE = "function-url"


def is_url_event(event: object) -> bool:
    return isinstance(event, dict) and event.get("version") == URL_PAYLOAD_VERSION


def to_rest_event(
    event: Mapping[str, Any], routes: Mapping[str, Collection[str]]
) -> dict[str, Any]:
    """The REST proxy event API Gateway would send for this function URL request.

    ``routes`` is ``app.routes`` (resource path to its methods). Raises ``RouteNotFound``
    when no resource matches the path and ``MethodNotAllowed`` when the matched one lacks
    the method: API Gateway answers those itself, the app must here.
    """
    context = event.get("requestContext") or {}
    http = context.get("http") or {}
    method = str(http.get("method") or "GET").upper()
    path = str(event.get("rawPath") or "/")
    match = _table(tuple(routes)).match(path)
    if match is None:
        raise RouteNotFound("no route matches")
    _check_method(routes[match.resource], method)
    headers = _multi_headers(event)
    query = _multi_query(str(event.get("rawQueryString") or ""))
    body, encoded = _body(event)
    return {
        "resource": match.resource,
        "path": path,
        "httpMethod": method,
        "headers": _last(headers),
        "multiValueHeaders": headers,
        "queryStringParameters": _last(query),
        "multiValueQueryStringParameters": query,
        "pathParameters": match.path_parameters or None,
        "stageVariables": None,
        "requestContext": _request_context(context, http, match, path),
        "body": body,
        "isBase64Encoded": encoded,
    }


def to_url_response(response: Mapping[str, Any]) -> dict[str, Any]:
    """The function URL answer for a REST proxy response.

    Headers and ``multiValueHeaders`` merge as API Gateway merges them (a name in both keeps
    the multi values); a function URL answer has one value per header, so repeats are
    comma-joined, except ``Set-Cookie``, which it carries as the ``cookies`` list.
    """
    multi = {k: [str(v) for v in vs] for k, vs in (response.get("multiValueHeaders") or {}).items()}
    in_multi = {name.lower() for name in multi}
    for name, value in (response.get("headers") or {}).items():
        if name.lower() not in in_multi:
            multi[name] = [str(value)]
    cookies = [v for name, vs in multi.items() if name.lower() == "set-cookie" for v in vs]
    answer: dict[str, Any] = {
        "statusCode": int(response["statusCode"]),
        "headers": {k: ", ".join(vs) for k, vs in multi.items() if k.lower() != "set-cookie"},
        "body": response.get("body") or "",
        "isBase64Encoded": bool(response.get("isBase64Encoded")),
    }
    if cookies:
        answer["cookies"] = cookies
    return answer


@functools.lru_cache(maxsize=4)
def _table(resources: tuple[str, ...]) -> RouteTable:
    """Built once per route set: a warm Lambda routes every request with the same table."""
    return RouteTable(resources)


def _check_method(methods: Collection[str], method: str) -> None:
    if method not in methods and "ANY" not in methods:
        raise MethodNotAllowed(tuple(m for m in METHODS if m in methods))


def _multi_headers(event: Mapping[str, Any]) -> dict[str, list[str]] | None:
    """One value per header (the function URL already joined repeats), and the ``cookies``
    list back as ``cookie`` values, which the app joins with ``; ``."""
    multi = {str(k).lower(): [str(v)] for k, v in (event.get("headers") or {}).items()}
    cookies = [str(c) for c in event.get("cookies") or ()]
    if cookies:
        multi["cookie"] = cookies
    return multi or None


def _multi_query(raw: str) -> dict[str, list[str]] | None:
    """Decoded as API Gateway decodes the query string, repeats kept in order."""
    grouped: dict[str, list[str]] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True):
        grouped.setdefault(name, []).append(value)
    return grouped or None


def _last(multi: dict[str, list[str]] | None) -> dict[str, str] | None:
    if multi is None:
        return None
    return {k: joined_field(k, v) if k == "cookie" else v[-1] for k, v in multi.items()}


def _body(event: Mapping[str, Any]) -> tuple[str | None, bool]:
    """Base64, as API Gateway sends every body with ``*/*`` among the binary media types."""
    body = event.get("body")
    if not body:
        return None, False
    if event.get("isBase64Encoded"):
        return str(body), True
    return base64.b64encode(str(body).encode("utf-8")).decode("ascii"), True


def _request_context(
    context: Mapping[str, Any], http: Mapping[str, Any], match: RouteMatch, path: str
) -> dict[str, Any]:
    stage = str(context.get("stage") or "$default")
    return {
        "accountId": context.get("accountId"),
        "apiId": context.get("apiId"),
        "domainName": context.get("domainName"),
        "domainPrefix": context.get("domainPrefix"),
        "extendedRequestId": context.get("requestId"),
        "httpMethod": str(http.get("method") or "GET").upper(),
        "identity": {"sourceIp": http.get("sourceIp"), "userAgent": http.get("userAgent")},
        "path": path,
        "protocol": http.get("protocol"),
        "requestId": context.get("requestId"),
        "requestTime": context.get("time"),
        "requestTimeEpoch": context.get("timeEpoch"),
        "resourcePath": match.resource,
        "stage": stage,
        URL_LANE_KEY: URL_LANE,
    }
