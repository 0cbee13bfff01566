"""Resolving the {version} segment through a policy's aliases: match rules, then the split."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from lambdamesh_routing.policy import DEFAULT_POLICY, Alias, MatchRule, Policy
from lambdamesh_routing.versions import VersionChooser

CANARY = Policy(
    aliases={
        "live": Alias(
            split=(("v1", 95), ("v2", 5)),
            match=(
                MatchRule("x-canary", "always", "v2"),
                MatchRule("x-canary", "never", "v1"),
            ),
        )
    }
)


def chooser(seed: int = 7) -> VersionChooser:
    return VersionChooser(random.Random(seed))


def test_a_version_that_is_no_alias_is_used_as_given() -> None:
    assert chooser().resolve("v3", CANARY, {}) == "v3"
    assert chooser().resolve("live", DEFAULT_POLICY, {}) == "live"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_split_holds_within_a_few_percent(seed: int) -> None:
    subject = chooser(seed)

    counts = Counter(subject.resolve("live", CANARY, {}) for _ in range(10_000))

    assert set(counts) == {"v1", "v2"}
    assert counts["v2"] / 10_000 == pytest.approx(0.05, abs=0.01)


def test_the_first_matching_rule_wins_whatever_the_header_names_case() -> None:
    subject = chooser()

    always = {subject.resolve("live", CANARY, {"X-Canary": "always"}) for _ in range(200)}
    never = {subject.resolve("live", CANARY, {"x-CANARY": "never"}) for _ in range(200)}

    assert always == {"v2"}
    assert never == {"v1"}


def test_a_header_with_another_value_falls_through_to_the_split() -> None:
    subject = chooser()

    seen = {subject.resolve("live", CANARY, {"X-Canary": "sometimes"}) for _ in range(2000)}

    assert seen == {"v1", "v2"}


def test_a_version_weighted_zero_is_never_chosen() -> None:
    policy = Policy(aliases={"live": Alias(split=(("v1", 0), ("v2", 1)))})
    subject = chooser()

    assert {subject.resolve("live", policy, {}) for _ in range(500)} == {"v2"}
