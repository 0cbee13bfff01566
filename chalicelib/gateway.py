"""The gateway's flow: find live instances, pick one, forward, retry what is safe to retry."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple, Protocol
from urllib.parse import quote, urlencode

from chalicelib.config import Settings
from chalicelib.errors import (
    InvalidRequest,
    LambdaMeshError,
    PayloadTooLarge,
    UpstreamAnswerInvalid,
    UpstreamResponseTooLarge,
)
from chalicelib.exposure.checks import Admission, Gate, Preflighted
from chalicelib.instances import Instance, ServiceView
from chalicelib.observability import RouteRecord, logger, record_route
from chalicelib.upstream import UpstreamResponse
from lambdamesh_routing.attempts import TRY_FAILURES, failed, late, unreachable
from lambdamesh_routing.balancing import Strategies
from lambdamesh_routing.forwarding import (
    QUERY_SAFE,
    Headers,
    downstream_headers,
    quote_path,
    rewrite_redirect,
    upstream_headers,
)
from lambdamesh_routing.names import check_name
from lambdamesh_routing.outliers import Outliers
from lambdamesh_routing.policy import DEFAULT_POLICY
from lambdamesh_routing.retries import RetryBudget
from lambdamesh_routing.router import Call, Plan, Router
from lambdamesh_routing.versions import VersionChooser

Clock = Callable[[], float]


class ServiceViews(Protocol):
    """Where the gateway reads a service's instances and policy; ``discovery.Discovery`` is
    the cache that reads them from the registry's table."""

    @property
    def wall_clock(self) -> Clock: ...

    def view(self, service: str) -> ServiceView: ...


class Upstream(Protocol):
    """How one try reaches an instance; ``upstream.UpstreamClient`` is the HTTP one."""

    def send(
        self,
        method: str,
        host: str,
        port: int,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None,
        deadline: float | None = None,
        tls_service: str | None = None,
    ) -> UpstreamResponse:
        """``tls_service``: the instance takes mutual TLS, and must prove this service."""
        ...


class Edge(Protocol):
    """The checks a request passes before it is routed; ``exposure.checks.Gate`` applies a
    service's exposure document."""

    def admit(
        self,
        view: ServiceView,
        service: str,
        version: str,
        method: str,
        headers: Mapping[str, str],
        client_ip: str | None,
        path: str = "",
    ) -> Admission | Preflighted: ...


class ProxyRequest(NamedTuple):
    """A request to route, as the edge read it (a named tuple: one is made per request)."""

    method: str
    service: str
    version: str
    path: str
    query: Sequence[tuple[str, str]] = ()
    headers: Mapping[str, str] = MappingProxyType({})
    body: bytes = b""
    client_ip: str | None = None
    proto: str = "https"
    request_id: str = ""
    # What the client's URL holds before the upstream path (the stage, then
    # /api/v1/{service}/{version}); redirects are rewritten under it when the policy asks.
    prefix: str = ""

    @property
    def route_prefix(self) -> str:
        return self.prefix or f"/api/v1/{self.service}/{self.version}"

    @property
    def target(self) -> str:
        """The upstream request target: the same path and query the client sent."""
        # One leading "/" is the separator after the version; any more are the client's own
        # (empty segments), kept as sent.
        path = "/" + quote_path(self.path.removeprefix("/"))
        if not self.query:
            return path
        return f"{path}?{urlencode(self.query, safe=QUERY_SAFE, quote_via=quote)}"


class ProxyResponse(NamedTuple):
    status: int
    headers: Headers
    body: bytes


class _Outcome(NamedTuple):
    """One try's end: an answer or an error (the plan knows whether another may follow)."""

    answer: ProxyResponse | None = None
    error: LambdaMeshError | None = None


