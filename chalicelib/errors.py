"""One error hierarchy for everything the Lambda refuses or fails at.

Each subclass carries its HTTP status and a stable machine-readable ``code``; the app turns
them into ``{"error": {"code", "message", "request_id"}}`` in exactly one place.
"""

from __future__ import annotations


class LambdaMeshError(Exception):
    status = 500
    code = "internal_error"
    # Seconds a client should wait before trying again, sent as ``Retry-After``; None for
    # errors that waiting will not cure.
    retry_after: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        """Headers the answer carries: ``Retry-After`` when waiting helps."""
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


class ConfigError(LambdaMeshError):
    """The deployment is misconfigured: the operator must act, not the caller."""

    code = "config_error"


class GatewayMisconfigured(ConfigError):
    """The settings would let the gateway reach hosts it must not: it routes nothing."""

    code = "gateway_misconfigured"


class BadRequest(LambdaMeshError):
    status = 400
    code = "bad_request"


class InvalidRequest(BadRequest):
    code = "invalid_request"


class InvalidName(BadRequest):
    code = "invalid_name"


class HostNotAllowed(BadRequest):
    code = "host_not_allowed"


class PayloadTooLarge(LambdaMeshError):
    status = 413
    code = "payload_too_large"


class Unauthorized(LambdaMeshError):
    status = 401
    code = "unauthorized"


class Forbidden(LambdaMeshError):
    status = 403
    code = "forbidden"


class NotFound(LambdaMeshError):
    status = 404
    code = "not_found"


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


class ServiceNotFound(NotFound):
    code = "service_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class PolicyNotFound(NotFound):
    code = "policy_not_found"


class RegistryUnavailable(LambdaMeshError):
    status = 503
    code = "registry_unavailable"
    retry_after: int | None = 2


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


class NoLiveInstance(LambdaMeshError):
    status = 503
    code = "no_live_instance"


class UpstreamUnreachable(LambdaMeshError):
    status = 502
    code = "upstream_unreachable"


class UpstreamResponseTooLarge(LambdaMeshError):
    status = 502
    code = "upstream_response_too_large"


class UpstreamTimeout(LambdaMeshError):
    status = 504
    code = "upstream_timeout"


class TooManyInstances(LambdaMeshError):
    """The service already has as many live instances as a service may: a conflict with the
    registry's state, not a rate (429 would make sidecars retry at full pace). Room comes back
    when an instance deregisters or its lease lapses, so no ``Retry-After`` can be promised."""

    status = 409
    code = "too_many_instances"
