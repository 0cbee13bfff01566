"""Eureka's names, records and reads over the registry's plain data: no I/O."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.errors import InvalidRequest
from chalicelib.eureka.fetches import (
    DELTA_WINDOW_SECONDS,
    MAX_DELTA_CHANGES,
    Fetches,
    reconcile_hash,
)
from chalicelib.eureka.identity import registry_id, service_of
from chalicelib.eureka.mapping import record_json, to_eureka, to_registration
from chalicelib.eureka.records import (
    Application,
    DataCenter,
    EurekaInstance,
    EurekaStatus,
    LeaseInfo,
    Port,
)
from chalicelib.exposure.view import GatewayView
from chalicelib.instances import Change, Instance, ServiceView
from lambdamesh_routing.hosts import AddressPolicy
from lambdamesh_routing.names import INSTANCE_ID_RULE, MAX_INSTANCE_ID

NOW = 1_800_000_000.0
LOOPBACK = AddressPolicy(allow_loopback=True, allow_private=True)


def eureka(**changes: object) -> EurekaInstance:
    base = EurekaInstance(
        instance_id="10.0.0.7:pyorders:8080",
        app="PYORDERS",
        host_name="pyorders.internal",
        ip_addr="10.0.0.7",
        port=Port(8080, True),
        metadata={"team": "a"},
        vip_address="pyorders",
        secure_vip_address="pyorders",
        last_dirty_ms=1_700_000_000_000,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def stored(instance_id: str = "i-1", service: str = "orders", **changes: object) -> Instance:
    base = Instance(
        service=service,
        instance_id=instance_id,
        version="v1",
        host="10.0.0.7",
        port=8080,
        weight=100,
        zone=None,
        metadata={},
        status="UP",
        lease_seconds=90,
        expires_at=NOW + 60,
        registered_at=NOW - 30,
        updated_at=NOW - 30,
        drained=False,
    )
    return base.replace(**changes)  # type: ignore[arg-type]


# Identity


def test_an_id_that_fits_the_registrys_rule_is_kept() -> None:
    assert registry_id("i-0abc.1") == "i-0abc.1"


@pytest.mark.parametrize(
    "eureka_id",
    ["127.0.0.1:pyorders:8080", "Host-1", "host-1:ORDERS:80", "a/b c", "é" * 40, "x" * 256],
)
def test_any_other_id_is_folded_into_one_that_fits_the_same_way_every_time(eureka_id: str) -> None:
    folded = registry_id(eureka_id)

    assert INSTANCE_ID_RULE.fullmatch(folded)
    assert len(folded) <= MAX_INSTANCE_ID
    assert registry_id(eureka_id) == folded


def test_ids_that_differ_only_in_case_stay_apart() -> None:
    assert registry_id("Host-1") != registry_id("HOST-1")
    assert registry_id("Host-1") != "host-1"


@pytest.mark.parametrize("eureka_id", ["", "x" * 257, "tab\there"])
def test_an_empty_overlong_or_unprintable_id_is_refused(eureka_id: str) -> None:
    with pytest.raises(InvalidRequest):
        registry_id(eureka_id)


@pytest.mark.parametrize(("app", "service"), [("PYORDERS", "pyorders"), ("orders-2", "orders-2")])
def test_an_app_is_the_service_of_its_lower_case_name(app: str, service: str) -> None:
    assert service_of(app) == service


@pytest.mark.parametrize("app", ["MY_APP", "", "-ORDERS", "A" * 64])
def test_an_app_name_that_is_no_dns_label_is_refused(app: str) -> None:
    with pytest.raises(InvalidRequest, match="service"):
        service_of(app)


# Mapping in


def test_a_record_becomes_a_registration_checked_as_any() -> None:
    registration = to_registration(eureka(metadata={"version": "v2"}), "pyorders", LOOPBACK)

    assert registration.instance_id == registry_id("10.0.0.7:pyorders:8080")
    assert (registration.host, registration.port) == ("10.0.0.7", 8080)
    assert registration.version == "v2"
    assert registration.lease_seconds == 90
    assert registration.eureka_dirty == 1_700_000_000_000
    assert (
        registration.eureka is not None and '"id":"10.0.0.7:pyorders:8080"' in registration.eureka
    )


def test_the_host_is_the_host_name_when_the_ip_address_is_none() -> None:
    registration = to_registration(eureka(ip_addr="unknown"), "pyorders", LOOPBACK)

    assert registration.host == "pyorders.internal"


def test_an_amazon_data_centers_zone_is_the_instances_zone() -> None:
    center = DataCenter("Amazon", {"availability-zone": "us-east-1c", "instance-id": "i-0abc"})

    registration = to_registration(eureka(data_center=center), "pyorders", LOOPBACK)

    assert registration.zone == "us-east-1c"


@pytest.mark.parametrize(("status", "ours"), [("UP", "UP"), ("DOWN", "DOWN"), ("STARTING", "DOWN")])
def test_only_up_is_routable(status: EurekaStatus, ours: str) -> None:
    assert to_registration(eureka(status=status), "pyorders", LOOPBACK).status == ours


@pytest.mark.parametrize("duration", [4, 301])
def test_a_lease_outside_the_registrys_range_is_refused(duration: int) -> None:
    with pytest.raises(InvalidRequest, match="durationInSecs"):
        to_registration(eureka(lease=LeaseInfo(duration=duration)), "pyorders", LOOPBACK)


def test_a_record_keeps_only_what_differs_from_eurekas_defaults() -> None:
    text = record_json(eureka())

    assert "securePort" not in text and "countryId" not in text and '"dc"' not in text


# Mapping out


def test_a_stored_record_comes_back_as_it_was_registered() -> None:
    registered = eureka(secure_port=Port(9443, True), home_page_url="http://x/")
    instance = stored(metadata={"team": "a"})

    shown = to_eureka(instance, record_json(registered), drained=False)

    assert shown.instance_id == registered.instance_id
    assert (shown.host_name, shown.ip_addr) == ("pyorders.internal", "10.0.0.7")
    assert shown.secure_port == Port(9443, True)
    assert shown.home_page_url == "http://x/"
    assert shown.metadata == {"team": "a", "version": "v1"}
    assert shown.lease.registration_ms == int((NOW - 30) * 1000)


@pytest.mark.parametrize(
    ("status", "reported", "drained", "shown"),
    [
        ("UP", None, False, "UP"),
        ("UP", None, True, "OUT_OF_SERVICE"),
        ("DOWN", "STARTING", False, "STARTING"),
        ("DOWN", None, False, "DOWN"),
        ("DRAINING", None, False, "DOWN"),
    ],
)
def test_the_status_shown_is_eurekas(
    status: str, reported: str | None, drained: bool, shown: str
) -> None:
    record = None if reported is None else record_json(eureka(status=reported))

    assert to_eureka(stored(status=status), record, drained).status == shown


# Reads


def test_the_hash_counts_each_status_in_name_order() -> None:
    apps = (
        Application("A", (to_eureka(stored("1"), None, False), to_eureka(stored("2"), None, True))),
        Application("B", (to_eureka(stored("3", status="DOWN"), None, False),)),
    )

    assert reconcile_hash(apps) == "DOWN_1_OUT_OF_SERVICE_1_UP_1_"
    assert reconcile_hash(()) == ""


class FakeViews:
    def __init__(self, views: dict[str, GatewayView]) -> None:
        self.views = views

    def view(self, service: str) -> ServiceView:
        return self.views.get(service, GatewayView(()))


class FakeStore:
    def __init__(self, services: list[str], changes: list[Change]) -> None:
        self._services = services
        self._changes = changes
        self.asked: list[tuple[float, int]] = []

    def services(self) -> list[str]:
        return self._services

    def changes(self, since: float, limit: int) -> list[Change]:
        self.asked.append((since, limit))
        return [c for c in self._changes if c.at >= since][:limit]


def fetches(instances: list[Instance], changes: list[Change]) -> tuple[Fetches, FakeStore]:
    views = {"orders": GatewayView(tuple(instances))}
    store = FakeStore(["orders"], changes)
    return Fetches(FakeViews(views), store, lambda: NOW), store


def test_the_full_registry_holds_live_instances_only() -> None:
    reader, _ = fetches([stored("live"), stored("lapsed", expires_at=NOW - 1)], [])

    document = reader.applications()

    assert document.versions_delta == "1"
    assert [i.instance_id for a in document.applications for i in a.instances] == ["live"]


def test_the_delta_reads_the_window_and_marks_each_change() -> None:
    removed = stored("gone")
    changes = [
        Change(NOW - 10, "orders", "new", "ADDED"),
        Change(NOW - 5, "orders", "gone", "DELETED", last=removed),
    ]
    reader, store = fetches([stored("new")], changes)

    document = reader.delta()

    actions = {i.instance_id: i.action_type for a in document.applications for i in a.instances}
    assert actions == {"new": "ADDED", "gone": "DELETED"}
    assert store.asked == [(NOW - DELTA_WINDOW_SECONDS, MAX_DELTA_CHANGES)]
    assert document.apps_hashcode == "UP_1_"


def test_a_lapsed_lease_is_a_deletion_in_the_delta_for_the_window() -> None:
    recently = stored("recent", expires_at=NOW - 20)
    long_ago = stored("old", expires_at=NOW - DELTA_WINDOW_SECONDS - 1)
    reader, _ = fetches([recently, long_ago], [])

    (app,) = reader.delta().applications

    (entry,) = app.instances
    assert (entry.instance_id, entry.action_type) == ("recent", "DELETED")
    assert entry.lease.eviction_ms == int((NOW - 20) * 1000)


def test_a_change_to_an_instance_that_is_now_live_shows_it_as_it_is() -> None:
    changes = [Change(NOW - 9, "orders", "i-1", "MODIFIED")]
    reader, _ = fetches([stored("i-1", drained=True)], changes)

    (app,) = reader.delta().applications

    assert (app.instances[0].action_type, app.instances[0].status) == ("MODIFIED", "OUT_OF_SERVICE")
