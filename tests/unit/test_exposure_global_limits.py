"""Global rate limits: fixed windows counted by a shared counter (here in memory, as the
conditional UpdateItem would count them), on a clock the test moves."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import pytest

from chalicelib.errors import GatewayMisconfigured, RegistryUnavailable
from chalicelib.exposure import limits
from chalicelib.exposure.checks import Gate
from chalicelib.exposure.document import parse_exposure
from chalicelib.exposure.global_limits import GlobalLimits, counter_key
from chalicelib.exposure.limits import RateLimits
from chalicelib.exposure.view import GatewayView

START = 1_800_000_000.0  # a multiple of 60: windows of every length below start here


@dataclass
class Counts:
    """The shared counter: what the conditional write would store, and every write tried."""

    stored: dict[tuple[str, int], int] = field(default_factory=dict)
    writes: list[tuple[str, int]] = field(default_factory=list)
    failing: bool = False

    def __call__(self, counter: str, window: int, limit: int, expires_at: float) -> int | None:
        self.writes.append((counter, window))
        if self.failing:
            raise RegistryUnavailable("the registry could not write: throttled")
        held = self.stored.get((counter, window), 0)
        if held >= limit:
            return None
        self.stored[(counter, window)] = held + 1
        return held + 1


@dataclass
class Clock:
    now: float = START

    def __call__(self) -> float:
        return self.now


def limited(service: float | None = None, consumer: float | None = None) -> RateLimits:
    return RateLimits(service, consumer, burst_seconds=1, scope="global")


def test_a_window_admits_its_quota_across_every_container_then_refuses_until_it_ends() -> None:
    counts, clock = Counts(), Clock()
    containers = [GlobalLimits(counts, clock) for _ in range(3)]
    rules = limited(service=5)  # 5 a window of 1 s

    decisions = [containers[n % 3].check(rules, "orders", None) for n in range(6)]

    assert [d.allowed for d in decisions if d] == [True] * 5 + [False]
    assert [d.remaining for d in decisions if d][:5] == [4, 3, 2, 1, 0]
    refusal = decisions[-1]
    assert refusal is not None and refusal.retry_after_seconds == 1 and refusal.policy == "service"
    clock.now += 1
    again = containers[0].check(rules, "orders", None)
    assert again is not None and again.allowed


def test_the_refusal_says_how_long_until_the_window_ends() -> None:
    counts, clock = Counts(), Clock()
    rules = RateLimits(service_per_second=0.1, burst_seconds=60, scope="global")  # 6 per 60 s
    limiter = GlobalLimits(counts, clock)
    for _ in range(6):
        limiter.check(rules, "orders", None)
    clock.now += 42.5

    refusal = limiter.check(rules, "orders", None)

    assert refusal is not None and not refusal.allowed
    assert refusal.retry_after_seconds == 18
    assert limits.headers(refusal, rules)["RateLimit"] == '"service";r=0;t=18'


def test_a_full_window_costs_one_refused_write_per_container_not_one_per_request() -> None:
    counts, clock = Counts(), Clock()
    limiter = GlobalLimits(counts, clock)
    rules = limited(service=2)

    for _ in range(50):
        limiter.check(rules, "orders", None)

    assert len(counts.writes) == 3  # two admitted, one refused; then refused from memory
    clock.now += 1
    limiter.check(rules, "orders", None)
    assert len(counts.writes) == 4


def test_the_consumer_is_counted_first_and_its_refusal_costs_the_service_nothing() -> None:
    counts, clock = Counts(), Clock()
    limiter = GlobalLimits(counts, clock)
    rules = limited(service=10, consumer=2)

    for _ in range(5):
        limiter.check(rules, "orders", "acme")
    other = limiter.check(rules, "orders", "globex")

    assert counts.stored[(counter_key("orders", "service", None), int(START))] == 3
    assert other is not None and other.allowed and other.policy == "consumer"
    assert counter_key("orders", "consumer", "acme") != counter_key("orders", "consumer", "globex")


def test_consumer_counters_are_named_by_a_digest_never_by_the_consumer() -> None:
    consumer = "sub:" + "x" * 5000 + "\n#"

    key = counter_key("orders", "consumer", consumer)

    assert key == "orders#consumer#" + hashlib.sha256(consumer.encode()).hexdigest()[:32]


def test_a_counter_that_cannot_be_reached_lets_the_request_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counts = Counts(failing=True)
    limiter = GlobalLimits(counts, Clock())

    with caplog.at_level(logging.WARNING):
        assert limiter.check(limited(service=1), "orders", None) is None
        assert limiter.check(limited(service=1), "orders", None) is None
    assert len(counts.writes) == 2
    assert "global rate limit not counted" in caplog.text


def test_without_a_counter_a_global_limit_is_a_misconfiguration_never_a_silent_pass() -> None:
    exposure = parse_exposure(
        "orders",
        {
            "exposed": True,
            "auth": ["none"],
            "rate_limits": {"service_per_second": 1, "scope": "global"},
        },
    )
    view = GatewayView(instances=(), exposure=exposure)

    with pytest.raises(GatewayMisconfigured):
        Gate().admit(view, "orders", "v1", "GET", {}, "203.0.113.9")


def test_the_gate_counts_a_global_limit_with_its_counter() -> None:
    counts = Counts()
    exposure = parse_exposure(
        "orders",
        {
            "exposed": True,
            "auth": ["none"],
            "rate_limits": {"service_per_second": 1, "scope": "global"},
        },
    )
    view = GatewayView(instances=(), exposure=exposure)
    gate = Gate(clock=Clock(), global_count=counts)

    admitted = gate.admit(view, "orders", "v1", "GET", {}, "203.0.113.9")

    assert counts.writes == [(counter_key("orders", "service", None), int(START))]
    assert admitted.answer_headers["RateLimit-Policy"] == '"service";q=1;w=1'  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("document", "refused"),
    [
        ({"service_per_second": 900, "scope": "global"}, False),
        ({"service_per_second": 901, "scope": "global"}, True),
        ({"consumer_per_second": 1000, "scope": "global"}, True),
        ({"service_per_second": 100_000, "scope": "container"}, False),
    ],
)
def test_a_global_rate_stays_below_what_one_dynamodb_partition_takes(
    document: dict[str, object], refused: bool
) -> None:
    problems = limits.problems(document)

    assert bool(problems) == refused
    if refused:
        assert "scope container" in problems[0]
