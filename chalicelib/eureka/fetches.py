"""What Eureka clients read: the full registry, one app, one instance, a VIP's instances, and
the delta, all built from the services' views read through the gateway's cache.

The reconcile hash code (``apps__hashcode``) is Eureka's: each status with its count, in
name order (``DOWN_1_UP_3_``), over every instance of the registry, so a client that checks
it after applying a delta (py-eureka-client, Java's) finds the same figure. The delta holds
one entry per instance that changed in the last ``DELTA_WINDOW_SECONDS``, with its latest
action: the instance as it is now for ADDED and MODIFIED, as it last was for DELETED. A lapsed
lease counts as DELETED once it lapses. ``versions__delta`` is a digest of the delta's content,
so it changes exactly when the content does (py-eureka-client skips a delta whose version and
hash it has seen).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from chalicelib.errors import NotFound
from chalicelib.eureka.identity import app_of, service_of
from chalicelib.eureka.mapping import to_eureka
from chalicelib.eureka.records import ActionType, Application, Applications, EurekaInstance
from chalicelib.instances import Change, Instance, ServiceView

# Eureka keeps changes 180 s; clients poll every 30 s.
DELTA_WINDOW_SECONDS = 180.0
# The most changes one delta reads: past it, clients that check the hash fetch the registry.
MAX_DELTA_CHANGES = 1000
# The hash code of a delta that read MAX_DELTA_CHANGES (so may have left some out): no
# registry has it (every status a registry counts, it counts at least once), so every client
# that checks the hash after applying the delta (py-eureka-client, Java's) fetches the full
# registry. The real hash would not do: the changes left out may keep every count as it was
# (one instance replacing another), and a client that missed them would keep the one that
# left for good.
INCOMPLETE_HASH = "INCOMPLETE_0_"
FULL_VERSION = "1"
VIP_VERSION = "-1"


class EurekaNotFound(NotFound):
    code = "eureka_not_found"


class Views(Protocol):
    """The gateway's cache (``discovery.Discovery``), whose views are ``GatewayView``s."""

    def view(self, service: str) -> ServiceView: ...


class Store(Protocol):
    def services(self) -> list[str]: ...

    def changes(self, since: float, limit: int) -> list[Change]: ...


@dataclass(frozen=True)
class _Entry:
    instance: Instance
    record: str | None
    drained: bool


