"""Rate limits of an exposed service: token buckets per service and per consumer.

A bucket holds at most ``rate x burst_seconds`` tokens (at least one, so every rate admits a
request) and gains ``rate`` tokens a second; each request spends one. A service has one bucket,
each consumer (API key consumer or JWT ``sub``) of it one more, and a request must find a token
in both.

check() draws from ``TokenBuckets`` kept in memory, which is what ``scope`` ``container``
means: each warm Lambda container holds its own, so N containers admit up to N times a limit
(exact under ``lambdamesh dev``, one process). ``global`` counts in DynamoDB, shared by every
container (``chalicelib.exposure.global_limits``); the document, its rules and the answer
fields are the same for both.

Answers carry the fields of draft-ietf-httpapi-ratelimit-headers-10: ``RateLimit-Policy``
(the quota, stable across answers) and ``RateLimit`` (what is left now).

Pure decisions over plain data, no I/O: the clock is a constructor argument.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

MIN_RATE = 0.01
MAX_RATE = 100_000
# A global limit's counter takes one write per request, and one DynamoDB partition at most
# 1,000 write units a second (https://docs.aws.amazon.com/amazondynamodb/latest/
# developerguide/warm-throughput-scenarios.html): each global rate stays below that.
MAX_GLOBAL_RATE = 900
MIN_BURST_SECONDS = 0.1
MAX_BURST_SECONDS = 60
DEFAULT_BURST_SECONDS = 1
# Buckets one container keeps; the least recently used is forgotten beyond it (and comes
# back full), so a flood of consumer names costs bounded memory.
MAX_BUCKETS = 10_000
# Tokens lost to float sums of refills: ten refills of 0.1 token make 0.9999999999999999.
EPSILON = 1e-9

Scope = Literal["container", "global"]
SCOPES: tuple[Scope, ...] = ("container", "global")
DEFAULT_SCOPE: Scope = "container"
Which = Literal["service", "consumer"]
LIMITS: tuple[Which, ...] = ("service", "consumer")

_RATE: dict[str, Any] = {"type": ["number", "null"], "minimum": MIN_RATE, "maximum": MAX_RATE}

# The ``rate_limits`` part of an exposure document; a null rate sets no limit.
RATE_LIMITS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "service_per_second": _RATE,
        "consumer_per_second": _RATE,
        "burst_seconds": {
            "type": "number",
            "minimum": MIN_BURST_SECONDS,
            "maximum": MAX_BURST_SECONDS,
        },
        "scope": {"enum": list(SCOPES)},
    },
}


@dataclass(frozen=True)
class RateLimits:
    """Requests a second for the whole service and for each of its consumers (None: no
    limit), and how many seconds of them a bucket may save up for a burst."""

    service_per_second: float | None = None
    consumer_per_second: float | None = None
    burst_seconds: float = DEFAULT_BURST_SECONDS
    scope: Scope = DEFAULT_SCOPE

    def rate(self, which: Which) -> float | None:
        return self.service_per_second if which == "service" else self.consumer_per_second

    def capacity(self, rate: float) -> float:
        """Tokens a bucket filling at ``rate`` holds: at least one, or a rate below one a
        second with a short burst would admit nothing."""
        return max(1.0, rate * self.burst_seconds)

    def quota(self, which: Which) -> tuple[int, int] | None:
        """The policy as the draft's whole numbers ``q`` requests per ``w`` seconds, or None
        without that limit. ``q`` is what a full bucket admits at once and ``w`` the seconds it
        takes to earn them back, so a client spending ``q`` at once then waiting ``w`` seconds
        is never refused by this bucket (the draft has no sub-second windows, so a short
        burst under-states the rate rather than promising a burst the bucket cannot hold)."""
        rate = self.rate(which)
        if rate is None:
            return None
        quota = math.floor(self.capacity(rate) + EPSILON)
        return quota, max(1, math.ceil(quota / rate - EPSILON))


@dataclass(frozen=True)
class Decision:
    """One bucket's answer. ``remaining``: whole requests it admits now. ``reset_seconds``:
    until it admits one more than that (the draft's ``t``), 0.0 when full.
    ``retry_after_seconds``: on a refusal, whole seconds until a request can pass (at least
    1), else 0. ``policy``: which limit decided, set by check()."""

    allowed: bool
    remaining: int
    reset_seconds: float
    retry_after_seconds: int
    policy: Which | None = None


@dataclass(frozen=True)
class Bucket:
    """A bucket to draw from: its key, its refill rate (tokens a second) and capacity."""

    key: str
    rate: float
    capacity: float


@dataclass
class _Level:
    tokens: float
    at: float


class TokenBuckets:
    """Token buckets by key, in memory, at most ``max_keys`` of them (the least recently used
    forgotten first).

    Thread-safe: one lock is held from reading the clock to storing every level a call
    touches, so concurrent calls take effect one after another as if alone. Threads drawing
    from a full bucket at one instant get exactly ``floor(capacity)`` tokens between them,
    never more; and take_all() spends from all its buckets or from none."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_BUCKETS
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._clock = clock
        self._max_keys = max_keys
        self._levels: OrderedDict[str, _Level] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._levels)

    def take(self, key: str, rate: float, capacity: float) -> Decision:
        """Spend one token of bucket ``key`` if it has one (a new bucket starts full)."""
        return self.take_all([Bucket(key, rate, capacity)])[0]

    def take_all(self, buckets: Sequence[Bucket]) -> tuple[Decision, ...]:
        """Spend one token from each bucket when every one has a token, else from none; each
        decision says whether its own bucket had one. So a request one limit refuses costs
        the others nothing, and no refund (which a concurrent request could race) is needed.
        """
        _check(buckets)
        with self._lock:
            now = self._clock()
            levels = [self._refilled(bucket, now) for bucket in buckets]
            had = [level >= 1 - EPSILON for level in levels]
            if all(had):
                levels = [max(0.0, level - 1) for level in levels]
            for bucket, level in zip(buckets, levels, strict=True):
                self._store(bucket.key, level, now)
        return tuple(
            _decision(bucket, level, passed)
            for bucket, level, passed in zip(buckets, levels, had, strict=True)
        )

    def _refilled(self, bucket: Bucket, now: float) -> float:
        level = self._levels.get(bucket.key)
        if level is None:
            return bucket.capacity
        elapsed = max(0.0, now - level.at)  # an injected clock may step back
        return min(bucket.capacity, level.tokens + elapsed * bucket.rate)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._levels[key] = _Level(tokens, now)
        self._levels.move_to_end(key)
        while len(self._levels) > self._max_keys:
            self._levels.popitem(last=False)


