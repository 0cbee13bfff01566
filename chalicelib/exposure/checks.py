"""The gateway's edge: which requests from the internet reach a service, in one flow.

For each request, in this order: is the service (and this version) exposed at all, else the
answer an unknown name gets; a CORS preflight, answered here; the client's address; who the
caller is (an API key, or nothing for a public service); the rate limits. Each decision is a
plain function of its own module over the service's exposure document, which came with the
service's one cached read. What passes goes upstream with the caller's identity in headers the
client cannot forge, and the answer gets the CORS and rate limit fields.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

from chalicelib.errors import (
    AddressNotAllowed,
    CorsNotAllowed,
    GatewayMisconfigured,
    InvalidToken,
    LambdaMeshError,
    NoCredentials,
    RateLimited,
)
from chalicelib.exposure.document import CLOSED, OPEN, Exposure
from chalicelib.exposure.keys import ApiKey, authenticate, carries_key, presented_key
from chalicelib.exposure.view import GatewayView
from chalicelib.observability import logger
from lambdamesh_routing.forwarding import field_name
from lambdamesh_routing.instances import ServiceView
from lambdamesh_routing.router import no_such_service, no_such_version

if TYPE_CHECKING:
    from chalicelib.exposure.global_limits import Counter, GlobalLimits
    from chalicelib.exposure.jwks import JwksCache
    from chalicelib.exposure.jwt_rules import JwtRules
    from chalicelib.exposure.limits import TokenBuckets
    from chalicelib.exposure.tokens import Identity, VerifiedTokens

Clock = Callable[[], float]
# The consumer a key belongs to, as the upstream learns it; any copy from the client is
# removed first, so an upstream can trust it.
CONSUMER_HEADER = "X-Lambdamesh-Consumer"
# The headers only the gateway writes, where the service takes no tokens.
_CONSUMER_ONLY = frozenset({field_name(CONSUMER_HEADER)})
# A key's last use is written at most this often per key and Lambda container.
KEY_USE_PERIOD_SECONDS = 300.0


class Admission(NamedTuple):
    """A request let in: the client's headers as they may go upstream (the ones the gateway
    vouches for removed, in any spelling), the headers it vouches for (the caller's
    consumer, a token's claims: added after the hop-by-hop rules, so no client's
    ``Connection`` can remove them), and what the answer adds."""

    headers: dict[str, str]
    vouched: Mapping[str, str] = MappingProxyType({})
    answer_headers: Mapping[str, str] = MappingProxyType({})
    # The service's CORS is the gateway's: an upstream's own Access-Control-* fields are
    # dropped from its answers, so its rules cannot widen the document's.
    owns_cors: bool = False


class Preflighted(NamedTuple):
    """A CORS preflight, answered by the gateway itself."""

    headers: dict[str, str]


class KeyUse:
    """When each key was last used, written back at most once per ``period`` per key from
    this container, never once per request. A failed write is logged and forgotten: a
    request never fails for it."""

    def __init__(
        self,
        write: Callable[[str, str, float, float], None],
        clock: Clock = time.time,
        period: float = KEY_USE_PERIOD_SECONDS,
    ) -> None:
        self._write = write
        self._clock = clock
        self._period = period
        self._written: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def used(self, service: str, key: ApiKey) -> None:
        now = self._clock()
        slot = (service, key.key_id)
        with self._lock:
            if now - self._written.get(slot, -self._period) < self._period:
                return
            self._written[slot] = now
        try:
            self._write(service, key.key_id, now, now - self._period)
        except LambdaMeshError as exc:
            logger.warning(
                "key use not recorded", extra={"service": service, "reason": exc.message}
            )


class Gate:
    def __init__(
        self,
        default_open: bool = False,
        buckets: TokenBuckets | None = None,
        key_use: KeyUse | None = None,
        clock: Clock = time.time,
        jwks: JwksCache | None = None,
        *,
        allow_loopback_http: bool = False,
        global_count: Counter | None = None,
    ) -> None:
        """``jwks`` caches the key sets of ``jwks_url`` issuers; by default one is made at
        the first bearer token (fetching ``http://`` from loopback only when
        ``allow_loopback_http``), so a gateway with no JWT service never loads PyJWT.
        ``global_count`` counts the limits of scope global (the store's count_request);
        without it, a service with one is refused with GatewayMisconfigured. The modules of
        each check are imported at the first service that needs it."""
        self._default = OPEN if default_open else CLOSED
        self._buckets = buckets
        self._key_use = key_use
        self._clock = clock
        self._jwks = jwks
        self._global_count = global_count
        self._global: GlobalLimits | None = None
        self._allow_loopback_http = allow_loopback_http
        self._verified: VerifiedTokens | None = None
        self._lazy_lock = threading.Lock()

    def exposure(self, view: ServiceView) -> Exposure:
        found = view.exposure if isinstance(view, GatewayView) else None
        return self._default if found is None else found

    def admit(
        self,
        view: ServiceView,
        service: str,
        version: str,
        method: str,
        headers: Mapping[str, str],
        client_ip: str | None,
        path: str = "",
    ) -> Admission | Preflighted:
        """Let the request in, answer its preflight, or raise why not."""
        exposure = self.exposure(view)
        if not exposure.exposed:
            raise no_such_service(service)
        if not exposure.serves(version):
            raise no_such_version(service, version)
        # The address first: a denied network learns nothing more, not even CORS rules.
        _check_address(exposure, client_ip)
        preflight = _preflight(exposure, method, headers)
        if preflight is not None:
            return preflight
        answer = {}
        if exposure.cors is not None:
            from chalicelib.exposure import cors

            answer = cors.answer_headers(exposure.cors, cors.header(headers, "Origin"))
        try:
            forwarded, vouched, consumer = self._identify(exposure, view, service, headers, path)
            answer.update(self._limit(exposure, service, consumer))
        except LambdaMeshError as exc:
            exc.extra_headers.update(answer)
            raise
        return Admission(forwarded, vouched, answer, owns_cors=exposure.cors is not None)

    def _identify(
        self,
        exposure: Exposure,
        view: ServiceView,
        service: str,
        headers: Mapping[str, str],
        path: str,
    ) -> tuple[dict[str, str], dict[str, str], str | None]:
        """The client's headers that go upstream, the ones the gateway vouches for, and the
        caller's consumer name when it has one: a key when one is presented (and keys are
        taken), else a bearer token (when tokens are)."""
        own = _CONSUMER_ONLY
        if exposure.jwt is not None:
            from chalicelib.exposure.jwt_rules import claim_headers

            own = own | {field_name(h) for h in claim_headers(exposure.jwt)}
        forwarded = {name: value for name, value in headers.items() if not _vouched_name(name, own)}
        if exposure.public:
            return forwarded, {}, None
        key = presented_key(headers) if "api_key" in exposure.auth else None
        if key is None and exposure.jwt is not None:
            return self._bearer(exposure, exposure.jwt, service, forwarded, path)
        return self._keyed(exposure, view, service, forwarded, headers)

    def _bearer(
        self,
        exposure: Exposure,
        rules: JwtRules,
        service: str,
        forwarded: dict[str, str],
        path: str,
    ) -> tuple[dict[str, str], dict[str, str], str | None]:
        authorization = next(
            (v for k, v in forwarded.items() if k.lower() == "authorization"), None
        )
        if authorization is None and "api_key" in exposure.auth:
            raise NoCredentials()
        from chalicelib.exposure.tokens import verify

        keys, verified = self._token_caches()
        try:
            identity = verify(
                rules, authorization, path, self._clock(), keys=keys, verified=verified
            )
        except InvalidToken as exc:
            logger.info("bearer token refused", extra={"service": service, "reason": exc.reason})
            raise
        if not rules.forward_token:
            forwarded = _without(forwarded, lambda name, _: name == "authorization")
        return forwarded, dict(identity.headers), _consumer_of(identity)

    def _token_caches(self) -> tuple[JwksCache, VerifiedTokens]:
        with self._lazy_lock:
            if self._jwks is None:
                from chalicelib.exposure.jwks import JwksCache

                self._jwks = JwksCache(allow_loopback_http=self._allow_loopback_http)
            if self._verified is None:
                from chalicelib.exposure.tokens import VerifiedTokens

                self._verified = VerifiedTokens()
            return self._jwks, self._verified

    def _token_buckets(self) -> TokenBuckets:
        with self._lazy_lock:
            if self._buckets is None:
                from chalicelib.exposure.limits import TokenBuckets

                self._buckets = TokenBuckets()
            return self._buckets

    def _global_limits(self) -> GlobalLimits:
        with self._lazy_lock:
            if self._global is None:
                if self._global_count is None:
                    raise GatewayMisconfigured("global rate limits need a counter; see the log")
                from chalicelib.exposure.global_limits import GlobalLimits

                self._global = GlobalLimits(self._global_count, self._clock)
            return self._global

    def _keyed(
        self,
        exposure: Exposure,
        view: ServiceView,
        service: str,
        forwarded: dict[str, str],
        headers: Mapping[str, str],
    ) -> tuple[dict[str, str], dict[str, str], str | None]:
        keys = view.keys if isinstance(view, GatewayView) else ()
        key = authenticate(presented_key(headers), keys, self._clock())
        if self._key_use is not None:
            self._key_use.used(service, key)
        # The key opened the gateway; the upstream never sees it. Where the service takes
        # bearer tokens too, an upstream reads Authorization as one the gateway checked:
        # none it did not check goes with a key.
        tokens_too = exposure.jwt is not None
        forwarded = _without(
            forwarded,
            lambda name, value: (
                carries_key(name, value) or (tokens_too and name == "authorization")
            ),
        )
        return forwarded, {CONSUMER_HEADER: key.consumer}, key.consumer

    def _limit(self, exposure: Exposure, service: str, consumer: str | None) -> dict[str, str]:
        rules = exposure.rate_limits
        if rules is None:
            return {}
        from chalicelib.exposure import limits

        if rules.scope == "global":
            decision = self._global_limits().check(rules, service, consumer)
        else:
            decision = limits.check(rules, self._token_buckets(), service, consumer)
        if decision is None:
            return {}
        fields = limits.headers(decision, rules)
        if not decision.allowed:
            refusal = RateLimited(f"too many requests to {service!r}: slow down")
            refusal.extra_headers.update(fields)
            raise refusal
        return fields


def _without(headers: Mapping[str, str], dropped: Callable[[str, str], bool]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if not dropped(name.lower(), value)}


def _vouched_name(name: str, own: frozenset[str]) -> bool:
    """A header only the gateway may write: any ``X-Lambdamesh-*``, and the service's own
    identity headers, in any spelling an upstream may read as them (``X_Tenant`` is
    ``X-Tenant`` to a WSGI server)."""
    normal = field_name(name)
    return normal in own or normal.startswith("x-lambdamesh-")


def _consumer_of(identity: Identity) -> str | None:
    """Whom a token's rate limit counts against: its subject, else the client it was issued
    to (client-credentials tokens often have no ``sub``), else all such tokens together."""
    for claim in ("sub", "client_id", "azp"):
        value = identity.claims.get(claim)
        if isinstance(value, str) and value:
            return f"{claim}:{value}"
    return "token-without-subject"


def _preflight(exposure: Exposure, method: str, headers: Mapping[str, str]) -> Preflighted | None:
    if exposure.cors is None:
        return None
    from chalicelib.exposure import cors

    answer = cors.preflight(exposure.cors, method, headers)
    if answer is None:
        return None
    if not answer.allowed:
        refusal = CorsNotAllowed(answer.reason)
        refusal.extra_headers.update(answer.headers)
        raise refusal
    return Preflighted(answer.headers)


def _check_address(exposure: Exposure, client_ip: str | None) -> None:
    if exposure.addresses is None:
        return
    from chalicelib.exposure import addresses

    if not addresses.allowed(exposure.addresses, client_ip):
        raise AddressNotAllowed("this service does not take requests from your address")
