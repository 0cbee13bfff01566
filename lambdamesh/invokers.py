"""The app called as Lambda's HTTP front doors call it, through its deployed contract
``app(event, context)`` with events from ``lambdamesh.events``: ``Invoker`` routes a request as
API Gateway's REST proxy does (payload 1.0), ``UrlInvoker`` hands every request on as a function
URL does (payload 2.0), and each reads the app's answer back as its front door reads it.

The local server (``lambdamesh.localgateway``) and the test client (``lambdamesh.testclient``)
both invoke through here. Lambda's Invoke API, for events that are not HTTP requests, is
``lambdamesh.invocations``; it takes its ``LambdaContext`` and ``Answer`` from here.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from lambdamesh.events import (
    MISSING_ROUTE_BODY,
    MISSING_ROUTE_HEADERS,
    MISSING_ROUTE_STATUS,
    HttpRequest,
    RouteTable,
    Stage,
    build_event,
    build_url_event,
)
from lambdamesh.projectconfig import DEFAULT_LAMBDA_TIMEOUT

__all__ = [
    "Answer",
    "App",
    "Invoker",
    "LambdaContext",
    "UrlInvoker",
    "missing_route",
    "read_proxy_response",
    "read_url_response",
]


class App(Protocol):
    """What the local gateway needs of a Chalice app: its public route table, its binary
    media types and the Lambda entry point. ``routes`` is read-only here, so a Chalice app's
    ``dict`` of ``RouteEntry`` dicts satisfies it."""

    @property
    def routes(self) -> Mapping[str, Mapping[str, Any]]: ...

    api: Any

    def __call__(self, event: Any, context: Any) -> Any: ...


@dataclass
class LambdaContext:
    """The parts of Lambda's context object an app reads, with a deadline that runs."""

    timeout_seconds: float = DEFAULT_LAMBDA_TIMEOUT
    function_name: str = "lambdamesh"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    clock: Callable[[], float] = time.monotonic
    _deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self._deadline = self.clock() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:123456789012:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self.clock()) * 1000))


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, every header in order (repeats kept), body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[-1] if values else None


def missing_route() -> Answer:
    return Answer(MISSING_ROUTE_STATUS, list(MISSING_ROUTE_HEADERS.items()), MISSING_ROUTE_BODY)


def read_proxy_response(response: Mapping[str, Any]) -> Answer:
    """API Gateway's reading of a proxy response: ``headers`` and ``multiValueHeaders``
    merged (a name in both keeps only the multi values), the body base64-decoded if flagged."""
    multi = response.get("multiValueHeaders") or {}
    in_multi = {name.lower() for name in multi}
    headers = [
        (name, str(value))
        for name, value in (response.get("headers") or {}).items()
        if name.lower() not in in_multi
    ]
    headers += [(name, str(value)) for name, values in multi.items() for value in values]
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        payload = base64.b64decode(body)
    else:
        payload = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    return Answer(int(response["statusCode"]), headers, payload)


class Invoker:
    """Routes a request as API Gateway does and invokes the app with the deployed event."""

    def __init__(
        self,
        app: App,
        stage: Stage | None = None,
        timeout_seconds: float = DEFAULT_LAMBDA_TIMEOUT,
        function_name: str = "lambdamesh",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.routes = RouteTable(app.routes)
        # Served at the root, as a custom domain with no base path: no stage in the URL.
        self.stage = stage or Stage(binary_types=tuple(app.api.binary_types), url_prefix="")
        self.timeout_seconds = timeout_seconds
        self.function_name = function_name
        self.clock = clock

    def __call__(self, request: HttpRequest) -> Answer:
        match = self.routes.match(request.path)
        if match is None or not _allows(self.app.routes[match.resource], request.method):
            return missing_route()
        event = build_event(
            request,
            match,
            self.stage,
            request_id=str(uuid.uuid4()),
            epoch_ms=int(self.clock() * 1000),
        )
        context = LambdaContext(self.timeout_seconds, self.function_name)
        return read_proxy_response(self.app(event, context))


def read_url_response(response: Mapping[str, Any]) -> Answer:
    """A function URL's reading of a payload 2.0 response: one value per header, each of
    ``cookies`` as its own ``Set-Cookie``, the body base64-decoded if flagged."""
    headers = [(name, str(value)) for name, value in (response.get("headers") or {}).items()]
    headers += [("Set-Cookie", str(cookie)) for cookie in response.get("cookies") or ()]
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        payload = base64.b64decode(body)
    else:
        payload = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    return Answer(int(response.get("statusCode", 200)), headers, payload)


class UrlInvoker:
    """Invokes the app as a Lambda function URL does: every request, unrouted, in payload
    format 2.0; the app routes and answers unknown paths itself."""

    def __init__(
        self,
        app: Callable[[Any, Any], Any],
        stage: Stage | None = None,
        timeout_seconds: float = DEFAULT_LAMBDA_TIMEOUT,
        function_name: str = "lambdamesh",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.stage = stage or Stage()
        self.timeout_seconds = timeout_seconds
        self.function_name = function_name
        self.clock = clock

    def __call__(self, request: HttpRequest) -> Answer:
        event = build_url_event(
            request, self.stage, request_id=str(uuid.uuid4()), epoch_ms=int(self.clock() * 1000)
        )
        context = LambdaContext(self.timeout_seconds, self.function_name)
        return read_url_response(self.app(event, context))


def _allows(methods: Mapping[str, Any], method: str) -> bool:
    return method in methods or "ANY" in methods
