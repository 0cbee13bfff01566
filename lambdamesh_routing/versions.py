"""Which version a request goes to: the ``{version}`` segment as given, or, when the service's
policy names it as an alias, the version its match rules or its split pick.

Standard library only (shared with the sidecar). The split is drawn at random by weight,
not rotated: each Lambda container would start a rotation at the same place, so with many
containers serving a few requests each, a 5 % canary could see none. Random draws hold the
split across containers, to within a few percent over a few thousand requests.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from lambdamesh_routing.policy import Alias, Policy


class VersionChooser:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()  # placement only: no secrets drawn

    def resolve(self, requested: str, policy: Policy, headers: Mapping[str, str]) -> str:
        """The version to route to. ``headers`` are the request's, any case."""
        alias = policy.aliases.get(requested)
        if alias is None:
            return requested
        return matched(alias, headers) or self._split(alias)

    def _split(self, alias: Alias) -> str:
        versions = [version for version, weight in alias.split if weight > 0]
        weights = [weight for _, weight in alias.split if weight > 0]
        return self._rng.choices(versions, weights)[0]


def matched(alias: Alias, headers: Mapping[str, str]) -> str | None:
    """The version of the first match rule whose header has its value, if any."""
    if not alias.match:
        return None
    lowered = {name.lower(): value for name, value in headers.items()}
    for rule in alias.match:
        if lowered.get(rule.header) == rule.value:
            return rule.version
    return None
