"""The errors a routing decision or a proxy answers with, and their common base.

Each class carries its HTTP status and a stable machine-readable ``code``. The gateway (through
``chalicelib.errors``, which extends this hierarchy with the registry's own) and the sidecar's
outbound port both answer them as ``{"error": {"code", "message", "request_id"}}``, so a
caller sees the same error whichever way it called.
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
        # Headers this one answer carries besides its kind's (CORS or rate limit fields).
        self.extra_headers: dict[str, str] = {}

    def headers(self) -> dict[str, str]:
        """Headers the answer carries: ``Retry-After`` when waiting helps, and any extra."""
        own = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return {**own, **self.extra_headers}


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


class NotFound(LambdaMeshError):
    status = 404
    code = "not_found"


class ServiceNotFound(NotFound):
    code = "service_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class RegistryUnavailable(LambdaMeshError):
    status = 503
    code = "registry_unavailable"
    retry_after: int | None = 2


class NoLiveInstance(LambdaMeshError):
    status = 503
    code = "no_live_instance"


class UpstreamUnreachable(LambdaMeshError):
    status = 502
    code = "upstream_unreachable"


class ConnectFailed(UpstreamUnreachable):
    """Nothing was sent: safe to try another instance for any method."""


class UpstreamNotAllowed(LambdaMeshError):
    """Every instance tried has an address the address settings refuse: the deployment is at
    fault, not the instances, which are neither ejected nor counted as failing."""

    status = 502
    code = "upstream_not_allowed"


class UpstreamAnswerInvalid(LambdaMeshError):
    """The instance answered, with header fields a proxy must not pass on (a control
    character in a value; in the outbound port also a folded line or a line that is no
    header). Not relayed, not retried, and not counted against the instance: an app that
    copies request input into a header would otherwise let any client eject it."""

    status = 502
    code = "upstream_answer_invalid"


class MtlsUnavailable(LambdaMeshError):
    """The instance takes mutual TLS only, and the proxy (a sidecar's outbound port, the
    gateway) holds no mesh certificate: the proxy's state, not the instance's failure, so
    nothing is ejected and no other instance is tried."""

    status = 502
    code = "mtls_unavailable"


class UpstreamResponseTooLarge(LambdaMeshError):
    status = 502
    code = "upstream_response_too_large"


class UpstreamTimeout(LambdaMeshError):
    status = 504
    code = "upstream_timeout"


class ConnectLate(UpstreamTimeout):
    """The request's deadline, not the instance, ended a connect (it began too late, after
    other tries): answered 504, and not counted against the instance."""