class Fetches:
    def __init__(self, views: Views, store: Store, clock: Callable[[], float]) -> None:
        self._views = views
        self._store = store
        self._clock = clock

    def applications(self) -> Applications:
        now = self._clock()
        apps = self._applications(self._stored(now), now)
        return Applications(FULL_VERSION, reconcile_hash(apps), apps)

    def application(self, app: str) -> Application:
        service = service_of(app)
        now = self._clock()
        instances = tuple(
            _eureka(e) for e in self._service(service, now) if e.instance.is_live(now)
        )
        if not instances:
            raise EurekaNotFound(f"no instance of app {app_of(service)!r} is registered")
        return Application(app_of(service), instances)

    def instance(self, app: str, eureka_id: str) -> EurekaInstance:
        for found in self.application(app).instances:
            if found.instance_id == eureka_id:
                return found
        raise EurekaNotFound(f"instance {eureka_id[:80]!r} of app {app!r} is not registered")

    def as_reported(self, app: str, eureka_id: str) -> tuple[Instance, EurekaInstance]:
        """A live instance as the registry stores it, and as its client last reported it (an
        operator's drain, which the registry keeps apart, is not its status): what a
        metadata update starts from, so that it changes nothing else."""
        service = service_of(app)
        now = self._clock()
        for entry in self._service(service, now):
            reported = to_eureka(entry.instance, entry.record, drained=False)
            if entry.instance.is_live(now) and reported.instance_id == eureka_id:
                return entry.instance, reported
        raise EurekaNotFound(f"instance {eureka_id[:80]!r} of app {app!r} is not registered")

    def instance_anywhere(self, eureka_id: str) -> EurekaInstance:
        for application in self.applications().applications:
            for found in application.instances:
                if found.instance_id == eureka_id:
                    return found
        raise EurekaNotFound(f"instance {eureka_id[:80]!r} is not registered")

    def vip(self, vip: str, secure: bool) -> Applications:
        """The instances whose (secure) VIP address list names ``vip`` exactly."""
        chosen = []
        for application in self.applications().applications:
            matching = tuple(i for i in application.instances if vip in _vips(i, secure))
            if matching:
                chosen.append(Application(application.name, matching))
        apps = tuple(chosen)
        return Applications(VIP_VERSION, reconcile_hash(apps), apps)

    def delta(self) -> Applications:
        now = self._clock()
        since = now - DELTA_WINDOW_SECONDS
        stored = self._stored(now)
        current = {(e.instance.service, e.instance.instance_id): e for e in stored}
        latest: dict[tuple[str, str], EurekaInstance] = {}
        changes = self._store.changes(since, MAX_DELTA_CHANGES)
        for change in changes:
            found = _delta_entry(change, current.get((change.service, change.instance_id)), now)
            if found is not None:
                latest[(change.service, change.instance_id)] = found
        for key, stored_entry in current.items():
            lapsed_at = stored_entry.instance.expires_at
            if since <= lapsed_at <= now:
                latest[key] = to_eureka(
                    stored_entry.instance, stored_entry.record, False, "DELETED", lapsed_at
                )
        apps = _grouped(latest.values())
        full = reconcile_hash(self._applications(stored, now))
        shown = full if len(changes) < MAX_DELTA_CHANGES else INCOMPLETE_HASH
        return Applications(_digest(apps, shown), shown, apps)

    def _stored(self, now: float) -> list[_Entry]:
        return [
            entry for service in self._store.services() for entry in self._service(service, now)
        ]

    def _service(self, service: str, now: float) -> Iterator[_Entry]:
        view = self._views.view(service)
        records: Mapping[str, str] = getattr(view, "eureka", {})
        for instance in view.instances:
            yield _Entry(instance, records.get(instance.instance_id), bool(instance.drained))

    def _applications(self, stored: list[_Entry], now: float) -> tuple[Application, ...]:
        return _grouped(_eureka(e) for e in stored if e.instance.is_live(now))


def _eureka(entry: _Entry, action: ActionType = "ADDED") -> EurekaInstance:
    return to_eureka(entry.instance, entry.record, entry.drained, action)


def _delta_entry(change: Change, current: _Entry | None, now: float) -> EurekaInstance | None:
    if current is not None and current.instance.is_live(now):
        action: ActionType = "MODIFIED" if change.action == "MODIFIED" else "ADDED"
        return _eureka(current, action)
    if change.action == "DELETED" and change.last is not None:
        return to_eureka(change.last, change.last_eureka, False, "DELETED", removed_at=change.at)
    return None


def _grouped(instances: Iterable[EurekaInstance]) -> tuple[Application, ...]:
    by_app: dict[str, list[EurekaInstance]] = {}
    for instance in instances:
        by_app.setdefault(instance.app, []).append(instance)
    return tuple(
        Application(name, tuple(sorted(found, key=lambda i: i.instance_id)))
        for name, found in sorted(by_app.items())
    )


def reconcile_hash(apps: Iterable[Application]) -> str:
    counts = Counter(i.status for app in apps for i in app.instances)
    return "".join(f"{status}_{counts[status]}_" for status in sorted(counts))


def _vips(instance: EurekaInstance, secure: bool) -> list[str]:
    listed = instance.secure_vip_address if secure else instance.vip_address
    return [part.strip() for part in (listed or "").split(",")]


def _digest(apps: tuple[Application, ...], full_hash: str) -> str:
    """A number that changes when the delta's content does; never "1" or "-1"."""
    content = repr((full_hash, apps)).encode("utf-8")
    return str(int(hashlib.sha256(content).hexdigest()[:12], 16) + 2)
