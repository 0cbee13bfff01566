"""The registry's rules: who may write what, and what a read returns.

Every write checks its names (the address), then who may make it, and only then reads the
body: a caller that may not write learns nothing from the answer about what its body got
wrong, nor how large a body may be. The body's rules (``validation``, its JSON Schemas and
their engine) are imported by the first write that reads one: neither a routed request nor
the cold start's priming needs them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from chalicelib.auth import Principal, require_admin, require_write
from chalicelib.config import Settings
from chalicelib.errors import InstanceNotFound, PolicyNotFound, TooManyDrains, TooManyInstances
from chalicelib.exposure.document import CLOSED, Exposure
from chalicelib.exposure.view import GatewayView
from chalicelib.instances import (
    Instance,
    RegisterResult,
    Status,
    StoredPolicy,
)
from lambdamesh_routing.hosts import AddressPolicy
from lambdamesh_routing.names import check_name
from lambdamesh_routing.policy import Policy

if TYPE_CHECKING:
    from chalicelib.figures import Reported
    from chalicelib.instances import Registration

Clock = Callable[[], float]


class Lease(NamedTuple):
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
        self,
        service: str,
        instance_id: str,
        now: float,
        status: Status | None = None,
        eureka_dirty: int | None = None,
        figures: str | None = None,
    ) -> tuple[Instance, str | None]: ...

    def deregister(self, service: str, instance_id: str, now: float) -> bool: ...

    def leases(self, service: str, consistent: bool = False) -> list[Lease]: ...

    def listing(self, service: str) -> tuple[list[Lease], Exposure | None]: ...

    def prune(self, service: str, instance_ids: Iterable[str], now: float) -> list[str]: ...

    def services(self) -> list[str]: ...

    def catalog_generation(self, service: str) -> int | None: ...

    def forget(self, service: str, generation: int) -> bool: ...

    def ping(self) -> None: ...

    def policy(self, service: str) -> StoredPolicy | None: ...

    def put_policy(self, service: str, policy: Policy, now: float) -> bool: ...

    def delete_policy(self, service: str) -> bool: ...

    def service_view(self, service: str) -> GatewayView: ...

    def drain(self, service: str, instance_id: str, limit: int) -> bool: ...

    def undrain(self, service: str, instance_id: str) -> bool: ...

    def forget_drains(self, service: str, instance_ids: Iterable[str]) -> None: ...

    def task_instances(self, task_arn: str) -> list[tuple[str, str]]: ...

    def remove_task_instance(self, service: str, instance_id: str, task_arn: str) -> bool: ...


class Registry:
    def __init__(
        self,
        store: RegistryStore,
        addresses: AddressPolicy,
        clock: Clock = time.time,
        max_instances: int = Settings.max_instances_per_service,
        default_exposure: Exposure = CLOSED,
        registered: Callable[[str], None] = lambda service: None,
    ) -> None:
        """``default_exposure`` is what the gateway does with a service that declared none
        (LAMBDAMESH_EDGE_DEFAULT), shown in the service list for those. ``registered`` is told
        each service an instance was stored for (the gateway's cache forgets what it knew of
        it, a miss included, so this container routes to it at once)."""
        self._store = store
        self._addresses = addresses
        self._clock = clock
        self._max_instances = max_instances
        self._default_exposure = default_exposure
        self._registered = registered

    def register(
        self, principal: Principal, service: str, instance_id: str, body: bytes
    ) -> RegisterResult:
        from chalicelib.validation import parse_json_body, parse_registration

        check_name("service", service)
        check_name("instance_id", instance_id)
        require_write(principal, service)
        registration = parse_registration(
            service, instance_id, parse_json_body(body), self._addresses
        )
        return self._store_registration(registration)

    def register_checked(self, principal: Principal, registration: Registration) -> RegisterResult:
        """Store a registration another front door (Eureka's) built and checked with
        ``validation.parse_registration``."""
        require_write(principal, registration.service)
        return self._store_registration(registration)

    def _store_registration(self, registration: Registration) -> RegisterResult:
        now = self._clock()
        self._make_room(registration.service, registration.instance_id, now)
        result = self._store.register(registration, now)
        self._registered(registration.service)
        return result

    @property
    def addresses(self) -> AddressPolicy:
        """Which hosts a registration may name."""
        return self._addresses

    def _make_room(self, service: str, instance_id: str, now: float) -> None:
        """Refuse an instance the service has no room for, and once the stored ones reach the
        cap, delete the lapsed ones (conditionally: a renewed lease stays) and their drains,
        so the service's Query and its drain set stay bounded however fast instances come and
        go.

        A read before the write, not a counter: TTL deletes without telling anyone, so a
        counter would drift. Registrations of new instances that run at the same moment all
        see the same count, so the cap can be exceeded by the number in flight; the next new
        one is refused until enough leases end.
        """
        leases = self._store.leases(service, consistent=True)
        check_room(service, instance_id, leases, now, self._max_instances)
        if len(leases) >= self._max_instances:
            pruned = self._store.prune(service, lapsed(leases, now, keep=instance_id), now)
            self._store.forget_drains(service, pruned)

    def heartbeat(
        self, principal: Principal, service: str, instance_id: str, body: bytes
    ) -> Reported:
        """Renew the lease; the figures the body carries replace the stored ones, and a body
        without any leaves them as they are."""
        from chalicelib.figures import Reported, from_stored, stored
        from chalicelib.validation import parse_heartbeat, parse_json_body

        check_name("service", service)
        check_name("instance_id", instance_id)
        require_write(principal, service)
        now = self._clock()
        beat = parse_heartbeat(parse_json_body(body), now)
        text = None if beat.figures is None else stored(beat.figures)
        instance, kept = self._store.heartbeat(service, instance_id, now, beat.status, figures=text)
        return Reported(instance, from_stored(kept))

    def renew(
        self, principal: Principal, service: str, instance_id: str, eureka_dirty: int | None
    ) -> Instance:
        """A Eureka renew: the lease only, refused (``InstanceNotFound``) when the client
        holds newer data than stored (``eureka_dirty``), so that it registers again."""
        check_name("service", service)
        check_name("instance_id", instance_id)
        require_write(principal, service)
        now = self._clock()
        return self._store.heartbeat(service, instance_id, now, eureka_dirty=eureka_dirty)[0]

    def deregister(self, principal: Principal, service: str, instance_id: str) -> bool:
        """False when there was no such instance."""
        check_name("service", service)
        check_name("instance_id", instance_id)
        require_write(principal, service)
        return self._store.deregister(service, instance_id, self._clock())

    def remove_task(self, task_arn: str) -> Iterator[tuple[str, str]]:
        """Remove every instance the (stopped) ECS task registered, each only while that task
        is still the one it names; yields (service, instance id) of each as it goes, so a
        failure part way still tells what was removed. No principal: ECS is the caller,
        through EventBridge, which IAM alone lets invoke the function."""
        for service, instance_id in self._store.task_instances(task_arn):
            if self._store.remove_task_instance(service, instance_id, task_arn):
                yield service, instance_id

    def live_instances(self, service: str, version: str | None = None) -> list[Reported]:
        """Each with the figures its sidecar last reported."""
        from chalicelib.figures import Reported, from_stored

        check_name("service", service)
        if version is not None:
            check_name("version", version)
        now = self._clock()
        view = self._store.service_view(service)
        return [
            Reported(instance, from_stored(view.figures.get(instance.instance_id)))
            for instance in view.instances
            if instance.is_live(now) and version in (None, instance.version)
        ]

    def drain(self, principal: Principal, service: str, instance_id: str) -> Reported:
        """Take a live instance out of rotation until an operator lifts it.

        A drain is kept by instance id on the service's policy item, not on the instance's
        own, so neither the instance's heartbeats nor its deregistering and registering again
        lift it: it outlives the instance's item. The drains of instances no longer stored are
        dropped here, with the service's view in hand, before the new one is counted against
        the cap: the set then names only stored instances, which the cleanup at registration
        keeps within the instance cap.
        """
        from chalicelib.figures import Reported, from_stored

        check_name("service", service)
        check_name("instance_id", instance_id)
        require_admin(principal, "draining an instance")
        now = self._clock()
        view = self._store.service_view(service)
        found = [i for i in view.instances if i.instance_id == instance_id and i.is_live(now)]
        if not found:
            raise InstanceNotFound(f"instance {instance_id!r} of {service!r} is not registered")
        self._store.forget_drains(service, view.drained - {i.instance_id for i in view.instances})
        if not self._store.drain(service, instance_id, self._max_instances):
            raise TooManyDrains(
                f"service {service!r} holds as many drains as it may, {self._max_instances} "
                "(LAMBDAMESH_MAX_INSTANCES_PER_SERVICE): lift one first"
            )
        return Reported(found[0].replace(drained=True), from_stored(view.figures.get(instance_id)))

    def undrain(self, principal: Principal, service: str, instance_id: str) -> None:
        check_name("service", service)
        check_name("instance_id", instance_id)
        require_admin(principal, "lifting a drain")
        if not self._store.undrain(service, instance_id):
            raise InstanceNotFound(f"instance {instance_id!r} of {service!r} is not drained")

    def services(self) -> list[dict[str, Any]]:
        """Each service with per-version counts of live and total stored instances, and how
        it faces the internet (one Query per service reads both).

        A catalogued service found with nothing stored leaves the catalog, so the list queries
        the services that have instances, not every service ever registered.
        """
        now = self._clock()
        summary = []
        for service in self._store.services():
            leases, exposure = self._store.listing(service)
            if leases:
                entry = summarize(service, leases, now)
                entry["exposure"] = edge_summary(exposure, self._default_exposure)
                summary.append(entry)
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

    def put_policy(self, principal: Principal, service: str, body: bytes) -> tuple[Policy, bool]:
        """Store a validated policy; (the policy, whether the service had none).

        The body is required: it replaces the stored policy whole, so a request that lost its
        body on the way must not store every default and drop the aliases. ``{}`` is a
        document, and stores the defaults.
        """
        from chalicelib.validation import parse_json_body, parse_policy

        check_name("service", service)
        require_admin(principal, "setting a routing policy")
        document = parse_json_body(body, required="a routing policy ({} for every default)")
        policy = parse_policy(service, document)
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


def edge_summary(declared: Exposure | None, default: Exposure) -> dict[str, Any]:
    """How a service faces the internet, for the service list: whether it declared that
    (else the stage's default applies), whether and which versions the gateway serves, and
    who may call. The document itself is at the service's exposure resource."""
    exposure = default if declared is None else declared
    return {
        "declared": declared is not None,
        "exposed": exposure.exposed,
        "versions": None if exposure.versions is None else list(exposure.versions),
        "auth": list(exposure.auth) if exposure.exposed else [],
    }


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
