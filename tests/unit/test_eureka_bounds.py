"""Eureka's reads at their limits: a change journal holding more than one delta reads, a
registry larger than one Lambda answer. No I/O."""

from __future__ import annotations

import re

import pytest

from chalicelib.config import MAX_BODY_LIMIT
from chalicelib.eureka.answers import AnswerTooLarge, document
from chalicelib.eureka.fetches import MAX_DELTA_CHANGES
from chalicelib.eureka.records import Application, Applications
from chalicelib.instances import Change
from tests.unit.test_eureka_registry import NOW, eureka, fetches, stored

# Every reconcile hash code a registry can have: each status with a count of at least one.
REGISTRY_HASH = re.compile(r"([A-Z_]+?_[1-9][0-9]*_)*")


def flood(count: int) -> list[Change]:
    """What one service's token can write in a minute: registrations and cancels of
    instances that come and go, each a change."""
    return [
        Change(NOW - 170 + n * 0.01, "noisy", f"n-{n}", "DELETED", last=stored(f"n-{n}", "noisy"))
        for n in range(count)
    ]


def test_a_delta_cut_short_by_the_journal_makes_every_hash_checking_client_fetch_it_all() -> None:
    """One instance replaced by another keeps every status count: a client that missed both
    changes would find the full registry's hash code again and keep the one that left."""
    replaced = [
        Change(NOW - 10, "orders", "old", "DELETED", last=stored("old")),
        Change(NOW - 10, "orders", "new", "ADDED"),
    ]
    reader, _ = fetches([stored("new")], flood(MAX_DELTA_CHANGES) + replaced)

    delta = reader.delta()

    held = {i.instance_id for app in delta.applications for i in app.instances}
    assert not held & {"old", "new"}  # the journal's read stopped before them
    assert delta.apps_hashcode != reader.applications().apps_hashcode
    assert not REGISTRY_HASH.fullmatch(delta.apps_hashcode)


def test_a_delta_within_the_journals_limit_carries_the_registrys_hash() -> None:
    reader, _ = fetches([stored("new")], flood(MAX_DELTA_CHANGES - 1))

    assert reader.delta().apps_hashcode == "UP_1_"


@pytest.mark.parametrize("accept", ["application/json", None])
def test_a_registry_larger_than_a_lambda_can_answer_is_refused_by_name(accept: str | None) -> None:
    metadata = {f"key-{n}": "v" * 500 for n in range(32)}
    count = MAX_BODY_LIMIT // (32 * 500) + 1
    apps = Applications(
        "1",
        "UP_1_",
        (
            Application(
                "ORDERS",
                tuple(eureka(instance_id=f"i-{n}", metadata=metadata) for n in range(count)),
            ),
        ),
    )

    with pytest.raises(AnswerTooLarge, match=str(MAX_BODY_LIMIT)) as refused:
        document(apps, accept)

    assert refused.value.code == "eureka_answer_too_large"


def test_a_registry_within_the_limit_is_answered() -> None:
    apps = Applications("1", "UP_1_", (Application("ORDERS", (eureka(),)),))

    assert document(apps, "application/json").status_code == 200
