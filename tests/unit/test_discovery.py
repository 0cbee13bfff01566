"""Discovery's short-lived cache of where a request may go (the routable() rules: tests/routing)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chalicelib.discovery import (
    MAX_CACHED_MISSES,
    MAX_CACHED_SERVICES,
    Discovery,
    InstanceSource,
)
from chalicelib.errors import (
    NoLiveInstance,
    RegistryUnavailable,
    ServiceNotFound,
)
from chalicelib.instances import Instance, ServiceView
from lambdamesh_routing.policy import DEFAULT_POLICY, Policy
from lambdamesh_routing.router import routable

MakeInstance = Callable[..., Instance]


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InMemoryStore(InstanceSource):
    """Just the verb Discovery needs, counting how often it is asked."""

    def __init__(self, instances: list[Instance] | None = None) -> None:
        self.by_service: dict[str, list[Instance]] = {}
        for instance in instances or []:
            self.by_service.setdefault(instance.service, []).append(instance)
        self.reads: list[str] = []
        self.policies: dict[str, Policy] = {}

    def service_view(self, service: str) -> ServiceView:
        self.reads.append(service)
        return ServiceView(tuple(self.by_service.get(service, [])), self.policies.get(service))


def ids(instances: list[Instance]) -> list[str]:
    return [i.instance_id for i in instances]


def routed(subject: Discovery, service: str, version: str) -> list[Instance]:
    """What the gateway's plan starts from: the cached view, judged by the wall clock."""
    return routable(service, version, subject.view(service).instances, subject.wall_clock())


def policy_of(subject: Discovery, service: str) -> Policy:
    return subject.view(service).policy or DEFAULT_POLICY


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100.0)


@pytest.fixture
def store(make_instance: MakeInstance) -> InMemoryStore:
    return InMemoryStore([make_instance("a"), make_instance("b")])


@pytest.fixture
def subject(store: InMemoryStore, clock: FakeClock, now: float) -> Discovery:
    return Discovery(store, ttl=1.0, clock=clock, wall_clock=FakeClock(now))


def test_a_second_lookup_within_the_ttl_does_not_read_the_store(
    subject: Discovery, store: InMemoryStore, clock: FakeClock
) -> None:
    routed(subject, "orders", "v1")
    clock.advance(0.999)

    routed(subject, "orders", "v1")

    assert store.reads == ["orders"]


def test_once_the_ttl_has_passed_the_store_is_read_again_and_changes_show(
    subject: Discovery, store: InMemoryStore, clock: FakeClock, make_instance: MakeInstance
) -> None:
    assert ids(routed(subject, "orders", "v1")) == ["a", "b"]
    store.by_service["orders"] = [make_instance("b"), make_instance("c")]

    assert ids(routed(subject, "orders", "v1")) == ["a", "b"]
    clock.advance(1.0)
    assert ids(routed(subject, "orders", "v1")) == ["b", "c"]
    assert store.reads == ["orders", "orders"]


def test_services_are_cached_separately(
    subject: Discovery, store: InMemoryStore, make_instance: MakeInstance
) -> None:
    store.by_service["billing"] = [make_instance("x", service="billing")]

    routed(subject, "orders", "v1")
    assert ids(routed(subject, "billing", "v1")) == ["x"]
    routed(subject, "orders", "v1")

    assert store.reads == ["orders", "billing"]


def test_an_unknown_service_is_not_found(subject: Discovery) -> None:
    with pytest.raises(ServiceNotFound):
        routed(subject, "nobody", "v1")


def test_a_service_with_no_instance_keeps_its_policy_through_the_cached_miss(
    subject: Discovery, store: InMemoryStore
) -> None:
    store.policies["payments"] = Policy(mtls="strict")
    for _ in range(2):
        view = subject.view("payments")
        assert (view.instances, view.policy) == ((), Policy(mtls="strict"))
    assert store.reads == ["payments"]  # the second came from the cache
    with pytest.raises(ServiceNotFound):
        routed(subject, "payments", "v1")


def test_a_service_forgotten_is_read_afresh_its_miss_included(
    subject: Discovery, store: InMemoryStore, make_instance: MakeInstance
) -> None:
    with pytest.raises(ServiceNotFound):
        routed(subject, "payments", "v1")
    store.by_service["payments"] = [make_instance("p", service="payments")]
    with pytest.raises(ServiceNotFound):  # the miss is cached
        routed(subject, "payments", "v1")
    subject.forget("payments")
    assert ids(routed(subject, "payments", "v1")) == ["p"]


