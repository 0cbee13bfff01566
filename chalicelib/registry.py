"""The registry's rules: who may write what, and what a read returns."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

from chalicelib.auth import Principal, require_write
from chalicelib.hosts import HostPolicy
from chalicelib.instances import Instance, RegisterResult, Registration, Status
from chalicelib.validation import check_name, parse_heartbeat, parse_registration

Clock = Callable[[], float]


class RegistryStore(Protocol):
    """The storage verbs the registry's rules need; ``storage.InstanceStore`` is the one
    that speaks to DynamoDB."""

    def register(self, reg: Registration, now: float) -> RegisterResult: ...

    def heartbeat(
        self, service: str, instance_id: str, now: float, status: Status | None = None
    ) -> Instance: ...

    def deregister(self, service: str, instance_id: str) -> None: ...

    def instances(self, service: str) -> list[Instance]: ...

    def services(self) -> list[str]: ...

    def ping(self) -> None: ...


class Registry:
    def __init__(self, store: RegistryStore, policy: HostPolicy, clock: Clock = time.time) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock

    def register(
        self, principal: Principal, service: str, instance_id: str, body: Any
    ) -> RegisterResult:
        registration = parse_registration(service, instance_id, body, self._policy)
        require_write(principal, service)
        return self._store.register(registration, self._clock())

    def heartbeat(
        self, principal: Principal, service: str, instance_id: str, body: Any
    ) -> Instance:
        check_name("service", service)
        check_name("instance_id", instance_id)
        status = parse_heartbeat(body)
        require_write(principal, service)
        return self._store.heartbeat(service, instance_id, self._clock(), status)

    def deregister(self, principal: Principal, service: str, instance_id: str) -> None:
        check_name("service", service)
        check_name("instance_id", instance_id)
        require_write(principal, service)
        self._store.deregister(service, instance_id)

    def live_instances(self, service: str, version: str | None = None) -> list[Instance]:
        check_name("service", service)
        if version is not None:
            check_name("version", version)
        now = self._clock()
        return [
            instance
            for instance in self._store.instances(service)
            if instance.is_live(now) and version in (None, instance.version)
        ]

    def services(self) -> list[dict[str, Any]]:
        """Each service with per-version counts of live and total stored instances."""
        now = self._clock()
        summary = []
        for service in self._store.services():
            instances = self._store.instances(service)
            if not instances:
                continue
            summary.append(summarize(service, instances, now))
        return summary

    def now(self) -> float:
        return self._clock()

    def ping(self) -> None:
        self._store.ping()


def summarize(service: str, instances: list[Instance], now: float) -> dict[str, Any]:
    versions: dict[str, dict[str, int]] = defaultdict(lambda: {"live": 0, "total": 0})
    for instance in instances:
        counts = versions[instance.version]
        counts["total"] += 1
        counts["live"] += instance.is_live(now)
    return {
        "service": service,
        "live": sum(c["live"] for c in versions.values()),
        "total": len(instances),
        "versions": dict(sorted(versions.items())),
    }
