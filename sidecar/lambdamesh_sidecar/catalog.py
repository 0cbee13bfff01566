"""The routing views of the services this task's app calls, kept fresh in the background.

A service's view is read from the registry the first time the app calls it (that call waits
for it; concurrent first calls share one read, and a failed read is remembered for
``FAILURE_MEMORY_SECONDS`` so a queue of callers does not repeat it), then re-read every
``refresh_seconds`` in the background with its ETag, so an unchanged view costs a 304 and no
body. The refresh reads up to ``REFRESH_WORKERS`` services at once, so a slow one does not hold
the others back.

When the registry cannot be reached, the last view keeps serving for ``stale_seconds`` past
the refresh that should have replaced it (logged once when it starts and once when it ends);
after that the service's calls answer 503 ``registry_unavailable`` until a refresh succeeds.

A name with no instances is kept apart, as the gateway keeps its misses: in a bounded cache
of its own, read again on use once older than ``refresh_seconds`` and never refreshed in the
background, so an app calling made-up names can neither push known services out nor make
the refresher read them. A service the app stops calling is forgotten after
``forget_after`` seconds, and at most ``max_services`` are kept.

A call that its view cannot route, for a service or a version the view does not know, has
the view read again at once (``recheck``), so that a version registered since the last
refresh is routable within about the registry's own cache period rather than a refresh
period. At most once per ``RECHECK_SECONDS`` per service, background refreshes included: an
app calling made-up versions or names cannot make the sidecar poll the registry in a loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lambdamesh_routing.errors import RegistryUnavailable
from lambdamesh_routing.instances import ServiceView
from lambdamesh_routing.wire import parse_view
from lambdamesh_sidecar.client import RegistryError, ViewAnswer
from lambdamesh_sidecar.logs import LOGGER_NAME, fields

Clock = Callable[[], float]
Fetch = Callable[[str, str | None], ViewAnswer]
MAX_SERVICES = 256
MAX_MISSES = 256
FORGET_AFTER_SECONDS = 600.0
FAILURE_MEMORY_SECONDS = 1.0
REFRESH_WORKERS = 4
# The registry answers views from its instance cache (the gateway's LAMBDAMESH_CACHE_SECONDS):
# a view read again sooner than its default period would most likely be the same one.
RECHECK_SECONDS = 1.0


@dataclass
class _Entry:
    view: ServiceView
    etag: str | None
    confirmed_at: float
    used_at: float
    failing: bool = False
    # When it was last asked for, answered or not: what bounds rechecks.
    read_at: float = 0.0


class _Unreadable(Exception):
    """The registry did not answer with a routing view (unreachable, refusing, or garbled)."""


class Catalog:
    def __init__(
        self,
        fetch: Fetch,
        refresh_seconds: float = 5.0,
        stale_seconds: float = 60.0,
        clock: Clock = time.monotonic,
        max_services: int = MAX_SERVICES,
        forget_after: float = FORGET_AFTER_SECONDS,
        logger: logging.Logger | None = None,
        max_misses: int = MAX_MISSES,
    ) -> None:
        self._fetch = fetch
        self._refresh = refresh_seconds
        self._stale = stale_seconds
        self._clock = clock
        self._max_services = max_services
        self._max_misses = max_misses
        self._forget_after = forget_after
        self._log = logger or logging.getLogger(LOGGER_NAME)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._misses: OrderedDict[str, float] = OrderedDict()
        self._failed: dict[str, float] = {}
        self._lock = threading.Lock()
        # One first read per service at a time: concurrent first calls wait for it.
        self._loading: dict[str, threading.Lock] = {}
        self._workers: ThreadPoolExecutor | None = None
        self.reads = 0
        self.unchanged = 0

    def view(self, service: str) -> ServiceView:
        """The service's view, read now if it was never read; ``RegistryUnavailable`` when
        there is none or the last one is older than the registry may be away."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(service)
            if entry is not None:
                entry.used_at = now
                self._entries.move_to_end(service)
            elif now - self._misses.get(service, -1e18) < self._refresh:
                return ServiceView(())
        if entry is None:
            entry = self._first_read(service)
        age = now - entry.confirmed_at
        if age > self._refresh + self._stale:
            raise RegistryUnavailable(
                f"the registry has not confirmed the instances of {service} for {age:.0f} s"
            )
        return entry.view

    def _first_read(self, service: str) -> _Entry:
        with self._lock:
            loading = self._loading.setdefault(service, threading.Lock())
        with loading:
            with self._lock:
                entry = self._entries.get(service)
                failed_at = self._failed.get(service)
            if entry is not None:
                return entry
            now = self._clock()
            if failed_at is not None and now - failed_at < FAILURE_MEMORY_SECONDS:
                raise _unavailable(service)
            try:
                answer, view = self._read(service, None)
            except _Unreadable as exc:
                self._log.warning(
                    "cannot read a routing view %s", fields(service=service, reason=str(exc))
                )
                with self._lock:
                    self._failed[service] = self._clock()
                raise _unavailable(service) from None
            finally:
                with self._lock:
                    self._loading.pop(service, None)
            return self._remember(service, answer, view)

    def recheck(self, service: str) -> ServiceView:
        """The service's view, read again first unless it was read less than
        ``RECHECK_SECONDS`` ago (concurrent rechecks share one read). A read that fails
        leaves the last view in place, as a failed refresh does."""
        with self._lock:
            loading = self._loading.setdefault(service, threading.Lock())
        with loading:
            try:
                self._recheck(service)
            finally:
                with self._lock:
                    self._loading.pop(service, None)
        return self.view(service)

    def _recheck(self, service: str) -> None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(service)
            missed_at = self._misses.get(service)
        if entry is not None:
            if now - entry.read_at >= RECHECK_SECONDS:
                self._refresh_one(service, entry)
            return
        if missed_at is None or now - missed_at < RECHECK_SECONDS:
            return  # never read (``view`` reads it), or read just now
        try:
            answer, view = self._read(service, None)
        except _Unreadable:
            with self._lock:
                if service in self._misses:
                    self._misses[service] = now  # tried: not again for a while
            return
        self._remember(service, answer, view)

    def _remember(self, service: str, answer: ViewAnswer, view: ServiceView | None) -> _Entry:
        now = self._clock()
        entry = _Entry(view or ServiceView(()), answer.etag, now, now, read_at=now)
        with self._lock:
            self._failed.pop(service, None)
            if not entry.view.instances:
                self._misses[service] = now
                self._misses.move_to_end(service)
                while len(self._misses) > self._max_misses:
                    self._misses.popitem(last=False)
                return entry
            self._misses.pop(service, None)
            self._entries[service] = entry
            while len(self._entries) > self._max_services:
                self._entries.popitem(last=False)
        return entry

    def refresh(self) -> None:
        """Read every view again (conditionally), and forget the ones no longer used."""
        now = self._clock()
        with self._lock:
            for service in [
                s for s, e in self._entries.items() if now - e.used_at > self._forget_after
            ]:
                del self._entries[service]
            due = list(self._entries.items())
        if len(due) <= 1:
            for service, entry in due:
                self._refresh_one(service, entry)
            return
        if self._workers is None:
            self._workers = ThreadPoolExecutor(REFRESH_WORKERS, "lambdamesh-refresh")
        list(self._workers.map(lambda item: self._refresh_one(*item), due))

    def _refresh_one(self, service: str, entry: _Entry) -> None:
        entry.read_at = self._clock()
        try:
            answer, view = self._read(service, entry.etag)
        except _Unreadable as exc:
            if not entry.failing:
                entry.failing = True
                self._log.warning(
                    "routing on the last view while the registry does not answer %s",
                    fields(service=service, reason=str(exc), stale_for=f"{self._stale:g}s"),
                )
            return
        if entry.failing:
            entry.failing = False
            self._log.info("the registry answers again %s", fields(service=service))
        if view is not None:
            entry.view, entry.etag = view, answer.etag
        entry.confirmed_at = self._clock()

    def _read(self, service: str, etag: str | None) -> tuple[ViewAnswer, ServiceView | None]:
        """The answer and the view it holds (None when unchanged); ``_Unreadable`` for any
        failure, so that no answer, however odd, can stop the refresher."""
        try:
            answer = self._fetch(service, etag)
            view = None if answer.unchanged else parse_view(service, answer.document)
        except (RegistryError, ValueError) as exc:
            raise _Unreadable(str(exc)) from None
        except Exception as exc:  # the view came from the network: anything may be wrong
            raise _Unreadable(f"{type(exc).__name__}: {exc}") from None
        with self._lock:
            self.reads += 1
            self.unchanged += answer.unchanged
        return answer, view

    def run(self, stop: threading.Event) -> None:
        """The background refresher: until ``stop`` is set."""
        try:
            while not stop.wait(self._refresh):
                self.refresh()
        finally:
            if self._workers is not None:
                self._workers.shutdown(wait=False)

    def services(self) -> list[str]:
        with self._lock:
            return list(self._entries)


def _unavailable(service: str) -> RegistryUnavailable:
    return RegistryUnavailable(f"the registry did not answer for the instances of {service}")
