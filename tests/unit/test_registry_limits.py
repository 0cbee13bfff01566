"""The instance cap, the bounded instance size, the bounded drain set and the service list's
pruning, over plain data and an in-memory store."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import replace

import pytest

from chalicelib.auth import ADMIN_SCOPE, Principal
from chalicelib.config import MAX_BODY_LIMIT, MAX_INSTANCES_LIMIT, Settings
from chalicelib.errors import InvalidName, TooManyDrains, TooManyInstances
from chalicelib.exposure.document import Exposure
from chalicelib.exposure.view import GatewayView
from chalicelib.figures import CallFigures, Figures, Reported
from chalicelib.instances import (
    Instance,
    RegisterResult,
    Registration,
    Status,
    StoredPolicy,
)
from chalicelib.registry import Lease, Registry, check_room, lapsed
from chalicelib.validation import (
    MAX_INSTANCE_JSON,
    MAX_POLICY_JSON,
    instance_json_size,
)
from lambdamesh_routing.hosts import AddressPolicy
from lambdamesh_routing.limits import MAX_LEASE_SECONDS
from lambdamesh_routing.names import MAX_METADATA_VALUE, check_name
from lambdamesh_routing.policy import Policy

NOW = 1_800_000_000.0
ADMIN = Principal(ADMIN_SCOPE)
BODY = {"version": "v1", "host": "orders.example.com", "port": 80}
# Lambda's limit on an answer; the body crosses it base64-encoded.
LAMBDA_ANSWER = 6_000_000
DYNAMODB_ITEM = 400 * 1024


class InMemoryStore:
    """The registry's storage verbs over a dict, counting the reads that matter here."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Instance] = {}
        self.catalog: dict[str, int] = {}
        self.drained: dict[str, set[str]] = {}
        self.full_reads = 0

    def register(self, reg: Registration, now: float) -> RegisterResult:
        old = self.items.get((reg.service, reg.instance_id))
        own = {k: v for k, v in vars(reg).items() if k not in ("eureka", "eureka_dirty")}
        instance = Instance(
            **own,
            expires_at=now + reg.lease_seconds,
            registered_at=now,
            updated_at=now,
        )
        self.items[(reg.service, reg.instance_id)] = instance
        self.catalog[reg.service] = self.catalog.get(reg.service, 0) + 1
        return RegisterResult(instance, old is None or not old.is_live(now))

    def heartbeat(
        self,
        service: str,
        instance_id: str,
        now: float,
        status: Status | None = None,
        eureka_dirty: int | None = None,
        figures: str | None = None,
    ) -> tuple[Instance, str | None]:
        raise NotImplementedError

    def deregister(self, service: str, instance_id: str, now: float) -> bool:
        return self.items.pop((service, instance_id), None) is not None

    def service_view(self, service: str) -> GatewayView:
        self.full_reads += 1
        drained = self.drained.get(service, set())
        instances = tuple(
            i.replace(drained=i.instance_id in drained)
            for (s, _), i in sorted(self.items.items())
            if s == service
        )
        return GatewayView(instances, None, frozenset(drained))

    def drain(self, service: str, instance_id: str, limit: int) -> bool:
        drained = self.drained.setdefault(service, set())
        if instance_id not in drained and len(drained) >= limit:
            return False
        drained.add(instance_id)
        return True

    def forget_drains(self, service: str, instance_ids: Iterable[str]) -> None:
        self.drained.get(service, set()).difference_update(instance_ids)

    def leases(self, service: str, consistent: bool = False) -> list[Lease]:
        return [
            Lease(i.instance_id, i.version, i.expires_at)
            for (s, _), i in sorted(self.items.items())
            if s == service
        ]

    def listing(self, service: str) -> tuple[list[Lease], Exposure | None]:
        return self.leases(service), None

    def prune(self, service: str, instance_ids: Iterable[str], now: float) -> list[str]:
        deleted = []
        for instance_id in instance_ids:
            found = self.items.get((service, instance_id))
            if found is None or not found.is_live(now):
                self.items.pop((service, instance_id), None)
                deleted.append(instance_id)
        return deleted

    def services(self) -> list[str]:
        return sorted(self.catalog)

    def catalog_generation(self, service: str) -> int | None:
        return self.catalog.get(service)

    def forget(self, service: str, generation: int) -> bool:
        if self.catalog.get(service) != generation:
            return False
        del self.catalog[service]
        return True

    def ping(self) -> None:
        pass

    def policy(self, service: str) -> StoredPolicy | None:
        raise NotImplementedError

    def put_policy(self, service: str, policy: Policy, now: float) -> bool:
        raise NotImplementedError

    def delete_policy(self, service: str) -> bool:
        raise NotImplementedError

    def undrain(self, service: str, instance_id: str) -> bool:
        raise NotImplementedError

    def task_instances(self, task_arn: str) -> list[tuple[str, str]]:
        raise NotImplementedError

    def remove_task_instance(self, service: str, instance_id: str, task_arn: str) -> bool:
        raise NotImplementedError


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def encoded(fields: dict[str, object]) -> bytes:
    """A request body, as the registry receives it."""
    return json.dumps(fields).encode()


