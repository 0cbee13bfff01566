"""The routing views the outbound port keeps: read on first use, refreshed conditionally,
served stale for a bounded time when the registry is away, forgotten when unused."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from sidecar_testkit import FakeClock

from lambdamesh_routing.errors import RegistryUnavailable
from lambdamesh_routing.policy import OutlierDetection, Policy
from lambdamesh_routing.wire import etag, parse_view
from lambdamesh_sidecar.catalog import RECHECK_SECONDS, Catalog
from lambdamesh_sidecar.client import Unavailable, ViewAnswer


def document(*ports: int, service: str = "inventory") -> dict[str, Any]:
    return {
        "service": service,
        "instances": [
            {
                "instance_id": f"i{port}",
                "version": "v1",
                "host": "10.0.1.5",
                "port": port,
                "weight": 100,
                "zone": None,
                "status": "UP",
                "drained": False,
                "live": True,
            }
            for port in ports
        ],
        "policy": None,
    }


class Registry:
    """Answers like the routing view route: 304 when the ETag matches."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {"inventory": document(8080)}
        self.down = False
        self.asked: list[tuple[str, str | None]] = []

    def fetch(self, service: str, tag: str | None) -> ViewAnswer:
        self.asked.append((service, tag))
        if self.down:
            raise Unavailable("connection refused")
        current = self.documents.get(service) or {
            "service": service,
            "instances": [],
            "policy": None,
        }
        if tag == etag(current):
            return ViewAnswer(None, tag)
        return ViewAnswer(current, etag(current))


def ports(catalog: Catalog, service: str = "inventory") -> list[int]:
    return [i.port for i in catalog.view(service).instances]


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def catalog(registry: Registry, clock: FakeClock) -> Catalog:
    return Catalog(registry.fetch, refresh_seconds=5, stale_seconds=60, clock=clock)


def test_the_first_call_reads_the_view_and_later_calls_read_nothing(
    catalog: Catalog, registry: Registry
) -> None:
    assert ports(catalog) == [8080]
    assert ports(catalog) == [8080]

    assert registry.asked == [("inventory", None)]


def test_a_refresh_of_an_unchanged_view_is_conditional_and_keeps_it(
    catalog: Catalog, registry: Registry
) -> None:
    ports(catalog)
    catalog.refresh()
    catalog.refresh()

    assert [tag is not None for _, tag in registry.asked] == [False, True, True]
    assert (catalog.reads, catalog.unchanged) == (3, 2)
    assert ports(catalog) == [8080]


def test_a_changed_view_replaces_the_old_one_at_the_next_refresh(
    catalog: Catalog, registry: Registry
) -> None:
    ports(catalog)
    registry.documents["inventory"] = document(8080, 8081)

    catalog.refresh()

    assert ports(catalog) == [8080, 8081]


