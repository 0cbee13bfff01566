"""API Gateway's REST proxy event (payload format 1.0), built from one HTTP request, and a
Lambda function URL's (payload format 2.0) for the dev server's second lane.

Behind API Gateway the app sees ``app(event, context)`` with this event; the dev server and
the functional tests build it here, with API Gateway's route precedence
(``chalicelib.route_matching``, which the Lambda shares to route function-URL events), so local
runs see the shape production sees. Pure functions over plain data: the caller supplies the
clock and the request id.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from chalicelib.route_matching import RouteMatch, RoutePattern, RouteTable

__all__ = [
    "MISSING_ROUTE_BODY",
    "MISSING_ROUTE_HEADERS",
    "MISSING_ROUTE_STATUS",
    "URL_PAYLOAD_VERSION",
    "HttpRequest",
    "RouteMatch",
    "RoutePattern",
    "RouteTable",
    "Stage",
    "build_event",
    "build_url_event",
    "is_binary",
]

# What API Gateway answers, before any Lambda runs, for a path no resource matches or a
# method the matched resource does not define.
MISSING_ROUTE_STATUS = 403
MISSING_ROUTE_BODY = b'{"message":"Missing Authentication Token"}'
MISSING_ROUTE_HEADERS = {
    "Content-Type": "application/json",
    "x-amzn-ErrorType": "MissingAuthenticationTokenException",
}


@dataclass(frozen=True)
class HttpRequest:
    """One request as it arrived: ``target`` is the request line's path and query, raw."""

    method: str
    target: str
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"
    scheme: str = "http"
    port: int = 80

    @property
    def path(self) -> str:
        return urlsplit(self.target).path or "/"

    @property
    def query(self) -> str:
        return urlsplit(self.target).query

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[-1] if values else None


@dataclass(frozen=True)
class Stage:
    """Where the API is deployed: what the event's ``requestContext`` says about it."""

    name: str = "api"
    api_id: str = "local"
    account_id: str = "123456789012"
    binary_types: tuple[str, ...] = ("*/*",)
    # What the client's URL holds before the resource path: "/{name}" on the execute-api
    # URL (the default), "" on a custom domain mapped without a base path, or on a local
    # server that serves at its root.
    url_prefix: str | None = None
    # The domain API Gateway reports in requestContext.domainName: a custom domain's name,
    # whatever Host the client sent; None takes the Host header, as on the execute-api URL.
    domain_name: str | None = None

    @property
    def path_prefix(self) -> str:
        return f"/{self.name}" if self.url_prefix is None else self.url_prefix


def is_binary(content_type: str | None, binary_types: Sequence[str]) -> bool:
    """API Gateway's binary media type test: ``type/subtype``, ``type/*`` or ``*/*``."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    kind = media.split("/", 1)[0]
    for binary in (b.lower() for b in binary_types):
        if binary in {"*/*", media} or (binary.endswith("/*") and binary[:-2] == kind):
            return True
    return False


def _multi(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]] | None:
    """Values grouped by name (the first spelling seen), in arrival order; None when empty."""
    grouped: dict[str, list[str]] = {}
    spelling: dict[str, str] = {}
    for name, value in pairs:
        key = spelling.setdefault(name.lower(), name)
        grouped.setdefault(key, []).append(value)
    return grouped or None


# API Gateway writes these itself on every request, whatever the client sent.
_GATEWAY_WRITES = frozenset({"x-forwarded-proto", "x-forwarded-port", "x-forwarded-for"})


def _as_api_gateway_passes(request: HttpRequest) -> list[tuple[str, str]]:
    """The client's headers as API Gateway hands them on: its own ``X-Forwarded-Proto`` and
    ``-Port`` in place of the client's, and the caller appended to ``X-Forwarded-For``."""
    kept = [(k, v) for k, v in request.headers if k.lower() not in _GATEWAY_WRITES]
    chain = [v for k, v in request.headers if k.lower() == "x-forwarded-for"]
    return [
        *kept,
        ("X-Forwarded-For", ", ".join([*chain, request.source_ip])),
        ("X-Forwarded-Proto", request.scheme),
        ("X-Forwarded-Port", str(request.port)),
    ]


def _last(multi: dict[str, list[str]] | None) -> dict[str, str] | None:
    return None if multi is None else {k: v[-1] for k, v in multi.items()}