def test_liveness_is_judged_by_the_wall_clock(
    store: InMemoryStore, clock: FakeClock, now: float
) -> None:
    wall_clock = FakeClock(now)
    subject = Discovery(store, ttl=60.0, clock=clock, wall_clock=wall_clock)
    routed(subject, "orders", "v1")

    wall_clock.advance(30)

    with pytest.raises(NoLiveInstance):
        routed(subject, "orders", "v1")


def test_the_cache_is_bounded_and_forgets_the_oldest_service(
    make_instance: MakeInstance, clock: FakeClock, now: float
) -> None:
    names = [f"svc-{n}" for n in range(MAX_CACHED_SERVICES + 1)]
    store = InMemoryStore([make_instance("a", service=name) for name in names])
    subject = Discovery(store, ttl=60.0, clock=clock, wall_clock=FakeClock(now))
    for name in names:
        routed(subject, name, "v1")
    store.reads.clear()

    routed(subject, names[-1], "v1")
    routed(subject, names[0], "v1")

    assert store.reads == [names[0]]


class FailingStore(InMemoryStore):
    def __init__(self, instances: list[Instance]) -> None:
        super().__init__(instances)
        self.failing = False

    def service_view(self, service: str) -> ServiceView:
        if self.failing:
            raise RegistryUnavailable("the registry could not read; try again shortly")
        return super().service_view(service)


def test_a_registry_failure_serves_the_last_list_for_a_while_then_fails(
    make_instance: MakeInstance, now: float
) -> None:
    store = FailingStore([make_instance("a")])
    clock = FakeClock(0.0)
    subject = Discovery(store, ttl=1.0, stale_seconds=30.0, clock=clock, wall_clock=FakeClock(now))
    assert ids(routed(subject, "orders", "v1")) == ["a"]

    store.failing = True
    clock.advance(20.0)
    assert ids(routed(subject, "orders", "v1")) == ["a"]

    clock.advance(20.0)
    with pytest.raises(RegistryUnavailable):
        routed(subject, "orders", "v1")


def test_a_service_forgotten_on_a_registration_keeps_its_last_list_for_an_outage(
    make_instance: MakeInstance, now: float
) -> None:
    store = FailingStore([make_instance("a")])
    clock = FakeClock(0.0)
    subject = Discovery(store, ttl=1.0, stale_seconds=30.0, clock=clock, wall_clock=FakeClock(now))
    assert ids(routed(subject, "orders", "v1")) == ["a"]

    # An instance registers through this Lambda; DynamoDB goes away before the next read.
    subject.forget("orders")
    store.failing = True
    assert ids(routed(subject, "orders", "v1")) == ["a"]
    assert store.reads == ["orders"]  # not served from the cache as fresh: read, then stale

    # Forgetting does not stretch how long a list may be served stale.
    clock.advance(30.5)
    subject.forget("orders")
    with pytest.raises(RegistryUnavailable):
        routed(subject, "orders", "v1")


def test_a_registry_failure_after_a_miss_expires_fails_rather_than_say_not_found(
    make_instance: MakeInstance, now: float
) -> None:
    store = FailingStore([make_instance("a")])
    clock = FakeClock(0.0)
    subject = Discovery(store, ttl=1.0, stale_seconds=30.0, clock=clock, wall_clock=FakeClock(now))
    with pytest.raises(ServiceNotFound):
        routed(subject, "billing", "v1")

    store.failing = True
    with pytest.raises(ServiceNotFound):
        routed(subject, "billing", "v1")

    clock.advance(1.0)
    with pytest.raises(RegistryUnavailable):
        routed(subject, "billing", "v1")


def test_a_registry_failure_is_not_remembered_as_not_found(
    make_instance: MakeInstance, now: float
) -> None:
    store = FailingStore([make_instance("a")])
    subject = Discovery(store, ttl=1.0, clock=FakeClock(0.0), wall_clock=FakeClock(now))
    store.failing = True
    with pytest.raises(RegistryUnavailable):
        routed(subject, "orders", "v1")

    store.failing = False

    assert ids(routed(subject, "orders", "v1")) == ["a"]


def test_a_registry_failure_with_nothing_cached_fails_at_once(
    make_instance: MakeInstance, now: float
) -> None:
    store = FailingStore([make_instance("a")])
    store.failing = True
    subject = Discovery(store, clock=FakeClock(0.0), wall_clock=FakeClock(now))

    with pytest.raises(RegistryUnavailable):
        routed(subject, "orders", "v1")


# Discovery: names with no instance


