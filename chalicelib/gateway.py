"""The gateway's flow: find live instances, pick one, forward, retry what is safe to retry."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from chalicelib.balancing import Strategies
from chalicelib.config import Settings
from chalicelib.discovery import Discovery
from chalicelib.errors import (
    HostNotAllowed,
    LambdaMeshError,
    PayloadTooLarge,
    UpstreamResponseTooLarge,
    UpstreamTimeout,
    UpstreamUnreachable,
    VersionNotFound,
)
from chalicelib.forwarding import (
    Headers,
    downstream_headers,
    rewrite_location,
    upstream_headers,
)
from chalicelib.instances import Instance
from chalicelib.observability import RouteRecord, logger, record_route
from chalicelib.outliers import Outliers
from chalicelib.policy import HashOn, OutlierDetection, Policy
from chalicelib.retries import (
    RETRYABLE_STATUSES,
    RetryBudget,
    backoff_seconds,
    may_retry_after_sending,
)
from chalicelib.upstream import ConnectFailed, UpstreamClient, host_header
from chalicelib.validation import check_name
from chalicelib.versions import VersionChooser

# Characters a path segment may carry unescaped (RFC 3986 pchar), plus the separator.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
# In a query key or value: pchar and "/" and "?", less the delimiters "&", "=" and "+".
_QUERY_SAFE = "/?:@!$'()*,;-._~"
Clock = Callable[[], float]


_ESCAPE = re.compile(r"(%[0-9A-Fa-f]{2})")


def _quote_path(path: str) -> str:
    """Quote what needs quoting, keeping escapes the client already made (``%2F`` stays a
    character of a segment, not a separator); a stray ``%`` becomes ``%25``."""
    return "".join(
        part if _ESCAPE.fullmatch(part) else quote(part, safe=_PATH_SAFE)
        for part in _ESCAPE.split(path)
    )


@dataclass(frozen=True)
class ProxyRequest:
    method: str
    service: str
    version: str
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
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
        path = "/" + _quote_path(self.path.removeprefix("/"))
        if not self.query:
            return path
        return f"{path}?{urlencode(self.query, safe=_QUERY_SAFE, quote_via=quote)}"


@dataclass(frozen=True)
class ProxyResponse:
    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class _Route:
    """One request's route once its version is known: the live instances, those offered
    (all of them in panic mode), its deadline, and what it did so far."""

    version: str
    live: list[Instance]
    offered: list[Instance]
    deadline: float
    record: RouteRecord


@dataclass(frozen=True)
class _Outcome:
    """One attempt's end: an answer or an error, whether anything reached the upstream, and
    whether another instance may be tried."""

    answer: ProxyResponse | None = None
    error: LambdaMeshError | None = None
    sent: bool = True
    retryable: bool = False


class Gateway:
    def __init__(
        self,
        discovery: Discovery,
        strategies: Strategies,
        client: UpstreamClient,
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
    ) -> None:
        self._discovery = discovery
        self._strategies = strategies
        self._client = client
        self._max_attempts = max_attempts
        self._max_request_body = max_request_body
        self._eject_seconds = eject_seconds
        self._clock = clock
        self._versions = versions or VersionChooser()
        self._outliers = outliers or Outliers(clock)
        self._retry_budget = retry_budget or RetryBudget()
        self._sleep = sleep
        self._rng = rng or random.Random()  # jitter only: no secrets drawn
        self._record = record

    def forward(self, request: ProxyRequest, budget: float = 27.0) -> ProxyResponse:
        """Forward within ``budget`` seconds in all (less if the policy says so), retries
        included, so that the caller gets our 504 rather than API Gateway's or a Lambda
        timeout's."""
        check_name("service", request.service)
        check_name("version", request.version)
        if len(request.body) > self._max_request_body:
            raise PayloadTooLarge(
                f"request body is {len(request.body)} bytes; the limit is {self._max_request_body}"
            )
        policy = self._discovery.policy(request.service)
        total = policy.timeouts.total_seconds
        deadline = self._clock() + (budget if total is None else min(budget, total))
        version = self._versions.resolve(request.version, policy, request.headers)
        record = RouteRecord(request.service, version)
        try:
            live = self._routable(request, version)
            selection = self._outliers.select(live, policy.panic_threshold_percent)
            if selection.panic:
                record.panic = True
                logger.warning(
                    "panic mode: routing over every live instance",
                    extra={"service": request.service, "version": version, "live": len(live)},
                )
            self._retry_budget.deposit(request.service, policy.retries.budget_percent)
            response = self._attempts(
                request, policy, _Route(version, live, selection.instances, deadline, record)
            )
            record.status = response.status
            return response
        except LambdaMeshError as exc:
            record.status = exc.status
            raise
        finally:
            self._record(record)

    def _attempts(self, request: ProxyRequest, policy: Policy, route: _Route) -> ProxyResponse:
        balancer = self._strategies.named(policy.strategy)
        key = hash_key(policy.hash_on, request)
        headers = upstream_headers(
            request.headers,
            client_ip=request.client_ip,
            proto=request.proto,
            request_id=request.request_id,
        )
        attempts = policy.retries.max_attempts or self._max_attempts
        tried: set[str] = set()
        last = _Outcome(error=_unreachable(request), sent=False)
        retries = 0
        pool = f"{request.service}/{route.version}"
        instance = balancer.choose(pool, route.offered, exclude=tried, key=key)
        while instance is not None and self._clock() < route.deadline:
            tried.add(instance.instance_id)
            route.record.retries = len(tried) - 1
            last = self._attempt(request, instance, headers, policy, route)
            if not last.retryable or len(tried) >= attempts:
                break
            instance = balancer.choose(pool, route.offered, exclude=tried, key=key)
            if instance is None:
                break
            if last.sent:
                # Another try after sending adds load: the budget decides, and it waits first.
                if not self._retry_budget.withdraw(request.service):
                    break
                retries += 1
                self._pause(retries, policy, route.deadline)
        return _settle(request, last, self._clock() >= route.deadline)

    def _attempt(
        self,
        request: ProxyRequest,
        instance: Instance,
        headers: Mapping[str, str],
        policy: Policy,
        route: _Route,
    ) -> _Outcome:
        per_try = policy.timeouts.per_try_seconds
        started = self._clock()
        until = route.deadline if per_try is None else min(route.deadline, started + per_try)
        rules = policy.outlier_detection
        self._strategies.in_flight.started(instance)
        try:
            answer = self._client.send(
                request.method,
                instance.host,
                instance.port,
                request.target,
                headers,
                request.body or None,
                deadline=until,
            )
        except (ConnectFailed, HostNotAllowed) as exc:
            _log_failure(request, instance, exc)
            self._outliers.eject_for(instance, self._eject_seconds)
            route.record.ejections += 1
            return _Outcome(error=_unreachable(request), sent=False, retryable=True)
        except UpstreamUnreachable as exc:
            _log_failure(request, instance, exc)
            self._eject_if_outlier(request, instance, rules, route)
            return _Outcome(
                error=_unreachable(request), retryable=may_retry_after_sending(request.method)
            )
        except (UpstreamTimeout, UpstreamResponseTooLarge) as exc:
            _log_failure(request, instance, exc)
            if isinstance(exc, UpstreamTimeout):
                self._eject_if_outlier(request, instance, rules, route)
            return _Outcome(error=type(exc)(_PUBLIC_MESSAGES[type(exc)].format(r=request)))
        finally:
            self._strategies.in_flight.finished(instance)
        route.record.upstream_ms = round((self._clock() - started) * 1000, 3)
        if answer.status >= 500:
            self._eject_if_outlier(request, instance, rules, route)
        else:
            self._outliers.succeeded(instance, rules)
        downstream = downstream_headers(
            answer.headers, request.request_id, head=request.method == "HEAD"
        )
        if policy.rewrite_redirects and 300 <= answer.status < 400:
            bare = host_header(instance.host, 80)  # bracketed if IPv6, no port
            upstream = (host_header(instance.host, instance.port), f"{bare}:{instance.port}")
            _rewrite_redirect(downstream, request.route_prefix, upstream)
        response = ProxyResponse(answer.status, downstream, answer.body)
        retryable = answer.status in RETRYABLE_STATUSES and may_retry_after_sending(request.method)
        return _Outcome(answer=response, retryable=retryable)

    def _eject_if_outlier(
        self,
        request: ProxyRequest,
        instance: Instance,
        rules: OutlierDetection,
        route: _Route,
    ) -> None:
        seconds = self._outliers.failed(instance, rules, route.live)
        if seconds:
            route.record.ejections += 1
            logger.warning(
                "outlier ejected",
                extra={
                    "request_id": request.request_id,
                    "service": instance.service,
                    "instance_id": instance.instance_id,
                    "seconds": seconds,
                },
            )

    def _pause(self, retry: int, policy: Policy, deadline: float) -> None:
        retries = policy.retries
        wait = backoff_seconds(retry, retries.backoff_base_ms, retries.backoff_max_ms, self._rng)
        self._sleep(max(0.0, min(wait, deadline - self._clock())))

    def _routable(self, request: ProxyRequest, version: str) -> list[Instance]:
        try:
            return self._discovery.routable(request.service, version)
        except VersionNotFound as exc:
            if version == request.version:
                raise
            raise VersionNotFound(f"{exc.message} (alias {request.version!r})") from None


