"""Choosing an upstream instance: the strategies a policy may name.

* weighted round robin (the default): exact shares, interleaved;
* random, by weight;
* least outstanding requests, counted in this process;
* consistent hashing on a key (a header, a cookie, the client address): weighted rendezvous
  hashing, so one key keeps reaching one instance while the set is stable, and when one of N
  instances leaves or joins only the keys it held (or takes), about 1/N, move.

Standard library only (shared with the sidecar), over plain data plus each strategy's own
state; safe to share between threads (the dev server is threaded; a warm Lambda keeps its
state across calls). That state is per process: on Lambda each container balances on its own.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Protocol

from lambdamesh_routing.instances import Instance


class Balancer(Protocol):
    def choose(
        self,
        pool: str,
        instances: Sequence[Instance],
        exclude: Collection[str] = (),
        key: str | None = None,
    ) -> Instance | None:
        """One of ``instances`` not named in ``exclude``, or None when none is left.

        ``pool`` names the rotation (service and version) so one balancer serves many;
        ``key`` is the consistent-hashing key, which the other strategies ignore.
        """
        ...


class _Strategy(ABC):
    """What every strategy does first: leave out the excluded instances, and choose nothing
    when none is left; ``_pick`` chooses among the rest."""

    def choose(
        self,
        pool: str,
        instances: Sequence[Instance],
        exclude: Collection[str] = (),
        key: str | None = None,
    ) -> Instance | None:
        candidates = [i for i in instances if i.instance_id not in exclude]
        return self._pick(pool, candidates, key) if candidates else None

    @abstractmethod
    def _pick(self, pool: str, candidates: list[Instance], key: str | None) -> Instance:
        """One of ``candidates``, which is never empty."""


class WeightedRoundRobin(_Strategy):
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

    def _pick(self, pool: str, candidates: list[Instance], key: str | None) -> Instance:
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


class WeightedRandom(_Strategy):
    """Each instance with probability weight / total: no shared rotation to fall in step."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()  # placement only: no secrets drawn
        self._lock = threading.Lock()

    def _pick(self, pool: str, candidates: list[Instance], key: str | None) -> Instance:
        with self._lock:
            return self._rng.choices(candidates, [i.weight for i in candidates])[0]


class InFlight:
    """Requests in flight per instance, in this process."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def started(self, instance: Instance) -> None:
        with self._lock:
            self._counts[(instance.service, instance.instance_id)] += 1

    def finished(self, instance: Instance) -> None:
        with self._lock:
            key = (instance.service, instance.instance_id)
            self._counts[key] -= 1
            if self._counts[key] <= 0:
                del self._counts[key]

    def count(self, instance: Instance) -> int:
        with self._lock:
            return self._counts[(instance.service, instance.instance_id)]


class LeastOutstanding(_Strategy):
    """The instance with the fewest requests in flight for its weight; ties drawn at random.

    Counted in this process: a Lambda container serves one request at a time, so on Lambda
    every count is zero at choosing time and this is random by weight; under the threaded dev
    server, or in the sidecar, it steers away from slow instances.
    """

    def __init__(self, in_flight: InFlight, rng: random.Random | None = None) -> None:
        self._in_flight = in_flight
        self._random = WeightedRandom(rng)

    def _pick(self, pool: str, candidates: list[Instance], key: str | None) -> Instance:
        loads = {i.instance_id: self._in_flight.count(i) / i.weight for i in candidates}
        lightest = min(loads.values())
        lightest_ones = [i for i in candidates if loads[i.instance_id] == lightest]
        return self._random._pick(pool, lightest_ones, None)


class ConsistentHash(_Strategy):
    """Weighted rendezvous hashing: each instance scores ``-weight / ln(h)``, h the key's
    hash with the instance id in (0, 1); the highest wins. Without a key (the header or
    cookie missing) it falls back to random by weight."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = WeightedRandom(rng)

    def _pick(self, pool: str, candidates: list[Instance], key: str | None) -> Instance:
        if key is None:
            return self._random._pick(pool, candidates, None)
        return max(candidates, key=lambda i: score(key, i.instance_id, i.weight))


def score(key: str, instance_id: str, weight: int) -> float:
    digest = hashlib.blake2b(f"{key}\0{instance_id}".encode(), digest_size=8).digest()
    unit = (int.from_bytes(digest, "big") + 1) / (2**64 + 2)  # in (0, 1)
    return -weight / math.log(unit)


class Strategies:
    """One of each strategy, shared by every service of this process, picked by policy."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.in_flight = InFlight()
        self._by_name: dict[str, Balancer] = {
            "weighted_round_robin": WeightedRoundRobin(rng),
            "random": WeightedRandom(rng),
            "least_outstanding": LeastOutstanding(self.in_flight, rng),
            "consistent_hash": ConsistentHash(rng),
        }

    def named(self, name: str) -> Balancer:
        return self._by_name[name]
