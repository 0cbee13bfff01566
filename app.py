"""lambdamesh: the registry API and the gateway, on one screen.

Each route parses, calls one chalicelib function and returns. ``route`` is ``app.route`` with
chalicelib's errors answered as ``{"error": {"code", "message", "request_id"}}``; so are
paths and methods no route has (``app.answer_unrouted``, at the end).

The modules of routes that neither a routed request nor the cold start's priming uses (the
OpenAPI document, the dashboard's pages, the routing view sidecars poll, the figures an
instance answers with) are imported inside those routes, at their first request, so that no
cold start pays for them (``tests/functional/test_cold_start_imports.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chalice.app import Request, Response

from chalicelib import lifecycle, task_events, wiring
from chalicelib.auth import Principal, basic_or_bearer_token, bearer_token, verify
from chalicelib.console import is_console
from chalicelib.edge import REQUEST_ID_KEY, LambdaMeshApp, json_response
from chalicelib.errors import RegistryUnavailable, RouteNotFound, Unauthorized
from chalicelib.eureka import answers as eureka_answers
from chalicelib.eureka import paths as eureka_paths
from chalicelib.exposure.document import exposure_answer
from chalicelib.gateway import ProxyRequest
from chalicelib.observability import logger, record_request
from lambdamesh_routing.forwarding import METHODS, REQUEST_ID_HEADER, request_id
from lambdamesh_routing.policy import policy_answer

app = LambdaMeshApp(app_name="lambdamesh")
route = app.route_with_errors


@app.middleware("http")
def observe(event: Request, get_response: Callable[[Request], Response]) -> Response:
    """Give every request an id, echo it back, and log and count the outcome."""
    rid = request_id(event.headers.get("x-request-id"))
    event.context[REQUEST_ID_KEY] = rid
    started = time.perf_counter()
    response = get_response(event)
    response.headers[REQUEST_ID_HEADER] = rid
    record_request(rid, event.method, event.path, response.status_code, response.body, started)
    return response


def _principal() -> Principal:
    header = app.request().headers.get("authorization")
    return verify(wiring.signing_keys(), bearer_token(header))


def _on_console() -> bool:
    return is_console(wiring.settings().console_domain, app.arrival())


def _console_page(name: str) -> Response:
    """The dashboard's files, on the console's own domain only (``chalicelib/console.py``)."""
    if not _on_console():
        raise RouteNotFound("no route matches")
    from chalicelib import pages

    body, headers = pages.page(name)
    return Response(body=body, headers=headers, status_code=200)


@route("/health", methods=["GET"])
def health() -> Response:
    refusal = wiring.routing_refusal()
    if refusal is not None:
        return json_response({"status": "misconfigured", "reason": refusal}, 503)
    try:
        wiring.registry().ping()
    except RegistryUnavailable as exc:
        logger.warning("health check failed", extra={"reason": exc.message})
        return json_response({"status": "unavailable"}, 503)
    return json_response({"status": "ok"})


@route("/dashboard", methods=["GET"])
def dashboard() -> Response:
    return _console_page("index.html")


@route("/dashboard.js", methods=["GET"])
def dashboard_script() -> Response:
    return _console_page("dashboard.js")


@route("/registry/openapi.json", methods=["GET"])
def openapi_document() -> Response:
    from chalicelib import openapi

    return json_response(openapi.document())


@route("/registry/services", methods=["GET"])
def list_services() -> Response:
    _principal()
    return json_response({"services": wiring.registry().services()})


@route("/registry/services/{service}/instances", methods=["GET"])
def list_instances(service: str) -> Response:
    _principal()
    version = app.query_param("version")
    registry = wiring.registry()
    now = registry.now()
    found = registry.live_instances(service, version)
    return json_response({"service": service, "instances": [i.to_json(now) for i in found]})


@route("/registry/services/{service}/routing", methods=["GET"])
def routing_view(service: str) -> Response:
    from chalicelib.views import routing_answer

    _principal()
    answer = routing_answer(
        wiring.discovery(),
        service,
        app.request().headers.get("if-none-match"),
        time.time(),
        wiring.settings(),
    )
    headers: dict[str, str | list[str]] = {"ETag": answer.etag, "Cache-Control": "no-cache"}
    if answer.document is None:
        return Response(body="", status_code=answer.status, headers=headers)
    return Response(
        body=answer.document,
        status_code=answer.status,
        headers={**headers, "Content-Type": "application/json"},
    )


@route(
    "/registry/services/{service}/instances/{instance_id}",
    methods=["PUT"],
)
def register_instance(service: str, instance_id: str) -> Response:
    from chalicelib.figures import Reported

    registry = wiring.registry()
    result = registry.register(_principal(), service, instance_id, app.body())
    answer = Reported(result.instance).to_json(registry.now())  # a registration keeps no figures
    return json_response(answer, 201 if result.created else 200)


@route(
    "/registry/services/{service}/instances/{instance_id}/heartbeat",
    methods=["PUT"],
)
def heartbeat_instance(service: str, instance_id: str) -> Response:
    registry = wiring.registry()
    instance = registry.heartbeat(_principal(), service, instance_id, app.body())
    return json_response(instance.to_json(registry.now()))


@route(
    "/registry/services/{service}/instances/{instance_id}",
    methods=["DELETE"],
)
def deregister_instance(service: str, instance_id: str) -> Response:
    wiring.registry().deregister(_principal(), service, instance_id)
    return Response(body=b"", status_code=204)


@route("/registry/services/{service}/certificate", methods=["POST"])
def issue_certificate(service: str) -> Response:
    issued = wiring.certificate_issuer().issue(_principal(), service)
    response = json_response(issued)
    response.headers["Cache-Control"] = "no-store"  # it carries a private key
    return response


@route(
    "/registry/services/{service}/instances/{instance_id}/drain",
    methods=["PUT"],
)
def drain_instance(service: str, instance_id: str) -> Response:
    registry = wiring.registry()
    instance = registry.drain(_principal(), service, instance_id)
    return json_response(instance.to_json(registry.now()))


@route(
    "/registry/services/{service}/instances/{instance_id}/drain",
    methods=["DELETE"],
)
def undrain_instance(service: str, instance_id: str) -> Response:
    wiring.registry().undrain(_principal(), service, instance_id)
    return Response(body=b"", status_code=204)


@route("/registry/services/{service}/policy", methods=["GET"])
def get_policy(service: str) -> Response:
    _principal()
    stored = wiring.registry().policy(service)
    return json_response(policy_answer(service, stored.policy, stored.updated_at))


@route("/registry/services/{service}/policy", methods=["PUT"])
def put_policy(service: str) -> Response:
    registry = wiring.registry()
    policy, created = registry.put_policy(_principal(), service, app.body())
    return json_response(policy_answer(service, policy, registry.now()), 201 if created else 200)


@route("/registry/services/{service}/policy", methods=["DELETE"])
def delete_policy(service: str) -> Response:
    wiring.registry().delete_policy(_principal(), service)
    return Response(body=b"", status_code=204)


@route("/registry/services/{service}/exposure", methods=["GET"])
def get_exposure(service: str) -> Response:
    _principal()
    stored = wiring.exposures().exposure(service)
    return json_response(exposure_answer(service, stored.exposure, stored.updated_at))


@route("/registry/services/{service}/exposure", methods=["PUT"])
def put_exposure(service: str) -> Response:
    exposures = wiring.exposures()
    exposure, created = exposures.put_exposure(_principal(), service, app.body())
    answer = exposure_answer(service, exposure, exposures.now())
    return json_response(answer, 201 if created else 200)


@route("/registry/services/{service}/exposure", methods=["DELETE"])
def delete_exposure(service: str) -> Response:
    wiring.exposures().delete_exposure(_principal(), service)
    return Response(body=b"", status_code=204)


@route("/registry/services/{service}/keys", methods=["GET"])
def list_keys(service: str) -> Response:
    found = wiring.exposures().keys(_principal(), service)
    return json_response({"service": service, "keys": [k.to_json() for k in found]})


@route("/registry/services/{service}/keys", methods=["POST"])
def create_key(service: str) -> Response:
    created = wiring.exposures().create_key(_principal(), service, app.body())
    return json_response({"service": service, **created.stored.to_json(), "key": created.key}, 201)


@route("/registry/services/{service}/keys/{key_id}", methods=["DELETE"])
def revoke_key(service: str, key_id: str) -> Response:
    wiring.exposures().revoke_key(_principal(), service, key_id)
    return Response(body=b"", status_code=204)


@route("/api/v1/{service}/{version}", methods=list(METHODS))
def proxy_root(service: str, version: str) -> Response:
    return _forward(service, version, "")


@route("/api/v1/{service}/{version}/{proxy+}", methods=list(METHODS))
def proxy_path(service: str, version: str) -> Response:
    return _forward(service, version, (app.request().uri_params or {}).get("proxy", ""))


def _forward(service: str, version: str, proxy: str) -> Response:
    """Forwards the path as sent when the event carries it; ``proxy`` (decoded, trailing
    slash dropped) is only the fallback."""
    if _on_console():
        raise RouteNotFound("the gateway's routes are not served on the console's domain")
    request = app.request()
    path = app.path_after_route()
    answer = wiring.gateway().forward(
        ProxyRequest(
            method=request.method,
            service=service,
            version=version,
            path=proxy if path is None else path,
            query=app.query_pairs(),
            headers=app.forwarded_headers(),
            body=app.body(),
            client_ip=request.context.get("identity", {}).get("sourceIp"),
            proto="http",
            request_id=app.request_id(),
            prefix=_route_prefix(request, service, version),
        ),
        budget=app.time_left(wiring.settings().request_timeout),
    )
    return Response(body=answer.body, headers=answer.headers, status_code=answer.status)


def _route_prefix(request: Request, service: str, version: str) -> str:
    """The client's path up to the version: the stage (or a custom domain's base path) that
    API Gateway's requestContext.path keeps, then /api/v1/{service}/{version}."""
    external = str(request.context.get("path") or "")
    stage = external.split("/api/v1/", 1)[0] if "/api/v1/" in external else ""
    return f"{stage}/api/v1/{service}/{version}"