def _check(buckets: Sequence[Bucket]) -> None:
    if len({bucket.key for bucket in buckets}) != len(buckets):
        raise ValueError("each bucket may appear once in a call")
    for bucket in buckets:
        if not bucket.rate > 0 or not bucket.capacity >= 1:
            raise ValueError(
                f"bucket {bucket.key!r} needs a rate above 0 and a capacity of at least 1"
            )


def _decision(bucket: Bucket, tokens: float, passed: bool) -> Decision:
    remaining = max(0, math.floor(tokens + EPSILON))
    following = remaining + 1
    reset = 0.0
    if following <= bucket.capacity + EPSILON:
        reset = max(0.0, (following - tokens) / bucket.rate)
    return Decision(
        allowed=passed,
        remaining=remaining,
        reset_seconds=reset,
        retry_after_seconds=0 if passed else _whole_seconds(reset),
    )


def _whole_seconds(seconds: float) -> int:
    """Seconds above 0, rounded up: a client told to wait less would come back too early
    and be refused again (so a wait of any fraction of a second is 1, never 0)."""
    return math.ceil(seconds)


def check(
    rules: RateLimits, buckets: TokenBuckets, service: str, consumer: str | None
) -> Decision | None:
    """Draw a request's tokens from the service's bucket and its consumer's (a consumer
    limit applies only to a known consumer), both or neither; None when no limit applies.

    The decision returned is the one to answer with: of refusals, the one with the longer
    wait (a client retrying sooner would be refused again); when both allow, the one with
    fewer requests left. The service's on a tie."""
    claims = _claims(rules, service, consumer)
    if not claims:
        return None
    decisions = buckets.take_all([bucket for _, bucket in claims])
    named = [
        replace(decision, policy=which)
        for (which, _), decision in zip(claims, decisions, strict=True)
    ]
    return pick(named)