def registry(store: InMemoryStore, clock: Clock, limit: int) -> Registry:
    return Registry(store, AddressPolicy(), clock=clock, max_instances=limit)


def leases(*live: str, lapsed_ids: tuple[str, ...] = ()) -> list[Lease]:
    return [Lease(i, "v1", NOW + 30) for i in live] + [Lease(i, "v1", NOW) for i in lapsed_ids]


# the rule, over plain data


def test_the_error_is_a_409_too_many_instances_without_retry_after() -> None:
    error = TooManyInstances("full")

    assert (error.status, error.code, error.headers()) == (409, "too_many_instances", {})


def test_a_new_instance_is_refused_once_the_live_ones_reach_the_limit() -> None:
    check_room("orders", "c", leases("a"), NOW, limit=2)

    with pytest.raises(TooManyInstances) as caught:
        check_room("orders", "c", leases("a", "b"), NOW, limit=2)

    assert "orders" in caught.value.message
    assert "limit is 2" in caught.value.message
    assert "LAMBDAMESH_MAX_INSTANCES_PER_SERVICE" in caught.value.message


def test_a_live_instance_registering_again_never_counts_twice() -> None:
    check_room("orders", "b", leases("a", "b"), NOW, limit=2)


def test_lapsed_leases_take_no_room() -> None:
    check_room("orders", "c", leases("a", lapsed_ids=("b", "x", "y")), NOW, limit=2)


def test_an_instance_whose_lease_lapsed_counts_as_new() -> None:
    with pytest.raises(TooManyInstances):
        check_room("orders", "b", leases("a", lapsed_ids=("b",)), NOW, limit=1)


def test_the_lapsed_ones_to_prune_leave_out_the_one_being_registered() -> None:
    found = leases("a", lapsed_ids=("b", "c"))

    assert lapsed(found, NOW, keep="c") == ["b"]


# the registry over an in-memory store


def test_the_registry_refuses_a_new_instance_beyond_its_limit_and_stores_nothing(
    store: InMemoryStore, clock: Clock
) -> None:
    limited = registry(store, clock, limit=2)
    limited.register(ADMIN, "orders", "a", encoded(BODY))
    limited.register(ADMIN, "orders", "b", encoded(BODY))

    with pytest.raises(TooManyInstances):
        limited.register(ADMIN, "orders", "c", encoded(BODY))

    assert [i.instance_id for i in store.service_view("orders").instances] == ["a", "b"]
    assert limited.register(ADMIN, "orders", "a", encoded({**BODY, "port": 81})).created is False


def test_the_limit_is_per_service(store: InMemoryStore, clock: Clock) -> None:
    limited = registry(store, clock, limit=1)
    limited.register(ADMIN, "orders", "a", encoded(BODY))

    assert limited.register(ADMIN, "payments", "a", encoded(BODY)).created is True


def test_the_default_limit_is_the_settings_default(store: InMemoryStore, clock: Clock) -> None:
    default = Registry(store, AddressPolicy(), clock=clock)
    for n in range(Settings().max_instances_per_service):
        default.register(ADMIN, "orders", f"i-{n}", encoded(BODY))

    with pytest.raises(TooManyInstances):
        default.register(ADMIN, "orders", "one-more", encoded(BODY))


def test_lapsed_instances_are_pruned_once_the_stored_ones_reach_the_limit(
    store: InMemoryStore, clock: Clock
) -> None:
    # Given a service whose instances come and go without deregistering
    limited = registry(store, clock, limit=3)
    for instance_id in ("a", "b"):
        limited.register(ADMIN, "orders", instance_id, encoded({**BODY, "lease_seconds": 5}))
    clock.now += 10
    limited.register(ADMIN, "orders", "c", encoded(BODY))
    # (below the limit nothing is deleted)
    assert len(store.service_view("orders").instances) == 3
    # When one more registers with the stored ones at the limit
    limited.register(ADMIN, "orders", "d", encoded(BODY))
    # Then the lapsed ones are gone and the stored ones never exceed the limit
    assert [i.instance_id for i in store.service_view("orders").instances] == ["c", "d"]