def _rewrite_redirect(headers: Headers, prefix: str, upstream: tuple[str, ...]) -> None:
    for name, value in headers.items():
        if name.lower() != "location":
            continue
        if isinstance(value, str):
            headers[name] = rewrite_location(value, prefix, upstream)
        else:
            headers[name] = [rewrite_location(v, prefix, upstream) for v in value]


def _settle(request: ProxyRequest, last: _Outcome, late: bool) -> ProxyResponse:
    """The last attempt's answer, or its error: a retryable answer (a 503, say) that could not
    be retried goes back as the upstream gave it."""
    if last.answer is not None:
        return last.answer
    if late and not last.sent:
        raise UpstreamTimeout(_PUBLIC_MESSAGES[UpstreamTimeout].format(r=request))
    assert last.error is not None
    raise last.error


def hash_key(hash_on: HashOn | None, request: ProxyRequest) -> str | None:
    """The request's consistent-hashing key, or None when it does not carry one."""
    if hash_on is None:
        return None
    if hash_on.client_ip:
        return request.client_ip
    headers = {name.lower(): value for name, value in request.headers.items()}
    if hash_on.header is not None:
        return headers.get(hash_on.header)
    return cookie_value(headers.get("cookie", ""), hash_on.cookie or "")


def cookie_value(header: str, name: str) -> str | None:
    """The first cookie called ``name`` in a ``Cookie`` header, read leniently: one cookie a
    strict parser would refuse must not hide the others."""
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key.strip() == name:
            return value.strip().strip('"')
    return None


# Anonymous callers learn which service failed and how, never an instance's address.
_PUBLIC_MESSAGES: dict[type[LambdaMeshError], str] = {
    UpstreamTimeout: "{r.service} {r.version} did not answer in time",
    UpstreamResponseTooLarge: "{r.service} {r.version} answered with more than the gateway "
    "may return",
}


def _unreachable(request: ProxyRequest) -> UpstreamUnreachable:
    return UpstreamUnreachable(
        f"no instance of {request.service} {request.version} could be reached"
    )


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
