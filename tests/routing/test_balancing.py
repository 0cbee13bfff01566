"""Smooth weighted round robin: exact shares per cycle, interleaved, one rotation per pool."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Any

import pytest

from lambdamesh_routing.balancing import (
    Balancer,
    ConsistentHash,
    InFlight,
    LeastOutstanding,
    WeightedRandom,
    WeightedRoundRobin,
)
from lambdamesh_routing.instances import Instance
from tests.routing.fakes import InOrder

MakeInstance = Callable[..., Instance]


def pool_of(make_instance: MakeInstance, **weights: int) -> list[Instance]:
    return [make_instance(name, weight=weight) for name, weight in weights.items()]


def picks(
    balancer: WeightedRoundRobin,
    instances: Sequence[Instance],
    count: int,
    pool: str = "orders/v1",
    exclude: frozenset[str] = frozenset(),
) -> list[str]:
    chosen = []
    for _ in range(count):
        instance = balancer.choose(pool, instances, exclude)
        assert instance is not None
        chosen.append(instance.instance_id)
    return chosen


def longest_run(sequence: list[str]) -> int:
    return max(len(list(run)) for _, run in groupby(sequence))


def test_fresh_balancers_do_not_all_start_with_the_same_instance(
    make_instance: MakeInstance,
) -> None:
    # Each cold Lambda has a fresh balancer; they must not all pick the same first instance.
    instances = pool_of(make_instance, a=1, b=1, c=1)

    firsts = Counter(
        WeightedRoundRobin(random.Random(seed)).choose("orders/v1", instances).instance_id  # type: ignore[union-attr]
        for seed in range(60)
    )

    assert set(firsts) == {"a", "b", "c"}
    assert min(firsts.values()) >= 10


def test_every_full_cycle_gives_each_instance_exactly_its_weight(
    make_instance: MakeInstance,
) -> None:
    instances = pool_of(make_instance, a=5, b=1, c=1)
    sequence = picks(WeightedRoundRobin(), instances, 7 * 20)

    for start in range(0, len(sequence), 7):
        assert Counter(sequence[start : start + 7]) == {"a": 5, "b": 1, "c": 1}


def test_a_heavy_instance_is_interleaved_never_sent_five_in_a_row(
    make_instance: MakeInstance,
) -> None:
    instances = pool_of(make_instance, a=5, b=1, c=1)

    sequence = picks(WeightedRoundRobin(InOrder()), instances, 70)

    assert sequence[:7] == ["a", "a", "b", "a", "c", "a", "a"]
    assert longest_run(sequence) < 5


def test_shares_follow_arbitrary_weights_over_a_full_cycle(make_instance: MakeInstance) -> None:
    instances = pool_of(make_instance, a=100, b=250, c=1, d=649)

    assert Counter(picks(WeightedRoundRobin(), instances, 1000)) == {
        "a": 100,
        "b": 250,
        "c": 1,
        "d": 649,
    }


def test_equal_weights_rotate_through_every_instance_in_turn(make_instance: MakeInstance) -> None:
    instances = pool_of(make_instance, a=100, b=100, c=100)

    sequence = picks(WeightedRoundRobin(), instances, 30)

    for start in range(0, 30, 3):
        assert sorted(sequence[start : start + 3]) == ["a", "b", "c"]
    assert longest_run(sequence) == 1


def test_an_excluded_instance_is_never_chosen_and_the_rest_share_by_weight(
    make_instance: MakeInstance,
) -> None:
    instances = pool_of(make_instance, a=5, b=2, c=1)

    sequence = picks(WeightedRoundRobin(), instances, 30, exclude=frozenset({"a"}))

    assert Counter(sequence) == {"b": 20, "c": 10}


def test_excluding_every_instance_leaves_none(make_instance: MakeInstance) -> None:
    instances = pool_of(make_instance, a=1, b=1)

    assert WeightedRoundRobin().choose("orders/v1", instances, exclude={"a", "b"}) is None


def test_an_empty_pool_leaves_none() -> None:
    assert WeightedRoundRobin().choose("orders/v1", []) is None


def test_each_pool_keeps_its_own_rotation(make_instance: MakeInstance) -> None:
    instances = pool_of(make_instance, a=5, b=1, c=1)
    alone = picks(WeightedRoundRobin(random.Random(7)), instances, 14)

    shared = WeightedRoundRobin(random.Random(7))
    interleaved: list[str] = []
    for _ in range(14):
        interleaved += picks(shared, instances, 1, pool="orders/v1")
        picks(shared, instances, 3, pool="orders/v2")

    assert interleaved == alone


def test_after_a_membership_change_only_current_instances_are_chosen_by_their_weights(
    make_instance: MakeInstance,
) -> None:
    balancer = WeightedRoundRobin()
    picks(balancer, pool_of(make_instance, a=5, b=1, c=1), 3)

    shares = Counter(picks(balancer, pool_of(make_instance, c=1, d=3), 1000))

    # c carries its earlier rotation credit, so the split may lean by a pick or two at first.
    assert set(shares) == {"c", "d"}
    assert abs(shares["c"] - 250) <= 3


def test_departed_instances_are_forgotten(make_instance: MakeInstance) -> None:
    balancer = WeightedRoundRobin()

    for generation in range(100):
        picks(balancer, [make_instance(f"task-{generation}")], 1)

    # Only the rotation state can show it: ECS replaces tasks for ever, memory must not grow.
    assert len(balancer._current["orders/v1"]) <= 2


# The other strategies


def pick(subject: Balancer, instances: Sequence[Instance], **options: Any) -> str:
    chosen = subject.choose("p", instances, **options)
    assert chosen is not None
    return chosen.instance_id


def shares(picked: list[str]) -> dict[str, float]:
    counts = Counter(picked)
    return {name: count / len(picked) for name, count in counts.items()}


def test_random_draws_by_weight(make_instance: MakeInstance) -> None:
    instances = pool_of(make_instance, a=1, b=3)
    subject = WeightedRandom(random.Random(3))

    got = shares([subject.choose("p", instances).instance_id for _ in range(8000)])  # type: ignore[union-attr]

    assert got["b"] == pytest.approx(0.75, abs=0.02)


def test_least_outstanding_prefers_the_instance_with_fewest_in_flight_for_its_weight(
    make_instance: MakeInstance,
) -> None:
    a, b, c = make_instance("a"), make_instance("b"), make_instance("c", weight=200)
    in_flight = InFlight()
    subject = LeastOutstanding(in_flight, random.Random(1))
    for _ in range(2):
        in_flight.started(a)
    in_flight.started(b)
    for _ in range(2):
        in_flight.started(c)  # 2 for a weight of 200: as loaded as 1 for 100

    picked = {subject.choose("p", [a, b, c]).instance_id for _ in range(200)}  # type: ignore[union-attr]
    in_flight.finished(b)

    assert picked == {"b", "c"}
    assert subject.choose("p", [a, b, c]) == b
    assert subject.choose("p", [a, b, c], exclude={"b"}) == c


def test_consistent_hashing_sends_one_key_to_one_instance(make_instance: MakeInstance) -> None:
    instances = [make_instance(f"i-{n}") for n in range(5)]
    subject = ConsistentHash()

    picked = {subject.choose("p", instances, key="user-42").instance_id for _ in range(500)}  # type: ignore[union-attr]

    assert len(picked) == 1


def moved_share(before: list[Instance], after: list[Instance], keys: int = 20_000) -> float:
    subject = ConsistentHash()
    moved = 0
    for n in range(keys):
        key = f"key-{n}"
        was = subject.choose("p", before, key=key)
        now = subject.choose("p", after, key=key)
        moved += was != now
    return moved / keys


def test_when_one_of_five_leaves_about_a_fifth_of_the_keys_move(
    make_instance: MakeInstance,
) -> None:
    five = [make_instance(f"i-{n}") for n in range(5)]

    assert moved_share(five, five[:4]) == pytest.approx(1 / 5, abs=0.02)


def test_when_a_sixth_joins_about_a_sixth_of_the_keys_move(make_instance: MakeInstance) -> None:
    five = [make_instance(f"i-{n}") for n in range(5)]

    assert moved_share(five, [*five, make_instance("i-5")]) == pytest.approx(1 / 6, abs=0.02)


def test_consistent_hashing_honours_weights_and_a_retry_takes_the_next_best(
    make_instance: MakeInstance,
) -> None:
    heavy, light = make_instance("heavy", weight=300), make_instance("light", weight=100)
    subject = ConsistentHash()

    got = shares([pick(subject, [heavy, light], key=f"k{n}") for n in range(8000)])
    first = pick(subject, [heavy, light], key="k1")
    second = pick(subject, [heavy, light], exclude={first}, key="k1")

    assert got["heavy"] == pytest.approx(0.75, abs=0.02)
    assert sorted([first, second]) == ["heavy", "light"]


def test_without_a_key_consistent_hashing_draws_at_random(make_instance: MakeInstance) -> None:
    instances = [make_instance(f"i-{n}") for n in range(3)]
    subject = ConsistentHash(random.Random(5))

    picked = {subject.choose("p", instances).instance_id for _ in range(300)}  # type: ignore[union-attr]

    assert picked == {"i-0", "i-1", "i-2"}