def test_unknown_names_cost_one_read_each_and_repeats_within_the_ttl_cost_none(
    subject: Discovery, store: InMemoryStore, clock: FakeClock
) -> None:
    names = [f"nobody-{n}" for n in range(MAX_CACHED_MISSES)]

    for _ in range(2):
        for name in names:
            with pytest.raises(ServiceNotFound):
                routed(subject, name, "v1")
        clock.advance(0.4)

    assert store.reads == names


def test_a_flood_of_unknown_names_does_not_push_a_known_service_out_of_the_cache(
    make_instance: MakeInstance, clock: FakeClock, now: float
) -> None:
    store = InMemoryStore([make_instance("a")])
    subject = Discovery(store, ttl=60.0, clock=clock, wall_clock=FakeClock(now))
    routed(subject, "orders", "v1")

    for n in range(MAX_CACHED_SERVICES + 76):
        with pytest.raises(ServiceNotFound):
            routed(subject, f"nobody-{n}", "v1")
    store.reads.clear()

    assert ids(routed(subject, "orders", "v1")) == ["a"]
    assert store.reads == []


def test_the_not_found_cache_is_bounded_and_forgets_the_least_recently_asked_name(
    store: InMemoryStore, clock: FakeClock, now: float
) -> None:
    subject = Discovery(store, ttl=60.0, clock=clock, wall_clock=FakeClock(now), max_misses=2)
    for name in ["x", "y", "x", "z"]:
        with pytest.raises(ServiceNotFound):
            routed(subject, name, "v1")
    store.reads.clear()

    for name in ["x", "z", "y"]:
        with pytest.raises(ServiceNotFound):
            routed(subject, name, "v1")

    assert store.reads == ["y"]


def test_a_service_registered_after_a_miss_is_found_once_the_miss_expires(
    subject: Discovery, store: InMemoryStore, clock: FakeClock, make_instance: MakeInstance
) -> None:
    with pytest.raises(ServiceNotFound):
        routed(subject, "billing", "v1")
    store.by_service["billing"] = [make_instance("x", service="billing")]

    clock.advance(0.999)
    with pytest.raises(ServiceNotFound):
        routed(subject, "billing", "v1")

    clock.advance(0.001)
    assert ids(routed(subject, "billing", "v1")) == ["x"]
    assert store.reads == ["billing", "billing"]


def test_a_service_whose_last_instance_left_is_remembered_as_not_found(
    subject: Discovery, store: InMemoryStore, clock: FakeClock
) -> None:
    routed(subject, "orders", "v1")
    store.by_service["orders"] = []
    clock.advance(1.0)

    for _ in range(2):
        with pytest.raises(ServiceNotFound):
            routed(subject, "orders", "v1")

    assert store.reads == ["orders", "orders"]


def test_with_the_cache_off_every_lookup_of_an_unknown_name_reads_the_store(
    store: InMemoryStore, clock: FakeClock, now: float
) -> None:
    subject = Discovery(store, ttl=0.0, clock=clock, wall_clock=FakeClock(now))

    for _ in range(2):
        with pytest.raises(ServiceNotFound):
            routed(subject, "nobody", "v1")

    assert store.reads == ["nobody", "nobody"]


# The policy, read with the instances


def test_a_services_policy_comes_with_its_instances_in_the_same_read(
    make_instance: MakeInstance, now: float
) -> None:
    store = InMemoryStore([make_instance("a")])
    canary = Policy(strategy="random")
    store.policies["orders"] = canary
    subject = Discovery(store, ttl=60.0, clock=FakeClock(0.0), wall_clock=FakeClock(now))

    routed(subject, "orders", "v1")
    assert policy_of(subject, "orders") is canary

    assert store.reads == ["orders"]


def test_a_service_without_a_policy_gets_the_default(
    make_instance: MakeInstance, now: float
) -> None:
    subject = Discovery(
        InMemoryStore([make_instance("a")]), clock=FakeClock(0.0), wall_clock=FakeClock(now)
    )

    assert policy_of(subject, "orders") is DEFAULT_POLICY


def test_a_policy_without_instances_routes_nothing(now: float) -> None:
    store = InMemoryStore()
    store.policies["orders"] = Policy(strategy="random")
    subject = Discovery(store, clock=FakeClock(0.0), wall_clock=FakeClock(now))

    with pytest.raises(ServiceNotFound):
        routed(subject, "orders", "v1")
    # Still read: the service's first sidecar enforces it before it registers.
    assert policy_of(subject, "orders") == Policy(strategy="random")
