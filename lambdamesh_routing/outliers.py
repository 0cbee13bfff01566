"""Which live instances get traffic: outlier ejection, and panic mode when too few are left.

An instance is ejected, for a while, in two ways:

* it refused a connection: for ``eject_seconds``, so the next requests do not pay for the
  same dead address (an address the settings refuse is not the instance's failure: never);
* it reset the connection, timed out, or gave an answer the policy counts (502, 503 and 504,
  or with ``failure_statuses`` ``all_5xx`` any 5xx) ``consecutive_failures`` times in a row:
  for ``base_ejection_seconds`` times the number of times it has been ejected, at most
  ``max_ejection_seconds``, while no more than ``max_ejected_percent`` of its version is
  ejected at once (at least one instance may be, unless it is 0).

Panic mode: when fewer than ``panic_threshold_percent`` of the live instances are usable, all
of them are offered again, so a burst of failures degrades service instead of refusing it.

Standard library only (shared with the sidecar). The state is this process's: on Lambda each
container learns on its own, from the requests it sends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from lambdamesh_routing.instances import Instance
from lambdamesh_routing.policy import OutlierDetection

Clock = Callable[[], float]
# An instance healthy this long after its last ejection ended starts again from the base time.
FORGIVE_AFTER_FACTOR = 2.0


class _Health:
    """One instance's record, changed in place under the lock."""

    __slots__ = ("consecutive_failures", "ejected_until", "ejections")

    def __init__(self) -> None:
        self.consecutive_failures = 0
        self.ejections = 0
        self.ejected_until = 0.0


class Selection(NamedTuple):
    instances: list[Instance]
    panic: bool


class Outliers:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._health: dict[tuple[str, str], _Health] = {}
        self._lock = threading.Lock()

    def select(self, live: Sequence[Instance], panic_threshold_percent: int) -> Selection:
        """The live instances not ejected; all of them when too few are left (panic)."""
        if not self._health:  # no failure counted against any instance: the usual case
            return Selection(list(live), panic=False)
        now = self._clock()
        with self._lock:
            usable = [i for i in live if not self._is_ejected(i, now)]
        if len(usable) * 100 < panic_threshold_percent * len(live) or not usable:
            return Selection(list(live), panic=len(usable) < len(live))
        return Selection(usable, panic=False)

    def is_ejected(self, instance: Instance) -> bool:
        with self._lock:
            return self._is_ejected(instance, self._clock())

    def eject_for(self, instance: Instance, seconds: float) -> None:
        """Eject at once, for ``seconds``: an address that refused a connection."""
        with self._lock:
            health = self._health.setdefault(_key(instance), _Health())
            health.ejected_until = max(health.ejected_until, self._clock() + seconds)

    def succeeded(self, instance: Instance, rules: OutlierDetection) -> None:
        if not self._health:
            return  # nothing to forgive
        with self._lock:
            health = self._health.get(_key(instance))
            if health is None:
                return
            health.consecutive_failures = 0
            forgiven_at = health.ejected_until + FORGIVE_AFTER_FACTOR * rules.max_ejection_seconds
            if self._clock() >= forgiven_at:
                del self._health[_key(instance)]

    def failed(
        self, instance: Instance, rules: OutlierDetection, version: Sequence[Instance]
    ) -> float:
        """Count a failed answer; seconds it is now ejected for, or 0 if it is not."""
        now = self._clock()
        with self._lock:
            health = self._health.setdefault(_key(instance), _Health())
            if self._is_ejected(instance, now):
                return 0.0
            health.consecutive_failures += 1
            if health.consecutive_failures < rules.consecutive_failures:
                return 0.0
            if not self._may_eject(version, rules, now):
                return 0.0
            health.ejections += 1
            health.consecutive_failures = 0
            seconds = min(
                rules.base_ejection_seconds * health.ejections, rules.max_ejection_seconds
            )
            health.ejected_until = now + seconds
            return seconds

    def _may_eject(self, version: Sequence[Instance], rules: OutlierDetection, now: float) -> bool:
        if rules.max_ejected_percent == 0:
            return False
        ejected = sum(1 for i in version if self._is_ejected(i, now))
        allowed = max(1, len(version) * rules.max_ejected_percent // 100)
        return ejected < allowed

    def _is_ejected(self, instance: Instance, now: float) -> bool:
        health = self._health.get(_key(instance))
        return health is not None and health.ejected_until > now


def _key(instance: Instance) -> tuple[str, str]:
    return (instance.service, instance.instance_id)
