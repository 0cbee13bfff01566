"""One error hierarchy for everything the Lambda refuses or fails at.

Each subclass carries its HTTP status and a stable machine-readable ``code``; the app turns
them into ``{"error": {"code", "message", "request_id"}}`` in exactly one place. The base and
the errors of routing (which the sidecar's outbound port answers too) live in
``lambdamesh_routing.errors``; the registry's own are added here.
"""

from __future__ import annotations

from collections.abc import Sequence

from lambdamesh_routing.errors import (
    BadRequest,
    ConnectLate,
    HostNotAllowed,
    InvalidName,
    InvalidRequest,
    LambdaMeshError,
    NoLiveInstance,
    NotFound,
    PayloadTooLarge,
    RegistryUnavailable,
    ServiceNotFound,
    UpstreamAnswerInvalid,
    UpstreamResponseTooLarge,
    UpstreamTimeout,
    UpstreamUnreachable,
    VersionNotFound,
)

__all__ = [
    "AddressNotAllowed",
    "AmbiguousPath",
    "BadRequest",
    "ConfigError",
    "ConnectLate",
    "CorsNotAllowed",
    "ExposureNotFound",
    "Forbidden",
    "GatewayMisconfigured",
    "HostNotAllowed",
    "InstanceNotFound",
    "InsufficientScope",
    "InvalidApiKey",
    "InvalidName",
    "InvalidRequest",
    "InvalidToken",
    "KeyNotFound",
    "KeyStoreUnavailable",
    "KeysUnavailable",
    "LambdaMeshError",
    "MethodNotAllowed",
    "MissingToken",
    "NoCredentials",
    "NoLiveInstance",
    "NotFound",
    "PayloadTooLarge",
    "PolicyNotFound",
    "RateLimited",
    "RegistryMisconfigured",
    "RegistryUnavailable",
    "RouteNotFound",
    "ServiceNotFound",
    "TooManyDrains",
    "TooManyInstances",
    "TooManyKeys",
    "Unauthorized",
    "UpstreamAnswerInvalid",
    "UpstreamResponseTooLarge",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "VersionNotFound",
]


class ConfigError(LambdaMeshError):
    """The deployment is misconfigured: the operator must act, not the caller."""

    code = "config_error"


class GatewayMisconfigured(ConfigError):
    """The settings would let the gateway reach hosts it must not: it routes nothing."""

    code = "gateway_misconfigured"


class Unauthorized(LambdaMeshError):
    status = 401
    code = "unauthorized"


class Forbidden(LambdaMeshError):
    status = 403
    code = "forbidden"


# The challenges of RFC 7235 a 401 at the edge carries: one per way in.
API_KEY_REALM = 'ApiKey realm="lambdamesh"'
BEARER_REALM = 'Bearer realm="lambdamesh"'


class InvalidToken(Unauthorized):
    """The bearer token was refused: malformed, badly signed, expired, not for this service.
    ``reason`` (one word) is for logs and metrics; the answer says only RFC 6750's code."""

    code = "invalid_token"

    def __init__(self, reason: str) -> None:
        super().__init__("the bearer token is not valid")
        self.reason = reason

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": f'{BEARER_REALM}, error="invalid_token"'}


class MissingToken(Unauthorized):
    """No bearer credentials at all: RFC 6750 section 3.1 answers without an error code."""

    def __init__(self) -> None:
        super().__init__("this service needs a bearer token: send Authorization: Bearer <jwt>")

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": BEARER_REALM}


class InsufficientScope(Forbidden):
    """The token is valid but lacks a scope the request path needs."""

    code = "insufficient_scope"

    def __init__(self, required: Sequence[str]) -> None:
        super().__init__("the bearer token lacks a scope this path needs")
        self.scope = " ".join(required)

    def headers(self) -> dict[str, str]:
        challenge = f'{BEARER_REALM}, error="insufficient_scope", scope="{self.scope}"'
        return {**super().headers(), "WWW-Authenticate": challenge}


class AmbiguousPath(InvalidRequest):
    """A request path that scope rules cannot be matched against with confidence, because
    upstreams differ on where it leads. Refused whatever the token holds: no scope would make
    the match certain, so 403 ``insufficient_scope`` would send the client after one in vain;
    RFC 6750 answers a malformed request 400 ``invalid_request``."""

    def __init__(self, holds: str) -> None:
        super().__init__(
            f"this path cannot be matched to the service's scope rules: it holds {holds}"
        )

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": f'{BEARER_REALM}, error="invalid_request"'}


class KeysUnavailable(LambdaMeshError):
    """No signing keys could be had for the service's ``jwks_url`` (never fetched, or every
    fetch failed): the gateway's fault, not the token's. This container tries again after
    ``retry_after`` seconds."""

    status = 503
    code = "jwks_unavailable"

    def __init__(self, retry_after: int) -> None:
        super().__init__("the signing keys of this service's token issuer cannot be fetched")
        self.retry_after = retry_after


class InvalidApiKey(LambdaMeshError):
    """No key, or none that opens this service: one answer for every reason."""

    status = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": API_KEY_REALM}


class NoCredentials(Unauthorized):
    """Neither an API key nor a bearer token, where either would do."""

    def __init__(self) -> None:
        super().__init__("send an API key (X-Api-Key) or a bearer token (Authorization: Bearer)")

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": f"{API_KEY_REALM}, {BEARER_REALM}"}


class AddressNotAllowed(Forbidden):
    code = "address_not_allowed"


class CorsNotAllowed(Forbidden):
    code = "cors_not_allowed"


class RateLimited(LambdaMeshError):
    status = 429
    code = "rate_limited"


class InstanceNotFound(NotFound):
    code = "instance_not_found"


class RouteNotFound(NotFound):
    code = "route_not_found"


class MethodNotAllowed(LambdaMeshError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, allow: tuple[str, ...]) -> None:
        self.allow = ", ".join(allow)
        super().__init__(f"this route allows {self.allow}")

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Allow": self.allow}


class PolicyNotFound(NotFound):
    code = "policy_not_found"


class ExposureNotFound(NotFound):
    code = "exposure_not_found"


class KeyNotFound(NotFound):
    code = "key_not_found"


class TooManyKeys(LambdaMeshError):
    """A service's keys are read with its instances in every gateway read: bounded."""

    status = 409
    code = "too_many_keys"


class RegistryMisconfigured(RegistryUnavailable):
    """DynamoDB refused for a reason waiting will not cure: a missing table, a role that may
    not use it, a request it calls invalid. The registry is unavailable all the same (health
    and stale routing treat it so), but the answer is a 500 without ``Retry-After``: the
    operator must act, and a sidecar should not retry forever."""

    status = 500
    code = "registry_misconfigured"
    retry_after = None


class KeyStoreUnavailable(LambdaMeshError):
    """The signing key could not be read in time (network, throttling, the store's 5xx)."""

    status = 503
    code = "key_store_unavailable"
    retry_after = 5


class TooManyInstances(LambdaMeshError):
    """The service already has as many live instances as a service may: a conflict with the
    registry's state, not a rate (429 would make sidecars retry at full pace). Room comes back
    when an instance deregisters or its lease lapses, so no ``Retry-After`` can be promised."""

    status = 409
    code = "too_many_instances"


class TooManyDrains(LambdaMeshError):
    """The service already holds as many operator drains as it may hold instances: the set
    lives on one item that every routing read carries, so it is bounded. Room comes back when
    an operator lifts a drain, or when a drained instance's item is deleted."""

    status = 409
    code = "too_many_drains"
