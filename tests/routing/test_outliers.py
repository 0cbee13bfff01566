"""Outlier ejection and panic mode: which live instances are offered, over a fake clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lambdamesh_routing.instances import Instance
from lambdamesh_routing.outliers import Outliers
from lambdamesh_routing.policy import OutlierDetection

MakeInstance = Callable[..., Instance]
RULES = OutlierDetection(
    consecutive_failures=3,
    base_ejection_seconds=30,
    max_ejection_seconds=100,
    max_ejected_percent=50,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def four(make_instance: MakeInstance) -> list[Instance]:
    return [make_instance(name) for name in "abcd"]


def offered(outliers: Outliers, live: list[Instance], threshold: int = 50) -> list[str]:
    return [i.instance_id for i in outliers.select(live, threshold).instances]


def fail(outliers: Outliers, instance: Instance, live: list[Instance], times: int) -> float:
    seconds = 0.0
    for _ in range(times):
        seconds = outliers.failed(instance, RULES, live)
    return seconds


def test_a_refused_connection_ejects_at_once_for_the_seconds_given(
    clock: Clock, four: list[Instance]
) -> None:
    subject = Outliers(clock)

    subject.eject_for(four[0], 5)
    assert offered(subject, four) == ["b", "c", "d"]
    clock.now += 5

    assert offered(subject, four) == ["a", "b", "c", "d"]


def test_ejection_is_per_service(clock: Clock, make_instance: MakeInstance) -> None:
    orders, payments = make_instance("a"), make_instance("a", service="payments")
    subject = Outliers(clock)

    subject.eject_for(orders, 5)

    assert subject.is_ejected(orders)
    assert not subject.is_ejected(payments)


def test_consecutive_failures_eject_for_the_base_time(clock: Clock, four: list[Instance]) -> None:
    subject = Outliers(clock)

    assert fail(subject, four[0], four, 2) == 0.0
    assert fail(subject, four[0], four, 1) == 30.0
    assert offered(subject, four) == ["b", "c", "d"]
    clock.now += 30
    assert offered(subject, four) == ["a", "b", "c", "d"]


def test_a_success_between_failures_starts_the_count_again(
    clock: Clock, four: list[Instance]
) -> None:
    subject = Outliers(clock)

    fail(subject, four[0], four, 2)
    subject.succeeded(four[0], RULES)
    fail(subject, four[0], four, 2)

    assert not subject.is_ejected(four[0])


def test_each_ejection_lasts_longer_up_to_the_maximum(clock: Clock, four: list[Instance]) -> None:
    subject = Outliers(clock)
    lengths = []
    for _ in range(5):
        lengths.append(fail(subject, four[0], four, 3))
        clock.now += lengths[-1]

    assert lengths == [30.0, 60.0, 90.0, 100.0, 100.0]


def test_a_healthy_spell_forgives_past_ejections(clock: Clock, four: list[Instance]) -> None:
    subject = Outliers(clock)
    clock.now += fail(subject, four[0], four, 3)
    clock.now += fail(subject, four[0], four, 3)  # 60 s: the second ejection
    clock.now += 2 * RULES.max_ejection_seconds

    subject.succeeded(four[0], RULES)

    assert fail(subject, four[0], four, 3) == 30.0


def test_at_most_the_set_share_of_a_version_is_ejected_at_once(
    clock: Clock, four: list[Instance]
) -> None:
    subject = Outliers(clock)

    ejected = [fail(subject, instance, four, 3) for instance in four]

    assert ejected == [30.0, 30.0, 0.0, 0.0]


def test_one_instance_may_always_be_ejected_unless_the_share_is_zero(
    clock: Clock, make_instance: MakeInstance
) -> None:
    pair = [make_instance("a"), make_instance("b")]
    none_allowed = OutlierDetection(consecutive_failures=1, max_ejected_percent=0)
    small_share = OutlierDetection(consecutive_failures=1, max_ejected_percent=10)

    assert Outliers(clock).failed(pair[0], small_share, pair) > 0
    assert Outliers(clock).failed(pair[0], none_allowed, pair) == 0


def test_below_the_panic_threshold_every_live_instance_is_offered(
    clock: Clock, four: list[Instance]
) -> None:
    subject = Outliers(clock)
    for instance in four[:3]:
        subject.eject_for(instance, 60)

    selection = subject.select(four, 50)

    assert selection.panic
    assert [i.instance_id for i in selection.instances] == ["a", "b", "c", "d"]


def test_at_the_panic_threshold_the_ejected_stay_out(clock: Clock, four: list[Instance]) -> None:
    subject = Outliers(clock)
    for instance in four[:2]:
        subject.eject_for(instance, 60)

    selection = subject.select(four, 50)

    assert not selection.panic
    assert [i.instance_id for i in selection.instances] == ["c", "d"]


def test_with_every_instance_ejected_all_are_offered_even_with_panic_off(
    clock: Clock, four: list[Instance]
) -> None:
    subject = Outliers(clock)
    for instance in four:
        subject.eject_for(instance, 60)

    assert offered(subject, four, threshold=0) == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("status", "counted"),
    [(500, False), (501, False), (505, False), (502, True), (503, True), (504, True), (200, False)],
)
def test_by_default_only_gateway_errors_count_against_an_instance(
    status: int, counted: bool
) -> None:
    assert OutlierDetection().counts(status) is counted


@pytest.mark.parametrize(("status", "counted"), [(500, True), (599, True), (499, False)])
def test_counting_every_5xx_is_the_policys_explicit_choice(status: int, counted: bool) -> None:
    assert OutlierDetection(failure_statuses="all_5xx").counts(status) is counted


@pytest.mark.parametrize(("size", "most"), [(2, 1), (4, 1), (19, 1), (20, 2), (35, 3)])
def test_by_default_a_tenth_of_a_version_may_be_ejected_and_always_one_instance(
    clock: Clock, make_instance: MakeInstance, size: int, most: int
) -> None:
    version = [make_instance(f"i{n}") for n in range(size)]
    subject = Outliers(clock)
    rules = OutlierDetection(consecutive_failures=1)

    ejected = [subject.failed(instance, rules, version) for instance in version]

    assert sum(1 for seconds in ejected if seconds) == most
