"""Greedy ``{proxy+}`` routes for Chalice's own local server and test client.

API Gateway REST routes ``/api/v1/{service}/{version}/{proxy+}`` to any depth; Chalice's
``RouteMatcher`` only matches URLs with as many segments as the route (aws/chalice#2118,
#2072), so ``chalice local`` and ``chalice.test.Client`` answer 403 for the very paths the
gateway exists to forward. Rather than a second server, this module plugs a matcher and an
event converter into Chalice's classes, so the dev server and the tests hand the app the
event shape it sees when deployed, and fixes two response defects that matter to a proxy.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from chalice.app import Chalice, _matches_content_type
from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    EventType,
    HeaderType,
    LambdaEventConverter,
    LocalARNBuilder,
    LocalChalice,
    LocalDevServer,
    LocalGateway,
    MatchResult,
    RouteMatcher,
    ThreadedHTTPServer,
)
from chalice.test import Client, TestHTTPClient

__all__ = [
    "GreedyRouteMatcher",
    "ProxyEventConverter",
    "ProxyLocalGateway",
    "ProxyRequestHandler",
    "ProxyTestClient",
    "ProxyTestHTTPClient",
    "create_dev_server",
    "create_test_client",
]

# Segment kinds, ordered from most to least specific: API Gateway prefers a literal
# segment over a path parameter, and a path parameter over a greedy one.
_LITERAL, _PARAM, _GREEDY = 0, 1, 2


def _segment_kind(segment: str, is_last: bool) -> int:
    if not (segment.startswith("{") and segment.endswith("}")):
        return _LITERAL
    return _GREEDY if is_last and segment.endswith("+}") else _PARAM


@dataclass(frozen=True)
class _RoutePattern:
    """A route split once at startup, so matching a request does no parsing."""

    route: str
    segments: tuple[str, ...]
    kinds: tuple[int, ...]

    @classmethod
    def parse(cls, route: str) -> _RoutePattern:
        segments = tuple(route.split("/"))
        last = len(segments) - 1
        kinds = tuple(_segment_kind(s, i == last) for i, s in enumerate(segments))
        return cls(route, segments, kinds)

    @property
    def is_greedy(self) -> bool:
        return self.kinds[-1] == _GREEDY

    def rank(self) -> tuple[bool, tuple[int, ...], str]:
        """Sort key: exact-depth routes first, then the most specific segment by segment."""
        return self.is_greedy, self.kinds, self.route

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if not self.is_greedy:
            return self._match_exact(self.segments, parts)
        prefix = self.segments[:-1]
        rest = "/".join(parts[len(prefix) :])
        if len(parts) <= len(prefix) or not rest:
            return None
        captured = self._match_exact(prefix, parts[: len(prefix)])
        if captured is not None:
            captured[self.segments[-1][1:-2]] = unquote(rest)
        return captured

    @staticmethod
    def _match_exact(segments: tuple[str, ...], parts: list[str]) -> dict[str, str] | None:
        if len(segments) != len(parts):
            return None
        captured: dict[str, str] = {}
        for segment, part in zip(segments, parts, strict=True):
            if segment.startswith("{") and segment.endswith("}"):
                if not part:
                    return None
                captured[segment[1:-1]] = unquote(part)
            elif segment != part:
                return None
        return captured


class GreedyRouteMatcher(RouteMatcher):
    """Chalice's matcher, plus ``{name+}`` routes and API Gateway's precedence.

    Chalice's own loop also reuses one ``captured`` dict across routes it tries, leaking
    values from routes that failed to match; each attempt here starts empty.
    """

    def __init__(self, route_urls: list[str]) -> None:
        super().__init__(route_urls)
        patterns = (_RoutePattern.parse(url) for url in route_urls)
        self._patterns = sorted(patterns, key=_RoutePattern.rank)

    def match_route(self, url: str) -> MatchResult:
        parsed_url = urlparse(url)
        query_params = parse_qs(parsed_url.query, keep_blank_values=True)
        path = parsed_url.path
        # API Gateway ignores a trailing slash on anything but the root, and so does Chalice.
        if path != "/" and path.endswith("/"):
            path = path[:-1]
        parts = path.split("/")
        for pattern in self._patterns:
            captured = pattern.match(parts)
            if captured is not None:
                return MatchResult(pattern.route, captured, query_params)
        raise ValueError(f"No matching route found for: {url}")


def _multi_value(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _as_event_body(body: bytes | None) -> str | bytes | None:
    """API Gateway hands a text body over as ``str``, and an empty one as ``None``."""
    if not body:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        # Not representable as the deployed str; keep Chalice's bytes rather than lose data.
        return body


class ProxyEventConverter(LambdaEventConverter):
    """Builds the event API Gateway REST proxy integration sends, not Chalice local's subset.

    Code that reads the raw event (Powertools, our gateway's forwarding) must see the same
    keys locally as deployed: ``resource``, ``path``, ``httpMethod``, single-value query
    parameters, ``multiValueHeaders`` and a request id.
    """

    def _is_binary(self, headers: dict[str, Any]) -> bool:
        # Chalice local compares the raw header exactly and case-sensitively, so it misses
        # ``Content-Type``, parameters such as ``; charset=`` and a ``*/*`` binary type.
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        return _matches_content_type(str(content_type), self._binary_types)

    def create_lambda_event(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | str | None = None,
    ) -> EventType:
        # Chalice's test client passes ``str`` bodies through as given; the wire has bytes.
        if isinstance(body, str):
            body = body.encode("utf-8")
        event = super().create_lambda_event(method, path, headers, body or None)
        context = event["requestContext"]
        multi_query = event["multiValueQueryStringParameters"]
        if not event.get("isBase64Encoded"):
            event["body"] = _as_event_body(body)
        event.update(
            resource=context["resourcePath"],
            path=context["path"],
            httpMethod=method,
            queryStringParameters=(
                {key: values[-1] for key, values in multi_query.items()} if multi_query else None
            ),
            multiValueHeaders={k: _multi_value(v) for k, v in event["headers"].items()},
            pathParameters=event["pathParameters"] or None,
            isBase64Encoded=bool(event.get("isBase64Encoded")),
        )
        context.update(requestId=str(uuid.uuid4()), stage=LocalARNBuilder.LOCAL_STAGE)
        return event


class ProxyLocalGateway(LocalGateway):
    """Chalice's ``LocalGateway`` with the greedy matcher and the deployed event shape."""

    def __init__(
        self,
        app_object: Chalice,
        config: Config,
        event_converter: LambdaEventConverter | None = None,
    ) -> None:
        super().__init__(app_object, config)
        if event_converter is None:
            event_converter = ProxyEventConverter(
                GreedyRouteMatcher(list(app_object.routes)), app_object.api.binary_types
            )
        self.event_converter = event_converter


def _pop_header(headers: HeaderType, name: str) -> Any:
    """Remove every spelling of ``name``, so it is sent once; returns the last value seen."""
    value = None
    for key in [k for k in headers if k.lower() == name.lower()]:
        value = headers.pop(key)
    return value[0] if isinstance(value, list) and value else value


class ProxyRequestHandler(ChaliceRequestHandler):
    """Chalice's request handler, serving through ``ProxyLocalGateway``.

    Also corrects two things a proxy trips over: Chalice pops only the exact key
    ``Content-Type`` (an upstream ``content-type`` is then sent twice), and it writes a body
    after the headers of a HEAD response, which corrupts the next response on a keep-alive
    connection. Headers and body go out in separate writes, so Nagle's algorithm is off:
    with it, a keep-alive client's delayed ACK stalls every response by about 40 ms.
    """

    disable_nagle_algorithm = True

    def __init__(
        self,
        request: Any,
        client_address: tuple[str, int],
        server: HTTPServer,
        app_object: Chalice,
        config: Config,
    ) -> None:
        # ChaliceRequestHandler.__init__ builds a plain LocalGateway and then serves the
        # request at once, so it cannot be called; this is its body with our gateway.
        self.local_gateway = ProxyLocalGateway(app_object, config)
        self._answer_headers: HeaderType = {}
        BaseHTTPRequestHandler.__init__(self, request, client_address, server)

    def _send_http_response_with_body(
        self, code: int, headers: HeaderType, body: str | bytes
    ) -> None:
        payload = body if isinstance(body, bytes) else body.encode("utf-8")
        content_type = _pop_header(headers, "Content-Type") or "application/json"
        given_length = _pop_header(headers, "Content-Length")
        is_head = self.command == "HEAD"
        # A HEAD answer may announce the length a GET would have; any other answer must
        # announce the bytes actually written.
        length = given_length if is_head and given_length is not None else len(payload)
        self._answer_headers = headers
        self.send_response(code)
        self.send_header("Content-Length", str(length))
        self.send_header("Content-Type", content_type)
        self._send_headers(headers)
        if not is_head:
            self.wfile.write(payload)

    def _send_http_response_no_body(self, code: int, headers: HeaderType) -> None:
        _pop_header(headers, "Content-Length")
        self._answer_headers = headers
        super()._send_http_response_no_body(code, headers)

    def send_response(self, code: int, message: str | None = None) -> None:
        """The base class always adds its own ``Server`` and ``Date``; a proxied answer that
        carries the upstream's would then have two of each."""
        self.log_request(code)
        self.send_response_only(code, message)
        present = {name.lower() for name in self._answer_headers}
        if "server" not in present:
            self.send_header("Server", self.version_string())
        if "date" not in present:
            self.send_header("Date", self.date_time_string())


def _use_thread_local_request(app: Chalice) -> None:
    """Make ``app.current_request`` per thread, as ``chalice.local.create_local_server`` does.

    Chalice re-bases one shared ``CustomLocalChalice`` class onto the app's class, which
    raises ``TypeError`` (an inheritance cycle) when called twice for the same app and
    re-bases apps served earlier; a class made per app has neither problem.
    """
    app_class = type(app)
    if issubclass(app_class, LocalChalice):
        return
    app.__class__ = type(f"Local{app_class.__name__}", (LocalChalice, app_class), {})


def create_dev_server(
    app: Chalice,
    config: Config,
    host: str,
    port: int,
    handler_cls: type[ProxyRequestHandler] = ProxyRequestHandler,
) -> LocalDevServer:
    """Chalice's threaded dev server, serving greedy routes; ``port=0`` picks a free port."""
    _use_thread_local_request(app)
    return LocalDevServer(
        app,
        config,
        host,
        port,
        handler_cls=handler_cls,
        server_cls=ThreadedHTTPServer,
    )


class ProxyTestHTTPClient(TestHTTPClient):
    """Chalice's test HTTP client, routed through ``ProxyLocalGateway``."""

    def __init__(self, app: Chalice, config: Config) -> None:
        super().__init__(app, config)
        self._local_gateway = ProxyLocalGateway(app, config)


class ProxyTestClient(Client):
    """Chalice's test client whose ``http`` serves greedy routes.

    ``environment_variables`` are layered over the project's config as user-provided
    parameters, so Chalice's own stage scoping applies them around each request exactly as
    it does the values from ``.chalice/config.json``.
    """

    def __init__(
        self,
        app: Chalice,
        stage_name: str = "dev",
        project_dir: str = ".",
        environment_variables: dict[str, str] | None = None,
    ) -> None:
        super().__init__(app, stage_name=stage_name, project_dir=project_dir)
        self._environment_variables = dict(environment_variables or {})

    @property
    def _chalice_config(self) -> Config:
        if self._chalice_config_obj is None:
            params: dict[str, Any] = {"environment_variables": dict(self._environment_variables)}
            try:
                self._chalice_config_obj = self._cli_factory.create_config_obj(
                    chalice_stage_name=self._stage_name, user_provided_params=params
                )
            except RuntimeError:
                # As in Chalice: a project without .chalice/config.json is still testable.
                self._chalice_config_obj = Config(
                    chalice_stage=self._stage_name, user_provided_params=params
                )
        return self._chalice_config_obj

    @property
    def http(self) -> TestHTTPClient:
        if self._http_client is None:
            self._http_client = ProxyTestHTTPClient(self._app, self._chalice_config)
        return self._http_client


def create_test_client(
    app: Chalice,
    stage_name: str = "dev",
    environment_variables: dict[str, str] | None = None,
) -> Client:
    """Chalice's test client for ``app``, serving greedy routes; use it as a context manager."""
    return ProxyTestClient(app, stage_name=stage_name, environment_variables=environment_variables)
