"""The HTTP edge: the only chalicelib module that knows Chalice.

It holds the app class, and turns every ``LambdaMeshError`` (and any bug) into the one error
shape, ``{"error": {"code", "message", "request_id"}}``, in one place: the ``route`` decorator.
Chalice catches view exceptions before middleware sees them, so that is where it must happen.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec

from chalice.app import (
    CaseInsensitiveMapping,
    Chalice,
    Request,
    Response,
    RestAPIEventHandler,
)

from chalicelib.errors import LambdaMeshError
from chalicelib.observability import logger

P = ParamSpec("P")
REQUEST_ID_KEY = "lambdamesh_request_id"


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
        super().__init__(app_name=app_name)
        self.api.binary_types = ["*/*"]

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
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
        return {
            name: ("; " if name.lower() == "cookie" else ", ").join(values)
            for name, values in multi.items()
            if values
        }

    def path_after(self, prefix: str) -> str | None:
        """The request path after ``prefix``, as the client sent it (trailing ``/`` and
        escapes such as ``%2F`` included), or None when the event has no such path."""
        path = str(self.request().to_original_event().get("path") or "")
        at = path.find(prefix)
        if at < 0:
            return None
        rest = path[at + len(prefix) :]
        return rest if rest == "" or rest.startswith("/") else None

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


def json_response(body: Any, status: int = 200) -> Response:
    return Response(body=body, status_code=status, headers={"Content-Type": "application/json"})


def error_answer(exc: LambdaMeshError, request_id: str) -> Response:
    """The answer for a domain error: its status and code, and ``Retry-After`` when waiting
    helps, so clients and sidecars back off instead of hammering a failing dependency."""
    response = error_response(exc.status, exc.code, exc.message, request_id)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def error_response(status: int, code: str, message: str, request_id: str) -> Response:
    return json_response(
        {"error": {"code": code, "message": message, "request_id": request_id}}, status
    )