class Gateway:
    def __init__(
        self,
        discovery: ServiceViews,
        strategies: Strategies,
        client: Upstream,
        max_attempts: int = Settings.max_attempts,
        max_request_body: int = Settings.max_request_body,
        eject_seconds: float = Settings.eject_seconds,
        clock: Clock = time.monotonic,
        versions: VersionChooser | None = None,
        outliers: Outliers | None = None,
        retry_budget: RetryBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        record: Callable[[RouteRecord], None] = record_route,
        gate: Edge | None = None,
    ) -> None:
        self._discovery = discovery
        # Without one, every service is served as before exposure documents existed.
        self._gate: Edge = gate or Gate(default_open=True)
        self._client = client
        self._max_request_body = max_request_body
        self._clock = clock
        self._router = Router(
            strategies,
            versions,
            outliers or Outliers(clock),
            retry_budget,
            max_attempts=max_attempts,
            eject_seconds=eject_seconds,
            clock=clock,
            wall_clock=discovery.wall_clock,
            sleep=sleep,
            rng=rng,
        )
        self._record = record

    def forward(self, request: ProxyRequest, budget: float = 25.0) -> ProxyResponse:
        """Forward within ``budget`` seconds in all (less if the policy says so), retries
        included, so that the caller gets our 504 rather than API Gateway's or a Lambda
        timeout's."""
        check_name("service", request.service)
        check_name("version", request.version)
        if len(request.body) > self._max_request_body:
            raise PayloadTooLarge(
                f"request body is {len(request.body)} bytes; the limit is {self._max_request_body}"
            )
        view = self._discovery.view(request.service)
        admitted = self._gate.admit(
            view,
            request.service,
            request.version,
            request.method,
            request.headers,
            request.client_ip,
            request.path,
        )
        if isinstance(admitted, Preflighted):
            return ProxyResponse(204, dict(admitted.headers), b"")
        _check_header_text(admitted.headers)
        try:
            response = self._route(request, admitted, view, budget)
        except LambdaMeshError as exc:
            # A page of an allowed origin may read why its call failed.
            exc.extra_headers.update(admitted.answer_headers)
            raise
        if admitted.owns_cors:
            for name in [k for k in response.headers if k.lower().startswith(CORS_PREFIX)]:
                del response.headers[name]
        _add_answer_headers(response.headers, admitted.answer_headers)
        return response

    def _route(
        self, request: ProxyRequest, admitted: Admission, view: ServiceView, budget: float
    ) -> ProxyResponse:
        """Route with the headers the edge let through (``admitted``) in place of the
        request's own."""
        call = Call(
            request.service, request.version, request.method, admitted.headers, request.client_ip
        )
        version = self._router.resolve(call, view.policy or DEFAULT_POLICY)
        record = RouteRecord(*_dimensions(view, request.service, version))
        try:
            plan = self._router.plan(call, view, budget, version=version)
            if plan.panic:
                record.panic = True
                logger.warning(
                    "panic mode: routing over every live instance",
                    extra={"service": request.service, "version": version, "live": len(plan.live)},
                )
            response = self._attempts(request, admitted, plan, record)
            record.status = response.status
            return response
        except LambdaMeshError as exc:
            record.status = exc.status
            raise
        finally:
            self._record(record)

    def _attempts(
        self, request: ProxyRequest, admitted: Admission, plan: Plan, record: RouteRecord
    ) -> ProxyResponse:
        headers = upstream_headers(
            admitted.headers,
            client_ip=request.client_ip,
            proto=request.proto,
            request_id=request.request_id,
        )
        # The headers the gateway vouches for (the caller's consumer, a token's claims): set
        # after the hop-by-hop rules, so no header of the client's can remove or replace them.
        headers.update(admitted.vouched)
        last: _Outcome | None = None
        try:
            for instance in plan:
                last = self._attempt(request, instance, headers, plan, record)
        finally:
            record.retries = plan.retries
            record.ejections = plan.ejections
        return _settle(plan.call, last, plan.late and not plan.sent)

    def _attempt(
        self,
        request: ProxyRequest,
        instance: Instance,
        headers: Mapping[str, str],
        plan: Plan,
        record: RouteRecord,
    ) -> _Outcome:
        started = self._clock()
        until = plan.try_deadline()
        plan.started(instance)
        try:
            answer = self._client.send(
                request.method,
                instance.host,
                instance.port,
                request.target,
                headers,
                request.body or None,
                deadline=until,
                tls_service=instance.service if instance.tls else None,
            )
        except TRY_FAILURES as exc:
            _log_failure(request, instance, exc)
            outcome = failed(plan, instance, exc, "the gateway")
            _log_ejection(request, instance, outcome.ejected_seconds)
            return _Outcome(error=_public(outcome.error, request))
        finally:
            plan.finished(instance)
        record.upstream_ms = round((self._clock() - started) * 1000, 3)
        _log_ejection(request, instance, plan.answered(instance, answer.status))
        downstream = downstream_headers(
            answer.headers, request.request_id, head=request.method == "HEAD"
        )
        if plan.policy.rewrite_redirects and 300 <= answer.status < 400:
            rewrite_redirect(downstream, request.route_prefix, instance.host, instance.port)
        return _Outcome(answer=ProxyResponse(answer.status, downstream, answer.body))


