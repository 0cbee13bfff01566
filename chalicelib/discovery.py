"""What the gateway knows of each service: a short-lived in-memory copy of its instances.

A routed request normally costs no DynamoDB read: the instance list of a service is kept for
``ttl`` seconds (1 s by default), so a deregistered instance leaves rotation within about that
long. Instances that refused a connection are ejected locally for a few seconds so the next
requests do not pay for the same dead address. When DynamoDB fails, the last list is served for
up to ``stale_seconds`` more.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.errors import (
    NoLiveInstance,
    RegistryUnavailable,
    ServiceNotFound,
    VersionNotFound,
)
from chalicelib.instances import Instance
from chalicelib.observability import logger
from chalicelib.storage import InstanceStore

Clock = Callable[[], float]
MAX_CACHED_SERVICES = 1024


@dataclass(frozen=True)
class _Entry:
    instances: tuple[Instance, ...]
    loaded_at: float


def routable(
    service: str,
    version: str,
    instances: tuple[Instance, ...],
    now: float,
    ejected: frozenset[str] = frozenset(),
) -> list[Instance]:
    """The instances a request may go to, or the reason there are none."""
    if not instances:
        raise ServiceNotFound(f"no service named {service!r} is registered")
    of_version = [i for i in instances if i.version == version]
    if not of_version:
        raise VersionNotFound(f"service {service!r} has no version {version!r}")
    live = [i for i in of_version if i.is_routable(now)]
    if not live:
        down = sum(1 for i in of_version if i.is_live(now))
        raise NoLiveInstance(
            f"no live instance of {service!r} version {version!r}: "
            f"{down} reported DOWN, {len(of_version) - down} with lapsed leases"
        )
    preferred = [i for i in live if i.instance_id not in ejected]
    return preferred or live


class Discovery:
    def __init__(
        self,
        store: InstanceStore,
        ttl: float = 1.0,
        eject_seconds: float = 5.0,
        stale_seconds: float = 30.0,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._eject_seconds = eject_seconds
        self._stale_seconds = stale_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._entries: dict[str, _Entry] = {}
        self._ejected: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def routable(self, service: str, version: str) -> list[Instance]:
        instances = self._instances(service)
        return routable(service, version, instances, self._wall_clock(), self._ejected_ids(service))

    def eject(self, instance: Instance) -> None:
        with self._lock:
            self._ejected[(instance.service, instance.instance_id)] = (
                self._clock() + self._eject_seconds
            )

    def _ejected_ids(self, service: str) -> frozenset[str]:
        now = self._clock()
        with self._lock:
            expired = [key for key, until in self._ejected.items() if until <= now]
            for key in expired:
                del self._ejected[key]
            return frozenset(i for (s, i) in self._ejected if s == service)

    def _instances(self, service: str) -> tuple[Instance, ...]:
        now = self._clock()
        entry = self._entries.get(service)
        if entry is None or now - entry.loaded_at >= self._ttl:
            try:
                loaded = tuple(self._store.instances(service))
            except RegistryUnavailable:
                if entry is None or now - entry.loaded_at >= self._ttl + self._stale_seconds:
                    raise
                # A DynamoDB hiccup should not fail every request while a list that was
                # right a moment ago is at hand; leases are still checked against the clock.
                logger.warning("serving a stale instance list", extra={"service": service})
                return entry.instances
            entry = _Entry(loaded, now)
            with self._lock:  # the dev server is threaded; eviction iterates the dict
                self._entries.pop(service, None)
                if len(self._entries) >= MAX_CACHED_SERVICES:
                    self._entries.pop(next(iter(self._entries)), None)
                self._entries[service] = entry
        return entry.instances
