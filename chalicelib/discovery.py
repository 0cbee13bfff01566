"""What the gateway knows of each service: a short-lived in-memory copy of its instances.

A routed request normally costs no DynamoDB read: the instance list of a service is kept for
``ttl`` seconds, so a deregistered instance leaves rotation within about that long. A name with
no instance is remembered as not found for the same ``ttl``, in a separate bounded cache, so
repeated requests for it cost no read either and a flood of made-up names can neither grow
memory nor push known services out: only a service that has instances enters the main cache.
The price is that a service registering right after a miss becomes routable through this
Lambda within ``ttl``. (Which live instances get traffic is ``outliers``' concern.) When
DynamoDB fails, the
last list of a known service is served for up to ``stale_seconds`` more; a remembered miss is
not, so an outage answers a retryable 503 rather than a 404 that may no longer be true.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple, Protocol

from chalicelib.config import Settings
from chalicelib.errors import RegistryUnavailable
from chalicelib.instances import ServiceView
from chalicelib.observability import logger
from chalicelib.recent import Recent

Clock = Callable[[], float]
MAX_CACHED_SERVICES = 1024
MAX_CACHED_MISSES = 1024
_NOTHING = ServiceView(())


class InstanceSource(Protocol):
    """The one storage verb Discovery needs."""

    def service_view(self, service: str) -> ServiceView:
        """Every stored instance of ``service``, live or not (none when it has none), and
        its routing policy, in one read."""
        ...


class _Entry(NamedTuple):
    view: ServiceView
    loaded_at: float


class Discovery:
    def __init__(
        self,
        store: InstanceSource,
        ttl: float = Settings.cache_seconds,
        stale_seconds: float = Settings.stale_seconds,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        max_services: int = MAX_CACHED_SERVICES,
        max_misses: int = MAX_CACHED_MISSES,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._stale_seconds = stale_seconds
        self._clock = clock
        self.wall_clock = wall_clock
        self._found: Recent[str, _Entry] = Recent(max_services)
        # A service with no instance: nothing to route to, but its policy is still read by
        # its own first sidecar, before that sidecar registers (what its inbound port holds
        # callers to); so a miss keeps the policy, never more.
        self._missing: Recent[str, _Entry] = Recent(max_misses)

    def view(self, service: str) -> ServiceView:
        """The service's instances and policy, from the cache while it is fresh."""
        now = self._clock()
        entry = self._found.get(service)
        if entry is not None and now - entry.loaded_at < self._ttl:
            return entry.view
        missed = self._missing.get(service)
        if missed is not None and now - missed.loaded_at < self._ttl:
            return missed.view
        try:
            loaded = self._store.service_view(service)
        except RegistryUnavailable:
            if entry is None or now - entry.loaded_at >= self._ttl + self._stale_seconds:
                raise
            # A DynamoDB hiccup should not fail every request while a list that was
            # right a moment ago is at hand; leases are still checked against the clock.
            logger.warning("serving a stale instance list", extra={"service": service})
            return entry.view
        return self._remember(service, loaded, now)

    def forget(self, service: str) -> None:
        """Read ``service`` afresh next time: an instance of it was just stored. Its last
        list stays at hand for an outage, within the stale window it already had."""
        self._missing.discard(service)
        entry = self._found.get(service)
        if entry is not None:
            expired = min(entry.loaded_at, self._clock() - self._ttl)
            self._found.put(service, _Entry(entry.view, expired))

    def _remember(self, service: str, loaded: ServiceView, now: float) -> ServiceView:
        if loaded.instances:
            self._missing.discard(service)
            self._found.put(service, _Entry(loaded, now))
            return loaded
        view = _NOTHING if loaded.policy is None else ServiceView((), loaded.policy)
        self._found.discard(service)
        self._missing.put(service, _Entry(view, now))
        return view
