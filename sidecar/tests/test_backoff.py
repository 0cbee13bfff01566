"""Unit tests of full-jitter backoff."""

from __future__ import annotations

import random

import pytest
from sidecar_testkit import MaxRng

from lambdamesh_sidecar.backoff import Backoff


def test_ceiling_doubles_from_the_base_up_to_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=30.0)

    assert [backoff.ceiling(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_ceiling_stays_finite_after_very_many_attempts() -> None:
    assert Backoff(base=0.5, cap=30.0).ceiling(10_000) == 30.0


def test_negative_attempt_is_treated_as_the_first() -> None:
    assert Backoff(base=0.5).ceiling(-3) == 0.5


@pytest.mark.parametrize("attempt", [0, 1, 5, 50])
def test_delay_is_drawn_between_zero_and_the_ceiling(attempt: int) -> None:
    backoff = Backoff(base=0.5, cap=30.0)
    rng = random.Random(7)

    delays = [backoff.delay(attempt, rng) for _ in range(200)]

    assert all(0.0 <= delay <= backoff.ceiling(attempt) for delay in delays)
    assert len(set(delays)) > 100, "full jitter spreads retries out"


def test_delay_uses_the_injected_random_source() -> None:
    assert Backoff(base=1.0, cap=60.0).delay(3, MaxRng()) == 8.0