def pick(decisions: Sequence[Decision]) -> Decision | None:
    """The decision to answer with: of refusals, the one with the longer wait (a client
    retrying sooner would be refused again); when all allow, the one with fewer requests
    left, the first on a tie; None for none."""
    if not decisions:
        return None
    refused = [decision for decision in decisions if not decision.allowed]
    if refused:
        return max(refused, key=lambda decision: decision.retry_after_seconds)
    return min(decisions, key=lambda decision: decision.remaining)


def _claims(rules: RateLimits, service: str, consumer: str | None) -> list[tuple[Which, Bucket]]:
    """The buckets a request draws from, service first. Keys cannot collide: service names
    hold no '/'."""
    found: list[tuple[Which, Bucket]] = []
    rate = rules.service_per_second
    if rate is not None:
        found.append(("service", Bucket(f"service/{service}", rate, rules.capacity(rate))))
    rate = rules.consumer_per_second
    if rate is not None and consumer is not None:
        key = f"consumer/{service}/{consumer}"
        found.append(("consumer", Bucket(key, rate, rules.capacity(rate))))
    return found


def headers(decision: Decision, rules: RateLimits, which: Which | None = None) -> dict[str, str]:
    """The answer's rate limit fields for ``decision``, which belongs to limit ``which``
    (by default the one check() recorded).

    ``RateLimit-Policy`` lists every limit the rules set, whichever decided, so it stays the
    same from answer to answer as the draft asks. ``RateLimit`` gives what is left of the
    deciding limit; its ``t`` is left out when the bucket is full (nothing more to wait for).
    A refusal adds ``Retry-After``, equal to ``t``: the draft asks that it never point earlier.
    """
    which = which or decision.policy
    if which is None:
        raise ValueError("say which limit the decision belongs to")
    limit = f'"{which}";r={decision.remaining}'
    if decision.reset_seconds > 0:
        limit += f";t={_whole_seconds(decision.reset_seconds)}"
    found = {"RateLimit-Policy": policy_field(rules), "RateLimit": limit}
    if not decision.allowed:
        found["Retry-After"] = str(decision.retry_after_seconds)
    return found


def policy_field(rules: RateLimits) -> str:
    """``RateLimit-Policy``: each limit set, as ``"name";q=<requests>;w=<seconds>``."""
    items = []
    for which in LIMITS:
        quota = rules.quota(which)
        if quota is not None:
            items.append(f'"{which}";q={quota[0]};w={quota[1]}')
    return ", ".join(items)


def from_json(doc: Mapping[str, Any]) -> RateLimits:
    """Rules from a document that passed RATE_LIMITS_SCHEMA and problems(); absent fields
    take their defaults (an absent rate: no limit)."""
    return RateLimits(
        service_per_second=doc.get("service_per_second"),
        consumer_per_second=doc.get("consumer_per_second"),
        burst_seconds=doc.get("burst_seconds", DEFAULT_BURST_SECONDS),
        scope=cast(Scope, doc.get("scope", DEFAULT_SCOPE)),
    )


def to_json(rules: RateLimits) -> dict[str, Any]:
    """The document, every field present: what the registry answers and stores."""
    return {
        "service_per_second": rules.service_per_second,
        "consumer_per_second": rules.consumer_per_second,
        "burst_seconds": rules.burst_seconds,
        "scope": rules.scope,
    }


def problems(doc: Mapping[str, Any]) -> list[str]:
    """What RATE_LIMITS_SCHEMA cannot say: a consumer limit above the service's, which every
    consumer shares, could never be reached, so the document would promise what it cannot
    give."""
    service, consumer = doc.get("service_per_second"), doc.get("consumer_per_second")
    found = []
    if service is not None and consumer is not None and consumer > service:
        found.append(
            f"rate_limits.consumer_per_second ({consumer:g}) is above service_per_second "
            f"({service:g}), which every consumer shares: no consumer could reach it; lower "
            f"it to at most {service:g}"
        )
    if doc.get("scope") == "global":
        found += [
            f"rate_limits.{name} ({rate:g}) is above {MAX_GLOBAL_RATE} with scope global: "
            "its counter takes a DynamoDB write per request, and one partition takes at "
            "most 1,000 a second; use scope container for higher rates"
            for name, rate in (("service_per_second", service), ("consumer_per_second", consumer))
            if rate is not None and rate > MAX_GLOBAL_RATE
        ]
    return found
