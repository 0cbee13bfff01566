"""An instance's lease: live strictly before its expiry, routable only when also UP."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chalicelib.instances import Instance, Registration

MakeInstance = Callable[..., Instance]


@pytest.mark.parametrize(
    ("offset", "live"), [(-30.0, True), (-0.001, True), (0.0, False), (0.001, False), (60.0, False)]
)
def test_an_instance_is_live_only_strictly_before_its_expiry(
    make_instance: MakeInstance, offset: float, live: bool
) -> None:
    instance = make_instance(expires_at=1000.0)

    assert instance.is_live(1000.0 + offset) is live
    assert instance.is_routable(1000.0 + offset) is live


def test_a_down_instance_is_live_but_not_routable(make_instance: MakeInstance) -> None:
    instance = make_instance(status="DOWN", expires_at=1000.0)

    assert instance.is_live(999.0)
    assert not instance.is_routable(999.0)


def test_to_json_has_every_field_with_times_rounded_to_milliseconds(
    make_instance: MakeInstance,
) -> None:
    instance = make_instance(
        "i-1",
        zone="eu-west-1a",
        metadata={"git.sha": "abc"},
        weight=7,
        drained=False,
        expires_at=1030.12345,
        registered_at=970.98765,
        updated_at=1000.00049,
    )

    assert instance.to_json(1000.0) == {
        "service": "orders",
        "instance_id": "i-1",
        "version": "v1",
        "host": "i-1.orders.internal",
        "port": 8080,
        "weight": 7,
        "zone": "eu-west-1a",
        "metadata": {"git.sha": "abc"},
        "status": "UP",
        "drained": False,
        "lease_seconds": 30,
        "expires_at": 1030.123,
        "expires_in": 30.123,
        "live": True,
        "registered_at": 970.988,
        "updated_at": 1000.0,
        "tls": False,
    }


def test_a_lapsed_instance_reports_zero_seconds_left_and_not_live(
    make_instance: MakeInstance,
) -> None:
    document = make_instance(expires_at=1000.0).to_json(1005.0)

    assert document["expires_in"] == 0.0
    assert document["live"] is False


def test_to_json_hands_out_a_copy_of_the_metadata(make_instance: MakeInstance) -> None:
    instance = make_instance(metadata={"k": "v"})

    instance.to_json(0.0)["metadata"]["k"] = "changed"

    assert instance.metadata == {"k": "v"}


def test_a_registration_defaults_to_an_up_instance_of_weight_100_on_a_30_second_lease() -> None:
    registration = Registration("orders", "i-1", "v1", "orders.internal", 8080)

    assert (registration.weight, registration.lease_seconds, registration.status) == (100, 30, "UP")
    assert registration.zone is None
    assert registration.metadata == {}


def test_registrations_do_not_share_a_default_metadata_dict() -> None:
    first = Registration("orders", "i-1", "v1", "orders.internal", 8080)
    second = Registration("orders", "i-2", "v1", "orders.internal", 8080)

    assert first.metadata is not second.metadata


def test_the_drain_state_is_left_out_where_it_was_not_read(make_instance: MakeInstance) -> None:
    assert "drained" not in make_instance("i-1").to_json(1000.0)
    assert make_instance("i-1", drained=True).to_json(1000.0)["drained"] is True
