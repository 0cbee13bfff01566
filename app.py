"""lambdamesh: the registry API and the gateway, on one screen.

Each route parses, calls one chalicelib function and returns. Errors from chalicelib become
``{"error": {"code", "message", "request_id"}}`` in one place: the ``http`` middleware.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chalice import Chalice, Response
from chalice.app import CaseInsensitiveMapping, Request

from chalicelib import wiring
from chalicelib.auth import Principal, bearer_token, verify
from chalicelib.errors import LambdaMeshError, RegistryUnavailable
from chalicelib.forwarding import REQUEST_ID_HEADER, request_id
from chalicelib.gateway import ProxyRequest
from chalicelib.observability import logger, metrics
from chalicelib.validation import parse_json_body

PROXY_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ANY_CONTENT = ["*/*"]


class LambdaMeshApp(Chalice):
    def _validate_binary_response(
        self, request_headers: CaseInsensitiveMapping, response_headers: CaseInsensitiveMapping
    ) -> bool:
        """Always true: with ``*/*`` as a binary media type, API Gateway decodes every base64
        body whatever the client's Accept says; Chalice's check would 400 a client that
        sends no Accept header."""
        return True


app = LambdaMeshApp(app_name="lambdamesh")
app.api.binary_types = ["*/*"]


@app.middleware("http")
def handle_errors_and_observe(event: Request, get_response: Callable[[Request], Response]) -> Response:
    rid = request_id(event.headers.get("x-request-id"))
    event.context["lambdamesh"] = {"request_id": rid}
    started = time.perf_counter()
    code = None
    try:
        response = get_response(event)
    except LambdaMeshError as exc:
        code = exc.code
        response = _error(exc.status, exc.code, exc.message, rid)
    except Exception:
        logger.exception("unhandled error", extra={"request_id": rid})
        code = "internal_error"
        response = _error(500, code, "internal error", rid)
    response.headers[REQUEST_ID_HEADER] = rid
    logger.info(
        "request",
        extra={
            "request_id": rid,
            "method": event.method,
            "route": event.path,
            "status": response.status_code,
            "error_code": code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
    metrics.add_metric(name="Requests", unit="Count", value=1)
    if code:
        metrics.add_metric(name=f"Error.{code}", unit="Count", value=1)
    metrics.flush_metrics()
    metrics.clear_metrics()
    return response


def _error(status: int, code: str, message: str, rid: str) -> Response:
    body = {"error": {"code": code, "message": message, "request_id": rid}}
    return Response(body=body, status_code=status, headers={"Content-Type": "application/json"})


def _principal() -> Principal:
    header = app.current_request.headers.get("authorization")
    return verify(wiring.signing_key(), bearer_token(header))


def _body() -> Any:
    return parse_json_body(app.current_request.raw_body or None)


def _json(body: Any, status: int = 200) -> Response:
    return Response(body=body, status_code=status, headers={"Content-Type": "application/json"})


@app.route("/health", methods=["GET"])
def health() -> Response:
    try:
        wiring.registry().ping()
    except RegistryUnavailable as exc:
        return _json({"status": "unavailable", "reason": exc.message}, 503)
    return _json({"status": "ok"})


@app.route("/registry/services", methods=["GET"])
def list_services() -> Response:
    _principal()
    return _json({"services": wiring.registry().services()})


@app.route("/registry/services/{service}/instances", methods=["GET"])
def list_instances(service: str) -> Response:
    _principal()
    version = (app.current_request.query_params or {}).get("version")
    registry = wiring.registry()
    now = registry.now()
    found = registry.live_instances(service, version)
    return _json({"service": service, "instances": [i.to_json(now) for i in found]})


@app.route(
    "/registry/services/{service}/instances/{instance_id}",
    methods=["PUT"],
    content_types=ANY_CONTENT,
)
def register_instance(service: str, instance_id: str) -> Response:
    registry = wiring.registry()
    result = registry.register(_principal(), service, instance_id, _body())
    return _json(result.instance.to_json(registry.now()), 201 if result.created else 200)


@app.route(
    "/registry/services/{service}/instances/{instance_id}/heartbeat",
    methods=["PUT"],
    content_types=ANY_CONTENT,
)
def heartbeat_instance(service: str, instance_id: str) -> Response:
    registry = wiring.registry()
    instance = registry.heartbeat(_principal(), service, instance_id, _body())
    return _json(instance.to_json(registry.now()))


@app.route(
    "/registry/services/{service}/instances/{instance_id}",
    methods=["DELETE"],
    content_types=ANY_CONTENT,
)
def deregister_instance(service: str, instance_id: str) -> Response:
    wiring.registry().deregister(_principal(), service, instance_id)
    return Response(body=b"", status_code=204)


@app.route("/api/v1/{service}/{version}", methods=PROXY_METHODS, content_types=ANY_CONTENT)
def proxy_root(service: str, version: str) -> Response:
    return _forward(service, version, "")


@app.route(
    "/api/v1/{service}/{version}/{proxy+}", methods=PROXY_METHODS, content_types=ANY_CONTENT
)
def proxy_path(service: str, version: str) -> Response:
    return _forward(service, version, (app.current_request.uri_params or {}).get("proxy", ""))


def _forward(service: str, version: str, path: str) -> Response:
    request = app.current_request
    query = request.query_params
    answer = wiring.gateway().forward(
        ProxyRequest(
            method=request.method,
            service=service,
            version=version,
            path=path,
            query=[(k, v) for k in query for v in query.getlist(k)] if query else [],
            headers=dict(request.headers),
            body=request.raw_body or b"",
            client_ip=request.context.get("identity", {}).get("sourceIp"),
            proto="http",
            request_id=request.context["lambdamesh"]["request_id"],
        )
    )
    return Response(body=answer.body, headers=answer.headers, status_code=answer.status)