# Eureka's REST API, under both of the paths its clients are configured with
# (``chalicelib/eureka``): existing Eureka clients register, renew and discover unchanged.


def _eureka_principal() -> Principal:
    """A token as the password of Basic credentials (a service URL's user and password), or
    as a bearer token; a 401 names Basic, which is what Eureka clients can send."""
    try:
        header = app.request().headers.get("authorization")
        return verify(wiring.signing_keys(), basic_or_bearer_token(header))
    except Unauthorized as exc:
        exc.extra_headers["WWW-Authenticate"] = 'Basic realm="lambdamesh"'
        raise


def _accept() -> str | None:
    return app.request().headers.get("accept")


def eureka_applications() -> Response:
    _eureka_principal()
    return eureka_answers.document(wiring.eureka_fetches().applications(), _accept())


def eureka_delta() -> Response:
    _eureka_principal()
    return eureka_answers.document(wiring.eureka_fetches().delta(), _accept())


def eureka_register(app_name: str) -> Response:
    principal = _eureka_principal()
    content_type = app.request().headers.get("content-type")
    wiring.eureka_leases().register(principal, app_name, app.body(), content_type)
    return eureka_answers.empty(204)


def eureka_application(app_name: str) -> Response:
    _eureka_principal()
    return eureka_answers.document(wiring.eureka_fetches().application(app_name), _accept())


