"""The registry's HTTP contract, seen from one instance: register, heartbeat, deregister.

Every answer is turned into success or one of three typed errors right here, because the
runner's decisions depend only on those: ``NotRegistered`` means register again now,
``Unavailable`` means back off and retry, ``Rejected`` means a person must fix something.
The wire itself sits behind a ``Transport`` so those mappings are testable without a socket.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from lambdamesh_sidecar import __version__
from lambdamesh_sidecar.logs import LOGGER_NAME

USER_AGENT = f"lambdamesh-sidecar/{__version__}"
_MAX_RESPONSE_BYTES = 64 * 1024
# A routing view lists every stored instance of a service (a few hundred bytes each).
MAX_VIEW_BYTES = 4 * 1024 * 1024
# Throttling and "try later" answers are the registry being busy, not the request being wrong.
_TRANSIENT_4XX = frozenset({408, 425, 429})
# Answers that would send the client elsewhere (a 304 is no redirect: it answers If-None-Match).
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Server errors that name a misconfiguration of the deployment: waiting will not cure them, so
# they are refusals (the slow backoff, logged as such), not outages to retry at full pace.
_MISCONFIGURED = frozenset(
    {
        "registry_misconfigured",
        "config_error",
        "gateway_misconfigured",
        "mesh_ca_not_configured",
        "mesh_ca_invalid",
    }
)


class RegistryError(Exception):
    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class NotRegistered(RegistryError):
    """404 on heartbeat: the lease lapsed or someone deregistered this instance."""


class Rejected(RegistryError):
    """A 4xx that retrying will not fix: bad token, forbidden host, invalid body, wrong URL."""


class Unavailable(RegistryError):
    """5xx, throttling, timeout or no connection: the registry may answer later."""


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)  # carries the bearer token
    body: bytes | None
    timeout: float
    max_bytes: int = _MAX_RESPONSE_BYTES


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


Transport = Callable[[Request], Response]


class UrllibTransport:
    """Sends one request and hands back any HTTP status; only the network failing raises.

    ``urllib`` honours ``HTTPS_PROXY``/``NO_PROXY`` (or ``proxies``, when given), which a VPC
    with an egress proxy needs. It never follows a redirect: urllib's would send the bearer
    token on to whatever host the ``Location`` names, and the registry API never redirects,
    so a 3xx comes back as it is (a ``Rejected``, see ``_failure``).
    """

    def __init__(self, proxies: Mapping[str, str] | None = None) -> None:
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler(None if proxies is None else dict(proxies)),
            _NoRedirects(),
        )

    def __call__(self, request: Request) -> Response:
        # RegistryClient only builds http(s) URLs, so no file: or custom scheme can get here.
        outgoing = urllib.request.Request(  # noqa: S310
            request.url, data=request.body, headers=dict(request.headers), method=request.method
        )
        try:
            with self._opener.open(outgoing, timeout=request.timeout) as answer:
                body = answer.read(request.max_bytes)
                return Response(answer.status, body, dict(answer.headers.items()))
        except urllib.error.HTTPError as exc:
            with exc:
                return Response(exc.code, _read_quietly(exc), dict(exc.headers.items()))
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            detail = _one_line(str(reason)) or type(exc).__name__
            raise Unavailable(f"{request.method} {request.url} failed: {detail}") from exc


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """In place of urllib's redirect handler: a redirect is answered as it came."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _read_quietly(error: urllib.error.HTTPError) -> bytes:
    try:
        return error.read(_MAX_RESPONSE_BYTES)
    except (OSError, http.client.HTTPException):
        return b""


@dataclass(frozen=True)
class Registration:
    version: str
    host: str
    port: int
    lease_seconds: int
    weight: int | None = None
    zone: str | None = None
    metadata: Mapping[str, str] | None = None
    status: str = "UP"
    task_arn: str | None = None
    # The port is the sidecar's inbound port: callers speak mutual TLS to it.
    tls: bool = False

    def body(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "version": self.version,
            "host": self.host,
            "port": self.port,
            "lease_seconds": self.lease_seconds,
            "status": self.status,
        }
        if self.weight is not None:
            document["weight"] = self.weight
        if self.zone is not None:
            document["zone"] = self.zone
        if self.metadata is not None:
            document["metadata"] = dict(self.metadata)
        if self.task_arn is not None:
            document["task_arn"] = self.task_arn
        if self.tls:
            document["tls"] = True
        return document


@dataclass(frozen=True)
class ViewAnswer:
    """A routing view as read: the document (None when unchanged, a 304) and its ETag."""

    document: Any
    etag: str | None

    @property
    def unchanged(self) -> bool:
        return self.document is None


class RegistryClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        service: str,
        instance_id: str,
        timeout: float = 5.0,
        transport: Transport | None = None,
        user_agent: str = USER_AGENT,
        figures: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """``figures``: what each heartbeat reports of the calls through the ports
        (``metrics.CallMetrics.window``)."""
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"registry URL must be http(s), got {base_url[:200]!r}")
        self._services_url = f"{base_url.rstrip('/')}/registry/services"
        self._instance_url = (
            f"{self._services_url}/{quote(service, safe='')}"
            f"/instances/{quote(instance_id, safe='')}"
        )
        self._certificate_url = f"{self._services_url}/{quote(service, safe='')}/certificate"
        self._timeout = timeout
        self._figures = figures
        self._transport = transport or UrllibTransport()
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": user_agent,
        }

    def register(self, registration: Registration) -> dict[str, Any]:
        """Create or replace this instance; returns the registry's stored copy."""
        response = self._send("PUT", self._instance_url, registration.body())
        if not 200 <= response.status < 300:
            raise _failure(response)
        return _json_object(response.body)

    def heartbeat(self, status: str) -> None:
        """Renew the lease, reporting ``status`` and, when a figures source was given, the
        calls since the last heartbeat. A registry that refuses the figures (one older than
        them answers 400) is sent none again: the lease matters, the figures do not."""
        body: dict[str, Any] = {"status": status}
        if self._figures is not None:
            body["figures"] = self._figures()
        response = self._send("PUT", f"{self._instance_url}/heartbeat", body)
        if response.status == 400 and "figures" in body:
            self._figures = None
            logging.getLogger(LOGGER_NAME).warning(
                "the registry refused this sidecar's figures; heartbeats carry none from now on"
            )
            response = self._send("PUT", f"{self._instance_url}/heartbeat", {"status": status})
        if 200 <= response.status < 300:
            return
        if response.status == 404:
            code, message = _detail(response)
            raise NotRegistered(message, status=404, code=code)
        raise _failure(response)

    def deregister(self, timeout: float | None = None) -> None:
        """Idempotent: a 404 means the instance is already gone, which is the goal."""
        response = self._send("DELETE", self._instance_url, None, timeout)
        if response.status != 404 and not 200 <= response.status < 300:
            raise _failure(response)

    def routing_view(self, service: str, etag: str | None = None) -> ViewAnswer:
        """What routing reads of ``service`` (any valid token may read it); with ``etag``,
        a conditional read that costs no body when nothing changed."""
        headers = dict(self._headers)
        if etag is not None:
            headers["If-None-Match"] = etag
        url = f"{self._services_url}/{quote(service, safe='')}/routing"
        response = self._transport(
            Request("GET", url, headers, None, self._timeout, max_bytes=MAX_VIEW_BYTES)
        )
        tag = {k.lower(): v for k, v in response.headers.items()}.get("etag")
        if response.status == 304 and etag is not None:
            return ViewAnswer(None, tag or etag)
        if response.status != 200:
            raise _failure(response)
        try:
            return ViewAnswer(json.loads(response.body), tag)
        except ValueError:
            raise Unavailable("the routing view is not JSON", status=200) from None

    def certificate(self) -> dict[str, Any]:
        """A new certificate for this service, with its key and the mesh's trust bundle
        (``POST /registry/services/{service}/certificate``)."""
        response = self._send("POST", self._certificate_url, None)
        if response.status != 200:
            raise _failure(response)
        return _json_object(response.body)

    def _send(self, method: str, url: str, document: Any, timeout: float | None = None) -> Response:
        body = None if document is None else json.dumps(document).encode()
        return self._transport(
            Request(method, url, self._headers, body, self._timeout if timeout is None else timeout)
        )


def _failure(response: Response) -> RegistryError:
    if response.status in _REDIRECTS:
        location = {k.lower(): v for k, v in response.headers.items()}.get("location", "")
        return Rejected(
            f"the registry URL answered {response.status}, a redirect to "
            f"{_one_line(location) or 'nowhere'}, which is never followed (it would take the "
            "token elsewhere): set LAMBDAMESH_URL to the registry API's own address",
            status=response.status,
            code="registry_redirected",
        )
    code, message = _detail(response)
    transient = response.status >= 500 or response.status in _TRANSIENT_4XX
    if transient and code not in _MISCONFIGURED:
        return Unavailable(message, status=response.status, code=code)
    return Rejected(message, status=response.status, code=code)


def _detail(response: Response) -> tuple[str, str]:
    """The ``{"error": {"code", "message"}}`` envelope, or a readable stand-in for a proxy page."""
    fallback = f"http_{response.status}"
    try:
        error = json.loads(response.body).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        return str(error.get("code") or fallback), _one_line(str(error.get("message") or ""))
    text = response.body.decode("utf-8", "replace")
    return fallback, _one_line(text) or f"HTTP {response.status}"


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."
