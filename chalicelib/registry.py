"""The registry's rules: who may write what, and what a read returns."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from chalicelib.auth import Principal, require_admin, require_write
from chalicelib.config import Settings
from chalicelib.errors import InstanceNotFound, PolicyNotFound, TooManyInstances
from chalicelib.instances import (
    Instance,
    RegisterResult,
    Registration,
    ServiceView,
    Status,
    StoredPolicy,
)
from chalicelib.validation import parse_heartbeat, parse_policy, parse_registration
from lambdamesh_routing.hosts import HostPolicy
from lambdamesh_routing.names import check_name
from lambdamesh_routing.policy import Policy

Clock = Callable[[], float]


@dataclass(frozen=True)
class Lease:
    """What the instance cap and the service list need of a stored instance."""

    instance_id: str
    version: str
    expires_at: float

    def is_live(self, now: float) -> bool:
        return self.expires_at > now


class RegistryStore(Protocol):
    """The storage verbs the registry's rules need; ``storage.InstanceStore`` is the one
    that speaks to DynamoDB."""

    def register(self, reg: Registration, now: float) -> RegisterResult: ...

    def heartbeat(
        self, service: str, instance_id: str, now: float, status: Status | None = None
    ) -> Instance: ...

    def deregister(self, service: str, instance_id: str) -> None: ...

    def leases(self, service: str, consistent: bool = False) -> list[Lease]: ...

    def prune(self, service: str, instance_ids: Iterable[str], now: float) -> None: ...

    def services(self) -> list[str]: ...

    def catalog_generation(self, service: str) -> int | None: ...

    def forget(self, service: str, generation: int) -> bool: ...

    def ping(self) -> None: ...

    def policy(self, service: str) -> StoredPolicy | None: ...

    def put_policy(self, service: str, policy: Policy, now: float) -> bool: ...

    def delete_policy(self, service: str) -> bool: ...

    def service_view(self, service: str) -> ServiceView: ...

    def drain(self, service: str, instance_id: str) -> None: ...

    def undrain(self, service: str, instance_id: str) -> bool: ...

    def forget_drains(self, service: str, instance_ids: Iterable[str]) -> None: ...


class Registry:
    def __init__(
        self,
        store: RegistryStore,
        policy: HostPolicy,
        clock: Clock = time.time,
        max_instances: int = Settings.max_instances_per_service,
    ) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock
        self._max_instances = max_instances

    def register(
        self, principal: Principal, service: str, instance_id: str, body: Any
    ) -> RegisterResult:
        registration = parse_registration(service, instance_id, body, self._policy)
        require_write(principal, service)
        now = self._clock()
        self._make_room(registration.service, registration.instance_id, now)
        return self._store.register(registration, now)

    def _make_room(self, service: str, instance_id: str, now: float) -> None:
        """Refuse an instance the service has no room for, and once the stored ones reach the
        cap, delete the lapsed ones (conditionally: a renewed lease stays), so the service's
        Query stays bounded however fast instances come and go.

        A read before the write, not a counter: TTL deletes without telling anyone, so a
        counter would drift. Registrations of new instances that run at the same moment all
        see the same count, so the cap can be exceeded by the number in flight; the next new
        one is refused until enough leases end.
        """
        leases = self._store.leases(service, consistent=True)
        check_room(service, instance_id, leases, now, self._max_instances)
        if len(leases) >= self._max_instances:
            self._store.prune(service, lapsed(leases, now, keep=instance_id), now)

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
            for instance in self._store.service_view(service).instances
            if instance.is_live(now) and version in (None, instance.version)
        ]

    def drain(self, principal: Principal, service: str, instance_id: str) -> Instance:
        """Take a live instance out of rotation until an operator lifts it."""
        check_name("service", service)
        check_name("instance_id", instance_id)
        require_admin(principal, "draining an instance")
        now = self._clock()
        view = self._store.service_view(service)
        found = [i for i in view.instances if i.instance_id == instance_id and i.is_live(now)]
        if not found:
            raise InstanceNotFound(f"instance {instance_id!r} of {service!r} is not registered")
        self._store.drain(service, instance_id)
        # A drain outlives deregistration (a re-registration must not lift it), so the drains
        # of instances no longer stored are dropped here, keeping the set bounded.
        self._store.forget_drains(service, view.drained - {i.instance_id for i in view.instances})
        return replace(found[0], drained=True)

    def undrain(self, principal: Principal, service: str, instance_id: str) -> None:
        check_name("service", service)
        check_name("instance_id", instance_id)
        require_admin(principal, "lifting a drain")
        if not self._store.undrain(service, instance_id):
            raise InstanceNotFound(f"instance {instance_id!r} of {service!r} is not drained")

    def services(self) -> list[dict[str, Any]]:
        """Each service with per-version counts of live and total stored instances.

        A catalogued service found with nothing stored leaves the catalog, so the list queries
        the services that have instances, not every service ever registered.
        """
        now = self._clock()
        summary = []
        for service in self._store.services():
            leases = self._store.leases(service)
            if leases:
                summary.append(summarize(service, leases, now))
            else:
                self._forget_if_empty(service)
        return summary

    def _forget_if_empty(self, service: str) -> None:
        """Every registration bumps its catalog entry's generation after writing its instance.
        Reading the generation before a consistent check for emptiness, and deleting only
        while it is unchanged, cannot drop the entry of a service that just got an instance:
        either the check sees the instance, or its registration bumps the generation after
        the check (the delete is refused) or writes the entry again after the delete."""
        generation = self._store.catalog_generation(service)
        if generation is not None and not self._store.leases(service, consistent=True):
            self._store.forget(service, generation)

    def policy(self, service: str) -> StoredPolicy:
        check_name("service", service)
        stored = self._store.policy(service)
        if stored is None:
            raise PolicyNotFound(f"service {service!r} has no routing policy: defaults apply")
        return stored

    def put_policy(self, principal: Principal, service: str, body: Any) -> tuple[Policy, bool]:
        """Store a validated policy; (the policy, whether the service had none)."""
        policy = parse_policy(service, body)
        require_admin(principal, "setting a routing policy")
        return policy, self._store.put_policy(service, policy, self._clock())

    def delete_policy(self, principal: Principal, service: str) -> None:
        check_name("service", service)
        require_admin(principal, "deleting a routing policy")
        if not self._store.delete_policy(service):
            raise PolicyNotFound(f"service {service!r} has no routing policy")

    def now(self) -> float:
        return self._clock()

    def ping(self) -> None:
        self._store.ping()


def check_room(service: str, instance_id: str, leases: list[Lease], now: float, limit: int) -> None:
    """A live instance may always register again; another needs fewer than ``limit`` live."""
    live = {lease.instance_id for lease in leases if lease.is_live(now)}
    if instance_id in live or len(live) < limit:
        return
    raise TooManyInstances(
        f"service {service!r} has {len(live)} live instances and the limit is {limit} "
        "(LAMBDAMESH_MAX_INSTANCES_PER_SERVICE): deregister one or wait for a lease to lapse"
    )


def lapsed(leases: list[Lease], now: float, keep: str) -> list[str]:
    """The instances whose lease has ended, but ``keep``, which is about to be written."""
    return [
        lease.instance_id
        for lease in leases
        if not lease.is_live(now) and lease.instance_id != keep
    ]


def summarize(service: str, leases: list[Lease], now: float) -> dict[str, Any]:
    versions: dict[str, dict[str, int]] = defaultdict(lambda: {"live": 0, "total": 0})
    for lease in leases:
        counts = versions[lease.version]
        counts["total"] += 1
        counts["live"] += lease.is_live(now)
    return {
        "service": service,
        "live": sum(c["live"] for c in versions.values()),
        "total": len(leases),
        "versions": dict(sorted(versions.items())),
    }
