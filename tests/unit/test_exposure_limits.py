"""Rate limits: the document part, token buckets, the two-limit check and the answer fields."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import fastjsonschema
import pytest

from chalicelib.exposure import limits
from chalicelib.exposure.limits import (
    MAX_BURST_SECONDS,
    MAX_RATE,
    MIN_BURST_SECONDS,
    MIN_RATE,
    RATE_LIMITS_SCHEMA,
    Bucket,
    Decision,
    RateLimits,
    TokenBuckets,
)

validate = fastjsonschema.compile(RATE_LIMITS_SCHEMA)


class Clock:
    """Seconds that move only when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def passes(decision: Decision | None) -> bool:
    assert decision is not None
    return decision.allowed


def refused_by_schema(doc: dict[str, Any]) -> bool:
    try:
        validate(doc)
    except fastjsonschema.JsonSchemaValueException:
        return True
    return False


@pytest.fixture
def eager_switching() -> Iterator[None]:
    """Let threads preempt one another every microsecond instead of every 5 ms, so a
    read-then-write that were not under one lock would interleave and overshoot."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def buckets(clock: Clock) -> TokenBuckets:
    return TokenBuckets(clock=clock)


# The document part


def test_the_schema_accepts_the_design_example_and_the_edges() -> None:
    example = {
        "service_per_second": 100,
        "consumer_per_second": 10,
        "burst_seconds": 1,
        "scope": "container",
    }
    assert not refused_by_schema(example)
    assert not refused_by_schema(
        {"service_per_second": MIN_RATE, "burst_seconds": MIN_BURST_SECONDS}
    )
    assert not refused_by_schema(
        {"consumer_per_second": MAX_RATE, "burst_seconds": MAX_BURST_SECONDS}
    )
    assert not refused_by_schema({"service_per_second": None, "scope": "global"})
    assert not refused_by_schema({})


@pytest.mark.parametrize(
    "doc",
    [
        {"per_second": 10},
        {"service_per_second": 0},
        {"service_per_second": 0.001},
        {"consumer_per_second": MAX_RATE + 1},
        {"service_per_second": True},
        {"service_per_second": "10"},
        {"burst_seconds": 0.05},
        {"burst_seconds": MAX_BURST_SECONDS + 1},
        {"burst_seconds": None},
        {"scope": "region"},
    ],
)
def test_the_schema_refuses_shapes_and_values_out_of_bounds(doc: dict[str, Any]) -> None:
    assert refused_by_schema(doc)


def test_a_consumer_limit_above_the_service_limit_is_refused_and_says_why() -> None:
    doc = {"service_per_second": 10, "consumer_per_second": 100}
    assert limits.problems(doc) == [
        "rate_limits.consumer_per_second (100) is above service_per_second (10), which every "
        "consumer shares: no consumer could reach it; lower it to at most 10"
    ]


def test_a_consumer_limit_just_above_the_service_limit_is_refused() -> None:
    doc = {"service_per_second": 10, "consumer_per_second": 10.01}
    assert limits.problems(doc) == [
        "rate_limits.consumer_per_second (10.01) is above service_per_second (10), which "
        "every consumer shares: no consumer could reach it; lower it to at most 10"
    ]


@pytest.mark.parametrize(
    "doc",
    [
        {"service_per_second": 10, "consumer_per_second": 10},
        {"service_per_second": 0.01, "consumer_per_second": 0.01},
        {"service_per_second": 10, "consumer_per_second": 0.5},
        {"consumer_per_second": 100},
        {"service_per_second": 100, "consumer_per_second": None},
        {},
    ],
)
def test_limits_that_can_all_be_reached_raise_no_problem(doc: dict[str, Any]) -> None:
    assert limits.problems(doc) == []


def test_absent_fields_take_their_defaults_and_to_json_fills_every_field() -> None:
    assert limits.from_json({}) == RateLimits()
    assert limits.to_json(limits.from_json({})) == {
        "service_per_second": None,
        "consumer_per_second": None,
        "burst_seconds": 1,
        "scope": "container",
    }


def test_a_document_round_trips_and_its_json_passes_its_own_checks() -> None:
    doc = {
        "service_per_second": 100,
        "consumer_per_second": 2.5,
        "burst_seconds": 0.5,
        "scope": "global",
    }
    again = limits.to_json(limits.from_json(doc))
    assert again == doc
    assert not refused_by_schema(again)
    assert limits.problems(again) == []


@pytest.mark.parametrize(
    ("rate", "burst", "capacity"),
    [(100, 1, 100.0), (10, 2.5, 25.0), (10, 0.1, 1.0), (0.5, 1, 1.0), (0.01, 60, 1.0)],
)
def test_a_bucket_holds_rate_times_burst_and_at_least_one(
    rate: float, burst: float, capacity: float
) -> None:
    assert RateLimits(burst_seconds=burst).capacity(rate) == pytest.approx(capacity)


@pytest.mark.parametrize(
    ("rate", "burst", "quota"),
    [
        (100, 1, (100, 1)),
        (10, 2, (20, 2)),
        (0.01, 1, (1, 100)),
        (10, 0.1, (1, 1)),  # no sub-second windows: the burst, not the rate
        (0.7, 60, (42, 60)),  # 42 / 0.7 is 60.00000000000001 in floats
        (2.5, 1, (2, 1)),
    ],
)
def test_the_advertised_quota_is_what_a_full_bucket_admits_and_the_seconds_to_earn_it(
    rate: float, burst: float, quota: tuple[int, int]
) -> None:
    assert RateLimits(service_per_second=rate, burst_seconds=burst).quota("service") == quota


def test_an_unset_limit_has_no_quota() -> None:
    assert RateLimits(service_per_second=5).quota("consumer") is None


# Token buckets


def test_a_new_bucket_starts_full_and_refuses_once_empty(buckets: TokenBuckets) -> None:
    taken = [buckets.take("k", rate=1, capacity=3) for _ in range(4)]
    assert [d.allowed for d in taken] == [True, True, True, False]
    assert [d.remaining for d in taken] == [2, 1, 0, 0]
    assert taken[3] == Decision(
        allowed=False, remaining=0, reset_seconds=1.0, retry_after_seconds=1
    )


def test_an_allowed_decision_needs_no_retry_and_says_when_one_more_comes(
    buckets: TokenBuckets,
) -> None:
    decision = buckets.take("k", rate=5, capacity=10)

    assert decision.reset_seconds == pytest.approx(0.2)
    assert decision == Decision(
        allowed=True, remaining=9, reset_seconds=decision.reset_seconds, retry_after_seconds=0
    )


def test_a_bucket_refills_at_its_rate(buckets: TokenBuckets, clock: Clock) -> None:
    for _ in range(2):
        buckets.take("k", rate=2, capacity=2)
    assert not buckets.take("k", rate=2, capacity=2).allowed
    clock.advance(0.5)
    assert buckets.take("k", rate=2, capacity=2).allowed
    assert not buckets.take("k", rate=2, capacity=2).allowed


def test_a_bucket_never_fills_past_its_capacity(buckets: TokenBuckets, clock: Clock) -> None:
    buckets.take("k", rate=1, capacity=3)
    clock.advance(3600)
    assert buckets.take("k", rate=1, capacity=3).remaining == 2


def test_refills_summed_in_floats_still_make_a_whole_token(
    buckets: TokenBuckets, clock: Clock
) -> None:
    """Ten refills of 0.1 token make 0.9999999999999999 in floats."""
    buckets.take("k", rate=0.1, capacity=1)
    for _ in range(9):
        clock.advance(1)
        assert not buckets.take("k", rate=0.1, capacity=1).allowed
    clock.advance(1)
    assert buckets.take("k", rate=0.1, capacity=1).allowed


def test_a_token_summed_in_floats_counts_as_remaining(buckets: TokenBuckets, clock: Clock) -> None:
    """A bucket refused by another keeps its level, so refills add up unspent."""
    buckets.take("empty", rate=0.001, capacity=1)
    buckets.take("k", rate=0.1, capacity=3)
    buckets.take("k", rate=0.1, capacity=3)
    buckets.take("k", rate=0.1, capacity=3)
    for _ in range(10):
        clock.advance(1)
        kept, refused = buckets.take_all([Bucket("k", 0.1, 3), Bucket("empty", 0.001, 1)])
    assert not refused.allowed
    assert (kept.allowed, kept.remaining) == (True, 1)


@pytest.mark.parametrize(("rate", "retry"), [(0.25, 4), (3, 1), (1, 1), (0.3, 4)])
def test_retry_after_is_rounded_up_to_whole_seconds(
    buckets: TokenBuckets, rate: float, retry: int
) -> None:
    buckets.take("k", rate=rate, capacity=1)
    decision = buckets.take("k", rate=rate, capacity=1)
    assert not decision.allowed
    assert decision.retry_after_seconds == retry
    assert decision.reset_seconds == pytest.approx(1 / rate)


def test_retry_after_counts_what_is_already_refilled(buckets: TokenBuckets, clock: Clock) -> None:
    buckets.take("k", rate=1, capacity=1)
    clock.advance(0.4)
    decision = buckets.take("k", rate=1, capacity=1)
    assert decision.reset_seconds == pytest.approx(0.6)
    assert decision.retry_after_seconds == 1


def test_a_clock_stepping_back_takes_no_tokens_away(buckets: TokenBuckets, clock: Clock) -> None:
    buckets.take("k", rate=1, capacity=3)
    clock.advance(-100)
    assert buckets.take("k", rate=1, capacity=3).remaining == 1


def test_a_smaller_capacity_applies_at_once(buckets: TokenBuckets) -> None:
    buckets.take("k", rate=1, capacity=10)
    assert buckets.take("k", rate=1, capacity=2).remaining == 1


def test_buckets_of_different_keys_are_independent(buckets: TokenBuckets) -> None:
    assert buckets.take("a", rate=1, capacity=1).allowed
    assert buckets.take("b", rate=1, capacity=1).allowed
    assert not buckets.take("a", rate=1, capacity=1).allowed


def test_take_all_spends_from_every_bucket_or_from_none(buckets: TokenBuckets) -> None:
    buckets.take("empty", rate=1, capacity=1)
    decisions = buckets.take_all([Bucket("full", 1, 3), Bucket("empty", 1, 1)])
    assert [d.allowed for d in decisions] == [True, False]
    assert decisions[0].remaining == 3
    assert decisions[0].reset_seconds == 0.0  # full: nothing more is coming
    assert buckets.take("full", rate=1, capacity=3).remaining == 2


def test_take_all_of_no_buckets_decides_nothing(buckets: TokenBuckets) -> None:
    assert buckets.take_all([]) == ()


@pytest.mark.parametrize(
    ("rate", "capacity"), [(0, 1), (-1, 1), (float("nan"), 1), (1, 0.5), (1, float("nan"))]
)
def test_a_bucket_that_could_never_admit_is_a_programming_error(
    buckets: TokenBuckets, rate: float, capacity: float
) -> None:
    with pytest.raises(ValueError, match="needs a rate above 0 and a capacity of at least 1"):
        buckets.take("k", rate=rate, capacity=capacity)


def test_one_bucket_twice_in_one_call_is_a_programming_error(buckets: TokenBuckets) -> None:
    with pytest.raises(ValueError, match="each bucket may appear once"):
        buckets.take_all([Bucket("k", 1, 1), Bucket("k", 1, 1)])


def test_a_store_of_no_buckets_is_refused() -> None:
    with pytest.raises(ValueError, match="max_keys must be at least 1"):
        TokenBuckets(max_keys=0)


def test_the_least_recently_used_bucket_is_forgotten_beyond_the_bound(clock: Clock) -> None:
    buckets = TokenBuckets(clock=clock, max_keys=2)
    buckets.take("a", rate=1, capacity=5)
    buckets.take("b", rate=1, capacity=5)
    buckets.take("a", rate=1, capacity=5)  # a is now the most recent
    buckets.take("c", rate=1, capacity=5)
    assert len(buckets) == 2
    assert buckets.take("a", rate=1, capacity=5).remaining == 2  # kept
    assert buckets.take("b", rate=1, capacity=5).remaining == 4  # forgotten: back full


def test_the_default_clock_is_monotonic_time() -> None:
    buckets = TokenBuckets()
    assert buckets.take("k", rate=1, capacity=1).allowed
    assert len(buckets) == 1


@pytest.mark.usefixtures("eager_switching")
def test_eight_threads_draining_one_bucket_get_exactly_its_capacity(clock: Clock) -> None:
    buckets = TokenBuckets(clock=clock)
    start = threading.Barrier(8)
    allowed: list[int] = []

    def hammer() -> None:
        start.wait()
        count = sum(buckets.take("k", rate=1, capacity=100).allowed for _ in range(200))
        allowed.append(count)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 100


# check(): the service's limit, then the consumer's


def test_no_limit_set_decides_nothing(buckets: TokenBuckets) -> None:
    assert limits.check(RateLimits(), buckets, "orders", "alice") is None


def test_a_consumer_limit_does_not_apply_without_a_consumer(buckets: TokenBuckets) -> None:
    assert limits.check(RateLimits(consumer_per_second=1), buckets, "orders", None) is None


def test_a_service_limit_alone_decides_for_the_service(buckets: TokenBuckets) -> None:
    decision = limits.check(RateLimits(service_per_second=2), buckets, "orders", None)
    assert decision is not None
    assert (decision.allowed, decision.remaining, decision.policy) == (True, 1, "service")


def test_a_consumer_refusal_spends_none_of_the_service_limit(buckets: TokenBuckets) -> None:
    rules = RateLimits(service_per_second=2, consumer_per_second=1)
    first = limits.check(rules, buckets, "orders", "alice")
    again = limits.check(rules, buckets, "orders", "alice")
    other = limits.check(rules, buckets, "orders", "bob")
    last = limits.check(rules, buckets, "orders", "carol")
    assert first is not None and first.allowed
    assert again is not None and (again.allowed, again.policy) == (False, "consumer")
    assert other is not None and other.allowed  # alice's refusal left the service's token
    assert last is not None and (last.allowed, last.policy) == (False, "service")


def test_a_service_refusal_spends_none_of_the_consumer_limit(
    buckets: TokenBuckets, clock: Clock
) -> None:
    rules = RateLimits(service_per_second=1, consumer_per_second=0.5)
    assert passes(limits.check(rules, buckets, "orders", "alice"))
    refused = limits.check(rules, buckets, "orders", "bob")
    assert refused is not None and (refused.allowed, refused.policy) == (False, "service")
    clock.advance(1)  # the service has a token again; bob's would be half refilled if spent
    later = limits.check(rules, buckets, "orders", "bob")
    assert later is not None and later.allowed


def test_when_both_refuse_the_longer_wait_decides(buckets: TokenBuckets) -> None:
    rules = RateLimits(service_per_second=1, consumer_per_second=0.25)
    assert passes(limits.check(rules, buckets, "orders", "alice"))
    decision = limits.check(rules, buckets, "orders", "alice")
    assert decision is not None
    assert (decision.allowed, decision.policy, decision.retry_after_seconds) == (
        False,
        "consumer",
        4,
    )


def test_when_both_refuse_with_equal_waits_the_service_decides(buckets: TokenBuckets) -> None:
    rules = RateLimits(service_per_second=1, consumer_per_second=1)
    assert passes(limits.check(rules, buckets, "orders", "alice"))
    decision = limits.check(rules, buckets, "orders", "alice")
    assert decision is not None and (decision.allowed, decision.policy) == (False, "service")


def test_when_both_allow_the_tighter_limit_decides(buckets: TokenBuckets) -> None:
    decision = limits.check(
        RateLimits(service_per_second=100, consumer_per_second=10), buckets, "orders", "alice"
    )
    assert decision is not None
    assert (decision.remaining, decision.policy) == (9, "consumer")


def test_when_both_allow_equally_the_service_decides(buckets: TokenBuckets) -> None:
    decision = limits.check(
        RateLimits(service_per_second=10, consumer_per_second=10), buckets, "orders", "alice"
    )
    assert decision is not None and decision.policy == "service"


def test_consumers_of_different_services_have_their_own_buckets(buckets: TokenBuckets) -> None:
    rules = RateLimits(consumer_per_second=1)
    assert passes(limits.check(rules, buckets, "orders", "alice"))
    assert passes(limits.check(rules, buckets, "payments", "alice"))
    assert not passes(limits.check(rules, buckets, "orders", "alice"))


def test_a_consumer_bucket_never_shares_a_key_with_a_service_bucket(
    buckets: TokenBuckets,
) -> None:
    assert passes(limits.check(RateLimits(service_per_second=1), buckets, "orders", None))
    assert passes(limits.check(RateLimits(consumer_per_second=1), buckets, "orders", "orders"))


@pytest.mark.usefixtures("eager_switching")
def test_eight_threads_of_eight_consumers_spend_the_service_only_on_admitted_requests(
    clock: Clock,
) -> None:
    buckets = TokenBuckets(clock=clock)
    rules = RateLimits(service_per_second=100, consumer_per_second=5)
    start = threading.Barrier(8)
    allowed: list[int] = []

    def hammer(consumer: str) -> None:
        start.wait()
        results = [limits.check(rules, buckets, "orders", consumer) for _ in range(50)]
        allowed.append(sum(1 for d in results if d is not None and d.allowed))

    threads = [threading.Thread(target=hammer, args=(f"c{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 40
    after = limits.check(RateLimits(service_per_second=100), buckets, "orders", None)
    assert after is not None and after.remaining == 59


# Answer fields (draft-ietf-httpapi-ratelimit-headers-10)


def test_an_allowed_answer_carries_the_policy_and_what_is_left(buckets: TokenBuckets) -> None:
    rules = RateLimits(service_per_second=100)
    decision = limits.check(rules, buckets, "orders", None)
    assert decision is not None
    assert limits.headers(decision, rules) == {
        "RateLimit-Policy": '"service";q=100;w=1',
        "RateLimit": '"service";r=99;t=1',
    }


def test_a_refusal_carries_retry_after_equal_to_the_reset(buckets: TokenBuckets) -> None:
    rules = RateLimits(service_per_second=100)
    for _ in range(100):
        limits.check(rules, buckets, "orders", None)
    decision = limits.check(rules, buckets, "orders", None)
    assert decision is not None and not decision.allowed
    assert limits.headers(decision, rules) == {
        "RateLimit-Policy": '"service";q=100;w=1',
        "RateLimit": '"service";r=0;t=1',
        "Retry-After": "1",
    }


def test_a_slow_limit_asks_for_a_longer_wait_in_both_fields(buckets: TokenBuckets) -> None:
    rules = RateLimits(consumer_per_second=0.25)
    limits.check(rules, buckets, "orders", "alice")
    decision = limits.check(rules, buckets, "orders", "alice")
    assert decision is not None
    assert limits.headers(decision, rules) == {
        "RateLimit-Policy": '"consumer";q=1;w=4',
        "RateLimit": '"consumer";r=0;t=4',
        "Retry-After": "4",
    }


def test_the_policy_field_lists_every_limit_whichever_decided() -> None:
    rules = RateLimits(service_per_second=100, consumer_per_second=10, burst_seconds=2)
    decision = Decision(allowed=True, remaining=5, reset_seconds=0.1, retry_after_seconds=0)
    assert limits.headers(decision, rules, "consumer") == {
        "RateLimit-Policy": '"service";q=200;w=2, "consumer";q=20;w=2',
        "RateLimit": '"consumer";r=5;t=1',
    }


def test_a_full_bucket_has_no_reset_to_announce() -> None:
    decision = Decision(allowed=True, remaining=3, reset_seconds=0.0, retry_after_seconds=0)
    found = limits.headers(decision, RateLimits(service_per_second=3), "service")
    assert found["RateLimit"] == '"service";r=3'


def test_a_reset_under_a_second_is_announced_as_one() -> None:
    decision = Decision(allowed=False, remaining=0, reset_seconds=1e-12, retry_after_seconds=1)
    found = limits.headers(decision, RateLimits(service_per_second=MAX_RATE), "service")
    assert found["RateLimit"] == '"service";r=0;t=1'


def test_a_decision_of_no_known_limit_cannot_be_answered() -> None:
    decision = Decision(allowed=True, remaining=1, reset_seconds=1, retry_after_seconds=0)
    with pytest.raises(ValueError, match="say which limit"):
        limits.headers(decision, RateLimits(service_per_second=1))