def test_while_the_registry_is_away_the_last_view_serves_until_the_stale_bound(
    catalog: Catalog, registry: Registry, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    ports(catalog)
    registry.down = True
    caplog.set_level(logging.INFO)

    for _ in range(13):
        clock.now += 5
        catalog.refresh()
    assert ports(catalog) == [8080]  # 65 s: refresh period plus the stale bound
    clock.now += 1
    with pytest.raises(RegistryUnavailable, match="has not confirmed"):
        catalog.view("inventory")

    registry.down = False
    catalog.refresh()
    assert ports(catalog) == [8080]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("routing on the last view" in m for m in messages) == 1
    assert sum("answers again" in m for m in messages) == 1


def test_a_first_read_that_fails_is_a_503_remembered_for_a_second_then_tried_again(
    catalog: Catalog, registry: Registry, clock: FakeClock
) -> None:
    registry.down = True
    for _ in range(5):
        with pytest.raises(RegistryUnavailable):
            catalog.view("inventory")
    assert len(registry.asked) == 1  # a queue of callers does not repeat a failed read

    registry.down = False
    clock.now += 1.1
    assert ports(catalog) == [8080]


def test_a_view_that_is_not_one_is_refused_and_the_old_one_kept(
    catalog: Catalog, registry: Registry
) -> None:
    ports(catalog)
    registry.documents["inventory"] = {"service": "inventory", "instances": "oops"}

    catalog.refresh()

    assert ports(catalog) == [8080]


def test_services_not_called_for_a_while_are_forgotten_and_the_count_is_bounded(
    registry: Registry, clock: FakeClock
) -> None:
    catalog = Catalog(registry.fetch, clock=clock, max_services=3, forget_after=600)
    for name in ("a", "b", "c", "d"):
        registry.documents[name] = document(8080, service=name)
        catalog.view(name)
    assert catalog.services() == ["b", "c", "d"]

    clock.now += 300
    catalog.refresh()
    catalog.view("d")
    clock.now += 301
    catalog.refresh()

    assert catalog.services() == ["d"]


def test_concurrent_first_calls_share_one_read() -> None:
    registry = Registry()
    release = threading.Event()

    def slow(service: str, tag: str | None) -> ViewAnswer:
        release.wait(5)
        return registry.fetch(service, tag)

    catalog = Catalog(slow)
    callers = [threading.Thread(target=catalog.view, args=("inventory",)) for _ in range(8)]
    for caller in callers:
        caller.start()
    time.sleep(0.1)
    release.set()
    for caller in callers:
        caller.join(5)

    assert registry.asked == [("inventory", None)]


def test_a_slow_service_does_not_hold_back_the_refresh_of_the_others(registry: Registry) -> None:
    stuck = threading.Event()
    clock = FakeClock(1000.0)

    def fetch(service: str, tag: str | None) -> ViewAnswer:
        if service == "slow" and tag is not None:
            stuck.wait(5)
        return registry.fetch(service, tag)

    catalog = Catalog(fetch, clock=clock)
    for name in ("slow", "fast"):
        registry.documents[name] = document(8080, service=name)
        catalog.view(name)
    refresher = threading.Thread(target=catalog.refresh)
    refresher.start()
    deadline = time.monotonic() + 5
    while ("fast", etag(registry.documents["fast"])) not in registry.asked:
        assert time.monotonic() < deadline, "fast was never refreshed while slow was stuck"
        time.sleep(0.01)
    stuck.set()
    refresher.join(5)


def test_no_answer_however_odd_stops_the_refresh(registry: Registry, clock: FakeClock) -> None:
    def fetch(service: str, tag: str | None) -> ViewAnswer:
        if service == "odd" and tag is not None:
            raise OverflowError("cannot convert float infinity to integer")
        return registry.fetch(service, tag)

    catalog = Catalog(fetch, clock=clock)
    for name in ("odd", "fine"):
        registry.documents[name] = document(8080, service=name)
        catalog.view(name)
    registry.documents["fine"] = document(8080, 8081, service="fine")

    catalog.refresh()

    assert ports(catalog, "fine") == [8080, 8081]
    assert ports(catalog, "odd") == [8080]


def test_made_up_names_stay_out_of_the_services_kept_and_of_the_refresh(
    catalog: Catalog, registry: Registry, clock: FakeClock
) -> None:
    ports(catalog)
    for n in range(300):
        assert catalog.view(f"nobody-{n}").instances == ()
    catalog.view("nobody-1")
    asked = len(registry.asked)
    catalog.refresh()

    assert catalog.services() == ["inventory"]
    assert len(registry.asked) == asked + 1  # only inventory is refreshed
    clock.now += 5.1
    catalog.view("nobody-1")
    assert registry.asked[-1] == ("nobody-1", None)


def test_an_unknown_service_is_an_empty_view() -> None:
    view = parse_view("billing", {"service": "billing", "instances": [], "policy": None})

    assert view.instances == ()


@pytest.mark.parametrize(
    "broken",
    [
        None,
        [],
        {"service": "other", "instances": [], "policy": None},
        {"service": "inventory", "instances": [{"instance_id": "x"}], "policy": None},
        {"service": "inventory", "instances": [], "policy": "random"},
        {
            "service": "inventory",
            "instances": [{**document(1)["instances"][0], "port": "80"}],
            "policy": None,
        },
        {
            "service": "inventory",
            "instances": [{**document(1)["instances"][0], "status": "MAYBE"}],
            "policy": None,
        },
        {"service": "inventory", "instances": [{**document(1)["instances"][0], "port": 70000}]},
        {**document(), "policy": {"strategy": "nope"}},
        {**document(), "policy": {"retries": {"max_attempts": "5"}}},
        {**document(), "policy": {"timeouts": {"total_seconds": "10"}}},
        {**document(), "policy": {"panic_threshold_percent": 1e400}},
        {**document(), "policy": {"aliases": {"live": {"split": {"v1": 1e400}}}}},
        {**document(), "policy": {"aliases": {"live": {"split": {"v1": 0}}}}},
        {**document(), "policy": {"outlier_detection": {"base_ejection_seconds": float("nan")}}},
        {**document(), "policy": {"outlier_detection": {"failure_statuses": "everything"}}},
        {**document(), "policy": {"outlier_detection": {"failure_statuses": None}}},
        {**document(), "policy": {"outlier_detection": {"failure_statuses": 5}}},
    ],
)
def test_a_malformed_view_is_a_value_error(broken: Any) -> None:
    with pytest.raises(ValueError):
        parse_view("inventory", broken)


@pytest.mark.parametrize("counted", ["gateway_errors", "all_5xx"])
def test_a_policy_read_back_keeps_which_answers_its_outlier_detection_counts(
    counted: str,
) -> None:
    policy = Policy(outlier_detection=OutlierDetection(failure_statuses=counted))
    sent = {**document(), "policy": policy.to_json()}

    view = parse_view("inventory", sent)

    assert view.policy == policy
    assert sent["policy"]["outlier_detection"]["failure_statuses"] == counted


def test_a_policy_stored_before_failure_statuses_existed_counts_gateway_errors_only() -> None:
    older = {"consecutive_failures": 5, "base_ejection_seconds": 30.0}

    view = parse_view("inventory", {**document(), "policy": {"outlier_detection": older}})

    assert view.policy is not None
    assert view.policy.outlier_detection.failure_statuses == "gateway_errors"
    assert view.policy.outlier_detection.max_ejected_percent == 10


def test_liveness_is_the_registrys_word_and_drains_are_kept() -> None:
    entry = document(1)["instances"][0]
    lapsed = {**entry, "instance_id": "lapsed", "live": False}
    drained = {**entry, "instance_id": "drained", "drained": True}

    view = parse_view("inventory", {**document(), "instances": [entry, lapsed, drained]})

    routable = [i.instance_id for i in view.instances if i.is_routable(now=1e12)]
    assert routable == ["i1"]


def test_a_recheck_reads_a_known_view_again_with_its_etag_and_serves_what_it_says(
    catalog: Catalog, registry: Registry, clock: FakeClock
) -> None:
    ports(catalog)
    registry.documents["inventory"] = document(8080, 8081)
    clock.now += RECHECK_SECONDS

    assert [i.port for i in catalog.recheck("inventory").instances] == [8080, 8081]
    assert registry.asked[1] == ("inventory", etag(document(8080)))
    assert ports(catalog) == [8080, 8081]


def test_a_view_read_less_than_a_recheck_period_ago_is_not_read_again(
    catalog: Catalog, registry: Registry, clock: FakeClock
) -> None:
    ports(catalog)
    clock.now += 30
    catalog.refresh()  # the background refresh counts as a read
    registry.documents["inventory"] = document(8080, 8081)
    clock.now += RECHECK_SECONDS / 2

    for _ in range(5):
        assert [i.port for i in catalog.recheck("inventory").instances] == [8080]
    assert len(registry.asked) == 2


def test_a_recheck_the_registry_does_not_answer_keeps_the_last_view_and_waits_to_retry(
    catalog: Catalog, registry: Registry, clock: FakeClock
) -> None:
    ports(catalog)
    registry.down = True
    clock.now += RECHECK_SECONDS

    for _ in range(5):
        assert [i.port for i in catalog.recheck("inventory").instances] == [8080]
    assert len(registry.asked) == 2


def test_a_name_with_no_instances_is_read_again_by_a_recheck_at_most_once_a_period(
    catalog: Catalog, registry: Registry, clock: FakeClock
) -> None:
    assert catalog.view("billing").instances == ()
    registry.down = True
    clock.now += RECHECK_SECONDS
    for _ in range(5):
        assert catalog.recheck("billing").instances == ()
    assert len(registry.asked) == 2  # a failed read is not repeated at once either

    registry.down = False
    registry.documents["billing"] = document(9090, service="billing")
    clock.now += RECHECK_SECONDS

    assert [i.port for i in catalog.recheck("billing").instances] == [9090]
    assert catalog.services() == ["billing"]


def test_concurrent_rechecks_share_one_read(registry: Registry) -> None:
    clock = FakeClock(1000.0)
    release = threading.Event()
    reading = threading.Event()

    def slow(service: str, tag: str | None) -> ViewAnswer:
        if tag is not None:
            reading.set()
            release.wait(5)
        return registry.fetch(service, tag)

    catalog = Catalog(slow, clock=clock)
    ports(catalog)
    registry.documents["inventory"] = document(8080, 8081)
    clock.now += RECHECK_SECONDS
    seen: list[list[int]] = []

    def recheck() -> None:
        seen.append([i.port for i in catalog.recheck("inventory").instances])

    callers = [threading.Thread(target=recheck) for _ in range(8)]
    for caller in callers:
        caller.start()
    assert reading.wait(5)
    time.sleep(0.1)  # the others queue behind the read
    release.set()
    for caller in callers:
        caller.join(5)

    assert len(registry.asked) == 2
    assert seen == [[8080, 8081]] * 8
