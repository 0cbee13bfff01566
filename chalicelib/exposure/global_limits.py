"""Rate limits with ``scope: global``: one count for every Lambda container, in DynamoDB.

Each limit is a fixed window of ``w`` seconds admitting ``q`` requests, the very ``q`` and
``w`` the answer's ``RateLimit-Policy`` states (RateLimits.quota). A request adds one to the
current window's counter with one conditional UpdateItem, which DynamoDB refuses once the
window holds ``q``; the window's item leaves by TTL. So the count is exact across containers,
at the price of one write per limit per request (``lambdamesh cost --global-limit-rps``
prices it) and that write's latency. Fixed windows let a client spend ``q`` at the end of one
window and ``q`` again at the start of the next: up to twice the quota within ``w`` seconds
across a boundary, never more within one window.

A consumer limit is counted before the service's, and a request it refuses is not counted
against the service. A request the service's limit refuses has already been counted against
its consumer's window.

Once a container sees a window full, it refuses that counter locally until the window ends,
writing nothing more: a flood past the limit costs one refused write per container per
window, not one per request, so it cannot make the counter's partition throttle (DynamoDB
gives one partition at most 1,000 write units a second; MAX_GLOBAL_RATE keeps each limit
below that).

When DynamoDB cannot be reached or throttles, the request is let through and the failure
logged (``global rate limit not counted``): a limiter that fails closed would turn a
DynamoDB incident into an outage of every service it guards.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import Protocol

from chalicelib.errors import LambdaMeshError
from chalicelib.exposure.limits import EPSILON, Decision, RateLimits, Which, pick
from chalicelib.observability import logger
from chalicelib.recent import Recent

# Windows a container remembers as full; the least recently noted is forgotten beyond it
# (and costs one more refused write if it is still full).
MAX_FULL_WINDOWS = 10_000
# How long a window's item outlives its window before TTL may delete it.
COUNTER_GRACE_SECONDS = 60


class Counter(Protocol):
    def __call__(self, counter: str, window: int, limit: int, expires_at: float) -> int | None:
        """Add one to ``counter``'s ``window`` while it holds fewer than ``limit``: the count
        after, or None when it is full."""
        ...


class GlobalLimits:
    def __init__(
        self,
        count: Counter,
        clock: Callable[[], float] = time.time,
        max_full: int = MAX_FULL_WINDOWS,
    ) -> None:
        self._count = count
        self._clock = clock
        self._full: Recent[tuple[str, int], bool] = Recent(max_full)

    def check(self, rules: RateLimits, service: str, consumer: str | None) -> Decision | None:
        """Count a request against the consumer's window, then the service's; None when no
        limit applies. The decision to answer with is chosen as for container limits."""
        now = self._clock()
        decisions = []
        for which in ("consumer", "service"):
            decision = self._one(rules, which, service, consumer, now)
            if decision is not None:
                decisions.append(decision)
                if not decision.allowed:
                    break
        return pick(decisions)

    def _one(
        self, rules: RateLimits, which: Which, service: str, consumer: str | None, now: float
    ) -> Decision | None:
        quota = rules.quota(which)
        if quota is None or (which == "consumer" and consumer is None):
            return None
        limit, seconds = quota
        window = math.floor(now / seconds)
        left = (window + 1) * seconds - now
        key = counter_key(service, which, consumer)
        if (key, window) in self._full:
            return _refused(which, left)
        try:
            count = self._count(key, window, limit, (window + 1) * seconds + COUNTER_GRACE_SECONDS)
        except LambdaMeshError as exc:
            logger.warning(
                "global rate limit not counted",
                extra={"service": service, "limit": which, "reason": exc.message},
            )
            return None
        if count is None:
            self._full.put((key, window), True)
            return _refused(which, left)
        remaining = max(0, limit - count)
        return Decision(True, remaining, left if remaining == 0 else 0.0, 0, which)


def _refused(which: Which, left: float) -> Decision:
    return Decision(False, 0, left, max(1, math.ceil(left - EPSILON)), which)


def counter_key(service: str, which: Which, consumer: str | None) -> str:
    """The counter's name: the service's, or a digest of the consumer's (a JWT subject may be
    long, and any text), so every key is short and plain."""
    if which == "service":
        return f"{service}#service"
    digest = hashlib.sha256((consumer or "").encode()).hexdigest()[:32]
    return f"{service}#consumer#{digest}"
