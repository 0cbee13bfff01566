"""Fakes for routing decisions, shared with the tiers that drive the gateway."""

from __future__ import annotations

import random


class InOrder(random.Random):
    """Starts every balancer rotation at the first instance, so exact sequences can be
    asserted (production rotations start at a random one)."""

    def randrange(self, *args: object, **kwargs: object) -> int:
        return 0