def _body(request: HttpRequest, binary_types: Sequence[str]) -> tuple[str | None, bool]:
    if not request.body:
        return None, False
    if is_binary(request.header("Content-Type"), binary_types):
        return base64.b64encode(request.body).decode("ascii"), True
    return request.body.decode("utf-8", errors="replace"), False


def _request_context(
    request: HttpRequest, resource: str, stage: Stage, request_id: str, epoch_ms: int
) -> dict[str, Any]:
    domain = stage.domain_name or request.header("Host") or f"{stage.api_id}.execute-api.localhost"
    return {
        "accountId": stage.account_id,
        "apiId": stage.api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "extendedRequestId": request_id,
        "httpMethod": request.method,
        "identity": {
            "accessKey": None,
            "accountId": None,
            "caller": None,
            "cognitoAuthenticationProvider": None,
            "cognitoAuthenticationType": None,
            "cognitoIdentityId": None,
            "cognitoIdentityPoolId": None,
            "principalOrgId": None,
            "sourceIp": request.source_ip,
            "user": None,
            "userAgent": request.header("User-Agent"),
            "userArn": None,
        },
        "path": f"{stage.path_prefix}{request.path}",
        "protocol": request.protocol,
        "requestId": request_id,
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_ms / 1000)),
        "requestTimeEpoch": epoch_ms,
        "resourceId": "local",
        "resourcePath": resource,
        "stage": stage.name,
    }


def build_event(
    request: HttpRequest, match: RouteMatch, stage: Stage, *, request_id: str, epoch_ms: int
) -> dict[str, Any]:
    """The event API Gateway's Lambda proxy integration sends for ``request``.

    ``path`` keeps the client's escapes; path and query parameters are decoded; a body is
    base64 when its content type is one of the API's binary media types, as deployed.
    """
    headers = _multi(_as_api_gateway_passes(request))
    query = _multi(parse_qsl(request.query, keep_blank_values=True))
    body, encoded = _body(request, stage.binary_types)
    return {
        "resource": match.resource,
        "path": request.path,
        "httpMethod": request.method,
        "headers": _last(headers),
        "multiValueHeaders": headers,
        "queryStringParameters": _last(query),
        "multiValueQueryStringParameters": query,
        "pathParameters": match.path_parameters or None,
        "stageVariables": None,
        "requestContext": _request_context(request, match.resource, stage, request_id, epoch_ms),
        "body": body,
        "isBase64Encoded": encoded,
    }


URL_PAYLOAD_VERSION = "2.0"


def _joined(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names, repeated values comma-joined in arrival order."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name.lower(), []).append(value)
    return {name: ",".join(values) for name, values in grouped.items()}


def _cookies(request: HttpRequest) -> list[str]:
    values = [v for k, v in request.headers if k.lower() == "cookie"]
    return [c.strip() for value in values for c in value.split(";") if c.strip()]


def _url_request_context(
    request: HttpRequest, stage: Stage, request_id: str, epoch_ms: int
) -> dict[str, Any]:
    domain = request.header("Host") or f"{stage.api_id}.lambda-url.localhost"
    return {
        "accountId": "anonymous",
        "apiId": stage.api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": request.path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": request.header("User-Agent"),
        },
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_ms / 1000)),
        "timeEpoch": epoch_ms,
    }


def build_url_event(
    request: HttpRequest, stage: Stage, *, request_id: str, epoch_ms: int
) -> dict[str, Any]:
    """The event a Lambda function URL (payload format 2.0, auth type NONE) sends for
    ``request``: no routing (the app routes), cookies apart from the headers, the query raw
    beside its decoded, comma-joined parameters, and any body base64."""
    passed = [(k, v) for k, v in _as_api_gateway_passes(request) if k.lower() != "cookie"]
    query = _joined_query(request.query)
    event: dict[str, Any] = {
        "version": URL_PAYLOAD_VERSION,
        "routeKey": "$default",
        "rawPath": request.path,
        "rawQueryString": request.query,
        "headers": _joined(passed),
        "requestContext": _url_request_context(request, stage, request_id, epoch_ms),
        "isBase64Encoded": bool(request.body),
    }
    cookies = _cookies(request)
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if request.body:
        event["body"] = base64.b64encode(request.body).decode("ascii")
    return event


def _joined_query(raw: str) -> dict[str, str]:
    grouped: dict[str, list[str]] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True):
        grouped.setdefault(name, []).append(value)
    return {name: ",".join(values) for name, values in grouped.items()}
