"""What a failed try means, whichever proxy made it (the gateway, an outbound port): the
errors that end a try, what each says of the instance, and what the caller is answered if no
other try follows.

* An address the proxy's settings refuse: nothing sent, nothing counted (``Plan.not_allowed``);
  answered ``upstream_not_allowed`` naming the proxy.
* A connect that failed: nothing sent, the instance ejected for a while and another tried
  whatever the method (``Plan.connect_failed``); answered ``upstream_unreachable``.
* A connection that broke after sending: a failure of the instance (``Plan.reset``), retried
  only where sending again is safe; answered ``upstream_unreachable``.
* No answer in time: a failure of the instance, not retried (``Plan.timed_out``); answered
  ``upstream_timeout``.
* A connect the request's deadline cut short, an answer too large, or one with header fields
  that may not be relayed: the request ends, and nothing is said of the instance's health
  (``Plan.gave_up``): the error itself is answered, a late connect as ``upstream_timeout``.

Each proxy turns its transport's exceptions into these errors, and logs a failure and an
ejection its own way; callers learn which service failed and how, never an address.
"""

from __future__ import annotations

from typing import NamedTuple

from lambdamesh_routing.errors import (
    ConnectFailed,
    ConnectLate,
    HostNotAllowed,
    LambdaMeshError,
    UpstreamAnswerInvalid,
    UpstreamResponseTooLarge,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from lambdamesh_routing.instances import Instance
from lambdamesh_routing.router import Call, Plan, addresses_refused

# The errors a try ends with (``ConnectFailed`` and ``ConnectLate`` among them, as kinds of
# the unreachable and the late): anything else is no upstream's doing and propagates.
TRY_FAILURES: tuple[type[LambdaMeshError], ...] = (
    HostNotAllowed,
    UpstreamUnreachable,
    UpstreamTimeout,
    UpstreamResponseTooLarge,
    UpstreamAnswerInvalid,
)


class Failed(NamedTuple):
    """How a try failed: ``error`` is the caller's answer should no other try follow;
    ``ejected_seconds`` how long the failure ejected the instance for (0: not ejected)."""

    error: LambdaMeshError
    ejected_seconds: float = 0.0


def unreachable(call: Call) -> UpstreamUnreachable:
    return UpstreamUnreachable(f"no instance of {call.service} {call.version} could be reached")


def late(call: Call) -> UpstreamTimeout:
    return UpstreamTimeout(f"{call.service} {call.version} did not answer in time")


def failed(plan: Plan, instance: Instance, error: LambdaMeshError, proxy: str) -> Failed:
    """Report to ``plan`` how the try of ``instance`` ended, by ``error`` (one of
    ``TRY_FAILURES``); ``proxy`` names the proxy whose settings refuse an address."""
    call = plan.call
    if isinstance(error, HostNotAllowed):
        plan.not_allowed(instance)
        return Failed(addresses_refused(call.service, call.version, proxy))
    if isinstance(error, ConnectFailed):
        plan.connect_failed(instance)
        return Failed(unreachable(call))
    if isinstance(error, UpstreamUnreachable):
        return Failed(unreachable(call), plan.reset(instance))
    if isinstance(error, ConnectLate):
        plan.gave_up()
        return Failed(late(call))
    if isinstance(error, UpstreamTimeout):
        return Failed(late(call), plan.timed_out(instance))
    if isinstance(error, (UpstreamResponseTooLarge, UpstreamAnswerInvalid)):
        plan.gave_up()
        return Failed(error)
    raise error
