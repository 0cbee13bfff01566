"""The HTTP edge: the only chalicelib module that knows Chalice.

It holds the app class, and turns every ``LambdaMeshError`` (and any bug) into the one error
shape, ``{"error": {"code", "message", "request_id"}}``, in one place: the ``route`` decorator.
Chalice catches view exceptions before middleware sees them, so that is where it must happen.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping
from typing import Any, NamedTuple, ParamSpec
from urllib.parse import unquote

from chalice.app import (
    CaseInsensitiveMapping,
    Chalice,
    Request,
    Response,
    RestAPIEventHandler,
)

from chalicelib.console import Arrival
from chalicelib.errors import LambdaMeshError, MethodNotAllowed, RouteNotFound
from chalicelib.function_url import (
    URL_LANE,
    URL_LANE_KEY,
    is_url_event,
    to_rest_event,
    to_url_response,
)
from chalicelib.observability import logger
from lambdamesh_routing.forwarding import METHODS, REQUEST_ID_HEADER, joined_field
from lambdamesh_routing.forwarding import request_id as incoming_request_id

P = ParamSpec("P")
EventHandler = Callable[[dict[str, Any]], dict[str, Any]]
REQUEST_ID_KEY = "lambdamesh_request_id"
# Every method API Gateway's ANY stands for.
GREEDY = "{proxy+}"


class _RestHandler(RestAPIEventHandler):
    def _validate_binary_response(
        self, request_headers: CaseInsensitiveMapping, response_headers: CaseInsensitiveMapping
    ) -> bool:
        """With ``*/*`` as the binary media type API Gateway decodes every base64 body whatever
        the client's Accept header says; Chalice's check would refuse a client sending none."""
        return True


class LambdaMeshApp(Chalice):
    """Chalice, with every body passed through as bytes (``*/*`` is binary)."""

    def __init__(self, app_name: str) -> None:
        # Powertools' Logger owns the logger of the app's name (chalicelib.observability):
        # Chalice's own configuration would set it to ERROR and add a second handler
        # whenever the Logger's handler writes to another sys.stdout than the one at hand.
        super().__init__(app_name=app_name, configure_logs=False)
        self.api.binary_types = ["*/*"]
        self._event_handlers: list[tuple[Callable[[object], bool], EventHandler]] = []

    def on_event(self, matches: Callable[[object], bool]) -> Callable[[EventHandler], EventHandler]:
        """Have the same function answer events that are not HTTP requests (EventBridge's):
        ``matches`` picks them out. Chalice's own event handlers would each deploy a function
        of their own; these run in the one function, behind the same role and log group."""

        def register(handler: EventHandler) -> EventHandler:
            self._event_handlers.append((matches, handler))
            return handler

        return register

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        """Chalice's entry point (its body copied, with ``_RestHandler``), also taking
        function URL events, translated to the REST shape on the way in and back out, and
        the events ``on_event`` handlers take. Anything else is answered, not raised: an
        invocation by hand with a made-up payload says what it got wrong."""
        if is_url_event(event):
            return self._answer_url(event, context)
        for matches, answer in self._event_handlers:
            if matches(event):
                return answer(event)
        if not _is_rest_event(event):
            logger.warning("invoked with an event that is neither HTTP nor a handled event")
            return {"outcome": "ignored", "reason": "not an event this function handles"}
        self.lambda_context = context
        handler = _RestHandler(
            self.routes,
            self.api,
            self.log,
            self.debug,
            middleware_handlers=self._get_middleware_handlers("http"),
        )
        self.current_request = handler.create_request_object(event, context)
        result: dict[str, Any] = handler(event, context)
        return result

    def _answer_url(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            rest = to_rest_event(event, self.routes)
        except LambdaMeshError as exc:
            # A path no route matches or a method its route lacks: API Gateway answers these
            # before the Lambda runs; here the app must, in its own envelope.
            headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
            rid = incoming_request_id(headers.get("x-request-id"))
            response = error_answer(exc, rid)
            response.headers[REQUEST_ID_HEADER] = rid
            return to_url_response(response.to_dict(self.api.binary_types))
        return to_url_response(self(rest, context))

    def request(self) -> Request:
        request = self.current_request
        if request is None:
            raise RuntimeError("no request is being handled")
        return request

    def body(self) -> bytes:
        raw = self.request().raw_body
        return raw.encode() if isinstance(raw, str) else bytes(raw or b"")

    def query_param(self, name: str) -> str | None:
        params = self.request().query_params
        return None if params is None else params.get(name)

    def query_pairs(self) -> list[tuple[str, str]]:
        params = self.request().query_params
        return [(k, v) for k in params for v in params.getlist(k)] if params else []

    def forwarded_headers(self) -> dict[str, str]:
        """Every request header, repeated ones joined as HTTP allows.

        ``Request.headers`` keeps only the last value of a repeated header (it is built from
        the event's single-value ``headers``), so read the event's ``multiValueHeaders``.
        """
        request = self.request()
        multi = request.to_original_event().get("multiValueHeaders") or {}
        if not multi:
            return dict(request.headers)
        return {name: joined_field(name, values) for name, values in multi.items() if values}

    def path_after_route(self) -> str | None:
        """The request path after the matched route's own segments, as the client sent it
        (trailing ``/`` and escapes such as ``%2F`` included), or None when the event's path
        does not carry the route."""
        event = self.request().to_original_event()
        return route_suffix(
            str(event.get("path") or ""),
            str((event.get("requestContext") or {}).get("resourcePath") or ""),
            event.get("pathParameters") or {},
        )

    def arrival(self) -> Arrival:
        """The domain the request was sent to, and whether through the function URL."""
        context = self.request().context or {}
        domain = context.get("domainName")
        return Arrival(
            domain=str(domain) if domain else None,
            via_function_url=context.get(URL_LANE_KEY) == URL_LANE,
        )

    def time_left(self, limit: float, margin: float = 1.0) -> float:
        """Seconds this invocation may still spend: ``limit``, or less when the Lambda's own
        timeout comes sooner (less ``margin`` to answer in)."""
        context = getattr(self, "lambda_context", None)
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if remaining is None:
            return limit
        return max(0.0, min(limit, float(remaining()) / 1000 - margin))

    def request_id(self) -> str:
        context = self.current_request.context if self.current_request else {}
        return str(context.get(REQUEST_ID_KEY, ""))

    def answer_unrouted(self) -> None:
        """Route every path and method no view owns, so the answer is ours, not API Gateway's.

        API Gateway answers 403 "Missing Authentication Token" itself, before the Lambda runs,
        for a method a resource lacks and for a path no resource matches. Call this after the
        last route: each route gets the methods it lacks (405 with ``Allow``), and every
        resource, intermediate ones included, what it needs to own its subtree (404).
        """
        for gap in unrouted({path: list(methods) for path, methods in self.routes.items()}):
            view = self._not_allowed(gap.allow) if gap.allow else self._no_route
            name = "method_not_allowed" if gap.allow else "route_not_found"
            self.route_with_errors(gap.path, methods=list(gap.methods), name=name)(view)

    def _no_route(self, **params: str) -> Response:
        raise RouteNotFound("no route matches")

    def _not_allowed(self, allow: tuple[str, ...]) -> Callable[..., Response]:
        def method_not_allowed(**params: str) -> Response:
            raise MethodNotAllowed(allow)

        return method_not_allowed

    def route_with_errors(
        self, path: str, **kwargs: Any
    ) -> Callable[[Callable[P, Response]], Callable[P, Response]]:
        """``app.route``, with domain errors answered as JSON with their status and code."""

        def register(view: Callable[P, Response]) -> Callable[P, Response]:
            @functools.wraps(view)
            def answer(*args: P.args, **kw: P.kwargs) -> Response:
                try:
                    return view(*args, **kw)
                except LambdaMeshError as exc:
                    return error_answer(exc, self.request_id())
                except Exception:
                    logger.exception("unhandled error", extra={"request_id": self.request_id()})
                    return error_response(
                        500, "internal_error", "internal error", self.request_id()
                    )

            kwargs.setdefault("content_types", ["*/*"])
            self.route(path, **kwargs)(answer)
            return answer

        return register


def _is_rest_event(event: object) -> bool:
    """API Gateway's REST proxy event (payload 1.0), the shape Chalice's handler reads."""
    return isinstance(event, dict) and "httpMethod" in event and "requestContext" in event


def route_suffix(path: str, template: str, params: Mapping[str, str]) -> str | None:
    """What follows the route's own segments in ``path``, byte for byte, or None.

    ``template`` is the matched resource (``/api/v1/{service}/{version}/{proxy+}``) and
    ``params`` its decoded values. The route is found by position: the first run of
    segments that decode to the route's own (a custom domain's base path may come before
    it). Everything the client sent after it is the client's, so it is never searched.
    """
    own = [_decoded(s, params) for s in template.strip("/").split("/") if s and s != GREEDY]
    if None in own:
        return None  # a parameter the event does not carry: no run of segments matches
    segments = path.split("/")[1:] if path.startswith("/") else []
    decoded = [unquote(segment) for segment in segments]
    width = len(own)
    for start in range(len(segments) - width + 1):
        if decoded[start : start + width] == own:
            return "".join("/" + s for s in segments[start + width :])
    return None


def _decoded(template_segment: str, params: Mapping[str, str]) -> str | None:
    """What a segment of the route decodes to in the path: its parameter's value (None if
    the event carries none), or the segment itself."""
    if template_segment.startswith("{") and template_segment.endswith("}"):
        return params.get(template_segment[1:-1])
    return template_segment


class Gap(NamedTuple):
    """Methods of a resource no view owns, and the methods it has (none: no such route)."""

    path: str
    methods: tuple[str, ...]
    allow: tuple[str, ...]


def unrouted(routes: Mapping[str, Collection[str]]) -> list[Gap]:
    """Every resource and method API Gateway would answer itself for these routes.

    API Gateway creates a resource for each route and each of its parents, and does not
    fall back to a greedy resource elsewhere in the tree once a path has entered a sibling:
    so every resource needs all methods, and a ``{proxy+}`` child unless it has a path
    parameter child (a resource may have only one) or is greedy itself.
    """
    resources = {"/"} | {parent for path in routes for parent in _lineage(path)}
    with_parameter_child = {_parent(r) for r in resources if _last_segment(r).startswith("{")}
    gaps: list[Gap] = []
    for path in sorted(resources):
        have = tuple(m for m in METHODS if m in routes.get(path, ()))
        if len(have) < len(METHODS):
            gaps.append(Gap(path, tuple(m for m in METHODS if m not in have), have))
        greedy = _child(path, GREEDY)
        if not path.endswith("+}") and path not in with_parameter_child:
            gaps.append(Gap(greedy, METHODS, ()))
    return gaps


def _lineage(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:depth]) for depth in range(1, len(parts) + 1) if parts[0]]


def _child(path: str, segment: str) -> str:
    return path.rstrip("/") + "/" + segment


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def _last_segment(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def json_response(body: Any, status: int = 200) -> Response:
    return Response(body=body, status_code=status, headers={"Content-Type": "application/json"})


def error_answer(exc: LambdaMeshError, request_id: str) -> Response:
    """The answer for a domain error: its status, code and headers (``Retry-After`` when
    waiting helps, so clients and sidecars back off; ``Allow`` for a 405)."""
    response = error_response(exc.status, exc.code, exc.message, request_id)
    response.headers.update(exc.headers())
    return response


def error_response(status: int, code: str, message: str, request_id: str) -> Response:
    return json_response(
        {"error": {"code": code, "message": message, "request_id": request_id}}, status
    )