def eureka_instance(app_name: str, instance_id: str) -> Response:
    _eureka_principal()
    found = wiring.eureka_fetches().instance(app_name, instance_id)
    return eureka_answers.document(found, _accept())


def eureka_renew(app_name: str, instance_id: str) -> Response:
    principal = _eureka_principal()
    dirty = app.query_param("lastDirtyTimestamp")
    wiring.eureka_leases().renew(principal, app_name, instance_id, dirty)
    return eureka_answers.empty()


def eureka_cancel(app_name: str, instance_id: str) -> Response:
    wiring.eureka_leases().cancel(_eureka_principal(), app_name, instance_id)
    return eureka_answers.empty()


def eureka_override(app_name: str, instance_id: str) -> Response:
    principal = _eureka_principal()
    wiring.eureka_leases().override(principal, app_name, instance_id, app.query_param("value"))
    return eureka_answers.empty()


def eureka_remove_override(app_name: str, instance_id: str) -> Response:
    wiring.eureka_leases().remove_override(_eureka_principal(), app_name, instance_id)
    return eureka_answers.empty()


def eureka_metadata(app_name: str, instance_id: str) -> Response:
    principal = _eureka_principal()
    values = dict(app.query_pairs())
    wiring.eureka_leases().update_metadata(principal, app_name, instance_id, values)
    return eureka_answers.empty()


def eureka_instance_anywhere(instance_id: str) -> Response:
    _eureka_principal()
    found = wiring.eureka_fetches().instance_anywhere(instance_id)
    return eureka_answers.document(found, _accept())


def eureka_vip(vip: str) -> Response:
    _eureka_principal()
    return eureka_answers.document(wiring.eureka_fetches().vip(vip, secure=False), _accept())


def eureka_secure_vip(vip: str) -> Response:
    _eureka_principal()
    return eureka_answers.document(wiring.eureka_fetches().vip(vip, secure=True), _accept())


for _prefix in eureka_paths.PREFIXES:
    _apps = f"{_prefix}/apps"
    _one = f"{_apps}/{{app_name}}/{{instance_id}}"
    route(_apps, methods=["GET"])(eureka_applications)
    route(f"{_apps}/delta", methods=["GET"])(eureka_delta)
    route(f"{_apps}/{{app_name}}", methods=["POST"])(eureka_register)
    route(f"{_apps}/{{app_name}}", methods=["GET"])(eureka_application)
    route(_one, methods=["GET"])(eureka_instance)
    route(_one, methods=["PUT"])(eureka_renew)
    route(_one, methods=["DELETE"])(eureka_cancel)
    route(f"{_one}/status", methods=["PUT"])(eureka_override)
    route(f"{_one}/status", methods=["DELETE"])(eureka_remove_override)
    route(f"{_one}/metadata", methods=["PUT"])(eureka_metadata)
    route(f"{_prefix}/instances/{{instance_id}}", methods=["GET"])(eureka_instance_anywhere)
    route(f"{_prefix}/vips/{{vip}}", methods=["GET"])(eureka_vip)
    route(f"{_prefix}/svips/{{vip}}", methods=["GET"])(eureka_secure_vip)


@app.on_event(task_events.is_task_event)
def task_state_change(event: dict[str, Any]) -> dict[str, Any]:
    """ECS's task state changes, from EventBridge: a stopping task's instances leave at once."""
    return task_events.handle(event, wiring.registry())


# Last, so it sees every route above: any other path answers 404 and any other method 405,
# in the error envelope, where API Gateway would answer 403 "Missing Authentication Token".
app.answer_unrouted()

# On Lambda, the cold start's one-time work happens now, while the function initialises.
lifecycle.initialise()