def test_churn_never_stores_more_instances_than_the_limit(
    store: InMemoryStore, clock: Clock
) -> None:
    limited = registry(store, clock, limit=5)
    for n in range(100):
        limited.register(ADMIN, "orders", f"task-{n}", encoded({**BODY, "lease_seconds": 5}))
        clock.now += 2

    assert len(store.service_view("orders").instances) <= 5


def test_the_service_list_forgets_a_service_with_nothing_stored(
    store: InMemoryStore, clock: Clock
) -> None:
    limited = registry(store, clock, limit=2)
    limited.register(ADMIN, "orders", "a", encoded(BODY))
    limited.register(ADMIN, "payments", "a", encoded(BODY))
    store.deregister("orders", "a", NOW)

    assert [s["service"] for s in limited.services()] == ["payments"]
    assert store.services() == ["payments"]


def test_the_service_list_reads_leases_not_whole_instances(
    store: InMemoryStore, clock: Clock
) -> None:
    limited = registry(store, clock, limit=2)
    limited.register(ADMIN, "orders", "a", encoded(BODY))

    [orders] = limited.services()

    assert (orders["live"], orders["total"]) == (1, 1)
    assert store.full_reads == 0


def test_the_service_list_keeps_a_service_registered_while_it_looked_empty(
    store: InMemoryStore, clock: Clock
) -> None:
    # Given a service that looks empty to the list's first read
    limited = registry(store, clock, limit=2)
    limited.register(ADMIN, "orders", "a", encoded(BODY))
    store.deregister("orders", "a", NOW)
    first_read = store.leases

    def register_meanwhile(service: str, consistent: bool = False) -> list[Lease]:
        found = first_read(service, consistent)
        if not consistent:  # when the list has seen it empty, an instance registers
            limited.register(ADMIN, "orders", "b", encoded(BODY))
        return found

    store.leases = register_meanwhile  # type: ignore[method-assign]
    # When the list runs
    limited.services()
    # Then the service stays in the catalog
    assert store.services() == ["orders"]


# the drain set's bound


def test_the_cleanup_at_registration_drops_the_drains_of_the_instances_it_deletes(
    store: InMemoryStore, clock: Clock
) -> None:
    # Given a drained live instance and a drained one that stopped without deregistering
    limited = registry(store, clock, limit=3)
    limited.register(ADMIN, "orders", "keep", encoded({**BODY, "lease_seconds": 300}))
    limited.register(ADMIN, "orders", "gone", encoded({**BODY, "lease_seconds": 5}))
    limited.drain(ADMIN, "orders", "keep")
    limited.drain(ADMIN, "orders", "gone")
    clock.now += 10
    limited.register(ADMIN, "orders", "new", encoded(BODY))
    # When a registration finds the stored instances at the cap and deletes the lapsed one
    limited.register(ADMIN, "orders", "newer", encoded(BODY))
    # Then the lapsed one's drain goes with it, and the live one's stays
    assert store.drained["orders"] == {"keep"}


def test_a_drain_beyond_the_cap_is_refused_and_drains_nothing(
    store: InMemoryStore, clock: Clock
) -> None:
    # Given three live instances, two drained, and a cap since lowered to two
    for instance_id in ("a", "b", "c"):
        registry(store, clock, limit=3).register(ADMIN, "orders", instance_id, encoded(BODY))
    lowered = registry(store, clock, limit=2)
    lowered.drain(ADMIN, "orders", "a")
    lowered.drain(ADMIN, "orders", "b")
    # When an operator drains the third
    with pytest.raises(TooManyDrains) as caught:
        lowered.drain(ADMIN, "orders", "c")
    # Then it is refused with the limit named, and draining a drained one again still works
    assert (caught.value.status, caught.value.code) == (409, "too_many_drains")
    assert "LAMBDAMESH_MAX_INSTANCES_PER_SERVICE" in caught.value.message
    assert store.drained["orders"] == {"a", "b"}
    assert lowered.drain(ADMIN, "orders", "a").instance.drained is True


def test_drains_of_departed_instances_are_dropped_before_a_drain_is_counted(
    store: InMemoryStore, clock: Clock
) -> None:
    limited = registry(store, clock, limit=2)
    for instance_id in ("a", "b"):
        limited.register(ADMIN, "orders", instance_id, encoded(BODY))
        limited.drain(ADMIN, "orders", instance_id)
    store.deregister("orders", "a", NOW)
    limited.register(ADMIN, "orders", "c", encoded(BODY))

    limited.drain(ADMIN, "orders", "c")

    assert store.drained["orders"] == {"b", "c"}