def _log_ejection(request: ProxyRequest, instance: Instance, seconds: float) -> None:
    if seconds:
        logger.warning(
            "outlier ejected",
            extra={
                "request_id": request.request_id,
                "service": instance.service,
                "instance_id": instance.instance_id,
                "seconds": seconds,
            },
        )


def _settle(call: Call, last: _Outcome | None, late_unsent: bool) -> ProxyResponse:
    """The last attempt's answer, or its error: a retryable answer (a 503, say) that could not
    be retried goes back as the upstream gave it. No attempt at all: unreachable, or late."""
    if last is not None and last.answer is not None:
        return last.answer
    if late_unsent:
        raise late(call)
    if last is None:
        raise unreachable(call)
    assert last.error is not None
    raise last.error


# Anonymous callers learn which service failed and how, never an instance's address: the
# errors that end a request carry the upstream client's words, which name it.
_PUBLIC_MESSAGES: dict[type[LambdaMeshError], str] = {
    UpstreamResponseTooLarge: "{r.service} {r.version} answered with more than the gateway "
    "may return",
    UpstreamAnswerInvalid: "{r.service} {r.version} answered with header fields the gateway "
    "may not pass on",
}


def _public(exc: LambdaMeshError, request: ProxyRequest) -> LambdaMeshError:
    """The same error, its message the public one for its kind where the upstream client's
    would name the instance."""
    message = _PUBLIC_MESSAGES.get(type(exc))
    return exc if message is None else type(exc)(message.format(r=request))


# Text HTTP/1.1 cannot carry in a header (RFC 9110 section 5.5: field values are octets,
# ISO-8859-1 at most): an event's header may hold more, which no upstream could be sent.
_BEYOND_LATIN_1 = re.compile(r"[^\x00-\xff]")


def _check_header_text(headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        if name.isascii() and value.isascii():
            continue
        if _BEYOND_LATIN_1.search(name) or _BEYOND_LATIN_1.search(value):
            raise InvalidRequest(
                f"header {name[:64]!r} holds characters HTTP cannot carry upstream (beyond "
                "ISO-8859-1): percent-encode them, or send them in the body"
            )


# What metrics name a service or version the registry does not hold: a client's made-up
# names must not become dimensions, each a custom metric of its own.
UNKNOWN = "unknown"


def _dimensions(view: ServiceView, service: str, version: str) -> tuple[str, str]:
    """The upstream and version a routed request's metrics carry: as requested where the
    registry holds them, else UNKNOWN."""
    if not view.instances:
        return UNKNOWN, UNKNOWN
    held = {instance.version for instance in view.instances}
    return service, version if version in held else UNKNOWN


# The CORS fields of an answer (Fetch standard): the gateway's alone where a service's exposure
# sets CORS rules.
CORS_PREFIX = "access-control-"


def _add_answer_headers(headers: Headers, added: Mapping[str, str]) -> None:
    """The edge's fields on an upstream's answer: the gateway's replace the upstream's of the
    same name, except ``Vary``, whose values add up (a cache must key on both)."""
    for name, value in added.items():
        same = [k for k in headers if k.lower() == name.lower()]
        kept = [headers.pop(k) for k in same]
        if name.lower() == "vary" and kept:
            values = [v for item in kept for v in (item if isinstance(item, list) else [item])]
            value = ", ".join([*values, value])
        headers[name] = value


def _log_failure(request: ProxyRequest, instance: Instance, exc: LambdaMeshError) -> None:
    logger.warning(
        "upstream failed",
        extra={
            "request_id": request.request_id,
            "service": request.service,
            "instance_id": instance.instance_id,
            "error_code": exc.code,
            "reason": exc.message,
        },
    )
