"""The gateway's flow: find live instances, pick one, forward, retry what is safe to retry."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
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
from chalicelib.forwarding import Headers, downstream_headers, upstream_headers
from chalicelib.instances import Instance
from chalicelib.observability import logger
from chalicelib.policy import HashOn
from chalicelib.upstream import ConnectFailed, UpstreamClient
from chalicelib.validation import check_name
from chalicelib.versions import VersionChooser

# Characters a path segment may carry unescaped (RFC 3986 pchar), plus the separator.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
# In a query key or value: pchar and "/" and "?", less the delimiters "&", "=" and "+".
_QUERY_SAFE = "/?:@!$'()*,;-._~"
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
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


class Gateway:
    def __init__(
        self,
        discovery: Discovery,
        strategies: Strategies,
        client: UpstreamClient,
        max_attempts: int = Settings.max_attempts,
        max_request_body: int = Settings.max_request_body,
        clock: Clock = time.monotonic,
        versions: VersionChooser | None = None,
    ) -> None:
        self._discovery = discovery
        self._versions = versions or VersionChooser()
        self._strategies = strategies
        self._client = client
        self._max_attempts = max_attempts
        self._max_request_body = max_request_body
        self._clock = clock

    def forward(self, request: ProxyRequest, budget: float = 27.0) -> ProxyResponse:
        """Forward within ``budget`` seconds in all, retries included, so that the caller
        gets our 504 rather than API Gateway's or a Lambda timeout's."""
        deadline = self._clock() + budget
        check_name("service", request.service)
        check_name("version", request.version)
        if len(request.body) > self._max_request_body:
            raise PayloadTooLarge(
                f"request body is {len(request.body)} bytes; the limit is {self._max_request_body}"
            )
        policy = self._discovery.policy(request.service)
        version = self._versions.resolve(request.version, policy, request.headers)
        instances = self._routable(request, version)
        pool = f"{request.service}/{version}"
        balancer = self._strategies.named(policy.strategy)
        key = hash_key(policy.hash_on, request)
        headers = upstream_headers(
            request.headers,
            client_ip=request.client_ip,
            proto=request.proto,
            request_id=request.request_id,
        )
        tried: set[str] = set()
        for _ in range(self._max_attempts):
            instance = balancer.choose(pool, instances, exclude=tried, key=key)
            if instance is None or self._clock() >= deadline:
                break
            tried.add(instance.instance_id)
            self._strategies.in_flight.started(instance)
            try:
                answer = self._client.send(
                    request.method,
                    instance.host,
                    instance.port,
                    request.target,
                    headers,
                    request.body or None,
                    deadline=deadline,
                )
            except (ConnectFailed, HostNotAllowed) as exc:
                _log_failure(request, instance, exc)
                self._discovery.eject(instance)
                continue
            except UpstreamUnreachable as exc:
                _log_failure(request, instance, exc)
                if request.method not in IDEMPOTENT:
                    raise _unreachable(request) from None
                continue
            except (UpstreamTimeout, UpstreamResponseTooLarge) as exc:
                _log_failure(request, instance, exc)
                raise type(exc)(_PUBLIC_MESSAGES[type(exc)].format(r=request)) from None
            finally:
                self._strategies.in_flight.finished(instance)
            return ProxyResponse(
                answer.status,
                downstream_headers(
                    answer.headers, request.request_id, head=request.method == "HEAD"
                ),
                answer.body,
            )
        if self._clock() >= deadline:
            raise UpstreamTimeout(_PUBLIC_MESSAGES[UpstreamTimeout].format(r=request))
        raise _unreachable(request)

    def _routable(self, request: ProxyRequest, version: str) -> list[Instance]:
        try:
            return self._discovery.routable(request.service, version)
        except VersionNotFound as exc:
            if version == request.version:
                raise
            raise VersionNotFound(f"{exc.message} (alias {request.version!r})") from None


def hash_key(hash_on: HashOn | None, request: ProxyRequest) -> str | None:
    """The request's consistent-hashing key, or None when it does not carry one."""
    if hash_on is None:
        return None
    if hash_on.client_ip:
        return request.client_ip
    headers = {name.lower(): value for name, value in request.headers.items()}
    if hash_on.header is not None:
        return headers.get(hash_on.header)
    jar = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:
        return None
    morsel = jar.get(hash_on.cookie or "")
    return None if morsel is None else morsel.value


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