# the size bound, as arithmetic on the constants


def largest_instance(now: float) -> Instance:
    """An instance whose registration is exactly MAX_INSTANCE_JSON bytes as listed, with the
    longest timestamps."""
    reg = Registration(
        service="s" * 63,
        instance_id="i" * 128,
        version="v" * 32,
        host="h" * 253,
        port=65535,
        weight=1000,
        zone="z" * 64,
        metadata={f"k{n}": "" for n in range(8)},
        lease_seconds=MAX_LEASE_SECONDS,
        status="DOWN",
    )
    metadata = dict(reg.metadata)
    room = MAX_INSTANCE_JSON - instance_json_size(reg)
    for n in range(8):
        metadata[f"k{n}"] = "x" * min(room, MAX_METADATA_VALUE)
        room -= len(metadata[f"k{n}"])
    reg = replace(reg, metadata=metadata)
    assert instance_json_size(reg) == MAX_INSTANCE_JSON
    own = {k: v for k, v in vars(reg).items() if k not in ("eureka", "eureka_dirty")}
    return Instance(**own, expires_at=now + MAX_LEASE_SECONDS, registered_at=now, updated_at=now)


def test_a_full_instance_list_at_the_highest_limit_fits_in_one_lambda_answer() -> None:
    now = 9_999_999_999.123  # the longest timestamps until the year 2286
    instance = largest_instance(now)
    listed = {
        "service": instance.service,
        "instances": [instance.to_json(now)] * MAX_INSTANCES_LIMIT,
    }

    body = json.dumps(listed, separators=(",", ":")).encode()  # as Chalice writes it

    assert len(body) <= MAX_BODY_LIMIT
    assert len(base64.b64encode(body)) + 1024 < LAMBDA_ANSWER  # with headers and envelope


def test_a_full_instance_list_with_the_longest_figures_still_fits_in_one_lambda_answer() -> None:
    """Each instance's figures add at most 239 B as listed: a list of the largest instances
    at the highest limit, every one with the longest figures, is then up to 4.44 MB, over
    MAX_BODY_LIMIT by under 1 %, and still crosses Lambda within its 6 MB."""
    now = 9_999_999_999.123
    instance = largest_instance(now)
    calls = CallFigures(1_000_000_000, 1_000_000_000, 899_999.999, 899_999.999)
    figures = Figures(3599.999, calls, calls, now)
    listed = {
        "service": instance.service,
        "instances": [Reported(instance, figures).to_json(now)] * MAX_INSTANCES_LIMIT,
    }

    body = json.dumps(listed, separators=(",", ":")).encode()

    assert len(body) <= MAX_BODY_LIMIT * 1.01
    assert len(base64.b64encode(body)) + 1024 < LAMBDA_ANSWER


def test_a_full_drain_set_and_the_largest_policy_fit_in_one_item_at_the_highest_cap() -> None:
    """Both live on the service's ``~policy`` item, which every routing read carries."""
    longest_id = 128  # lambdamesh_routing.names: INSTANCE_PATTERN
    assert check_name("instance_id", "i" * longest_id)
    with pytest.raises(InvalidName):
        check_name("instance_id", "i" * (longest_id + 1))
    attribute_names = 200

    assert MAX_INSTANCES_LIMIT * longest_id + MAX_POLICY_JSON + attribute_names < 140_000
    assert DYNAMODB_ITEM // 2 > 140_000


def test_a_stored_instance_stays_far_below_dynamodbs_item_limit() -> None:
    """DynamoDB counts UTF-8 bytes of names and values; the listed JSON escapes every
    non-ASCII character as 6 or 12 bytes for its 2 to 4, so it is never shorter."""
    for text in ("x", "\u00e9", "\u4e2d", "\U0001f600", "\u0001", '"'):
        assert len(text.encode()) <= len(json.dumps(text)) - 2
    attribute_names = 200

    assert MAX_INSTANCE_JSON + attribute_names < DYNAMODB_ITEM // 50


def test_each_stored_registration_is_announced_and_a_refused_one_is_not(
    store: InMemoryStore, clock: Clock
) -> None:
    announced: list[str] = []
    limited = Registry(
        store, AddressPolicy(), clock=clock, max_instances=1, registered=announced.append
    )
    limited.register(ADMIN, "orders", "a", encoded(BODY))
    with pytest.raises(TooManyInstances):
        limited.register(ADMIN, "orders", "b", encoded(BODY))
    assert announced == ["orders"]
