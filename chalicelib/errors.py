"""One error hierarchy for everything the Lambda refuses or fails at.

Each subclass carries its HTTP status and a stable machine-readable ``code``; the app turns
them into ``{"error": {"code", "message", "request_id"}}`` in exactly one place. The base and
the errors of routing (which the sidecar's outbound port answers too) live in
``lambdamesh_routing.errors``; the registry's own are added here.
"""

from __future__ import annotations

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
    "BadRequest",
    "ConfigError",
    "ConnectLate",
    "ExposureNotFound",
    "Forbidden",
    "GatewayMisconfigured",
    "HostNotAllowed",
    "InstanceNotFound",
    "InvalidName",
    "InvalidRequest",
    "KeyNotFound",
    "KeyStoreUnavailable",
    "LambdaMeshError",
    "MethodNotAllowed",
    "NoLiveInstance",
    "NotFound",
    "PayloadTooLarge",
    "PolicyNotFound",
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
