"""Choosing an upstream instance: a small strategy interface and weighted round robin.

Strategies are pure over plain data (plus their own rotation state) and safe to share between
threads; `chalice local` serves requests concurrently and a warm Lambda keeps them across calls.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Collection, Sequence
from typing import Protocol

from chalicelib.instances import Instance


class Balancer(Protocol):
    def choose(
        self, pool: str, instances: Sequence[Instance], exclude: Collection[str] = ()
    ) -> Instance | None:
        """One of ``instances`` not named in ``exclude``, or None when none is left.

        ``pool`` names the rotation (service and version) so one balancer serves many.
        """
        ...


class WeightedRoundRobin:
    """Smooth weighted round robin (as nginx does): an instance of weight 3 among two of
    weight 1 gets 3 of every 5 requests, interleaved rather than in bursts."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._current: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()
        # Ties go to the first in order, so every cold Lambda would send its first request
        # to the same instance and a burst of cold starts would pile onto it. Each pool's
        # order is rotated by a random offset instead; the rotation itself stays exact.
        self._offsets: dict[str, int] = {}
        self._rng = rng or random.Random()  # placement only: no secrets drawn

    def choose(
        self, pool: str, instances: Sequence[Instance], exclude: Collection[str] = ()
    ) -> Instance | None:
        candidates = [i for i in instances if i.instance_id not in exclude]
        if not candidates:
            return None
        with self._lock:
            if pool not in self._current:
                self._current[pool] = {}
                self._offsets[pool] = self._rng.randrange(1 << 30)
            current = self._current[pool]
            offset = self._offsets[pool] % len(candidates)
            candidates = candidates[offset:] + candidates[:offset]
            total = 0
            best: Instance | None = None
            for instance in candidates:
                score = current.get(instance.instance_id, 0) + instance.weight
                current[instance.instance_id] = score
                total += instance.weight
                if best is None or score > current[best.instance_id]:
                    best = instance
            assert best is not None
            current[best.instance_id] -= total
            self._forget_departed(current, candidates)
        return best

    @staticmethod
    def _forget_departed(current: dict[str, int], candidates: Sequence[Instance]) -> None:
        if len(current) > 2 * len(candidates):
            alive = {i.instance_id for i in candidates}
            for instance_id in [k for k in current if k not in alive]:
                del current[instance_id]
