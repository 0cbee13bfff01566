"""Where a request may go: routable(), over the instances of one service's view."""

from __future__ import annotations

import pytest

from lambdamesh_routing.errors import NoLiveInstance, ServiceNotFound, VersionNotFound
from lambdamesh_routing.instances import Instance
from lambdamesh_routing.router import routable
from tests.routing.conftest import MakeInstance


def ids(instances: list[Instance]) -> list[str]:
    return [i.instance_id for i in instances]


def test_no_instances_at_all_means_the_service_is_not_found(now: float) -> None:
    with pytest.raises(ServiceNotFound, match="'orders'") as caught:
        routable("orders", "v1", (), now)

    assert (caught.value.status, caught.value.code) == (404, "service_not_found")


def test_no_instance_of_the_version_means_the_version_is_not_found(
    make_instance: MakeInstance, now: float
) -> None:
    instances = (make_instance("a", version="v2"),)

    with pytest.raises(VersionNotFound, match="'v1'") as caught:
        routable("orders", "v1", instances, now)

    assert (caught.value.status, caught.value.code) == (404, "version_not_found")


@pytest.mark.parametrize(
    "overrides",
    [{"expires_at": 0.0}, {"status": "DOWN"}],
    ids=["expired", "down"],
)
def test_instances_that_are_expired_or_down_leave_no_live_instance(
    make_instance: MakeInstance, now: float, overrides: dict[str, object]
) -> None:
    instances = (make_instance("a", **overrides), make_instance("b", version="v2"))

    with pytest.raises(NoLiveInstance) as caught:
        routable("orders", "v1", instances, now)

    assert (caught.value.status, caught.value.code) == (503, "no_live_instance")


def test_an_instance_whose_lease_ends_exactly_now_is_not_routable(
    make_instance: MakeInstance, now: float
) -> None:
    with pytest.raises(NoLiveInstance):
        routable("orders", "v1", (make_instance("a", expires_at=now),), now)


def test_only_live_up_instances_of_the_version_are_routable(
    make_instance: MakeInstance, now: float
) -> None:
    instances = (
        make_instance("live"),
        make_instance("expired", expires_at=now - 1),
        make_instance("down", status="DOWN"),
        make_instance("other-version", version="v2"),
        make_instance("also-live"),
    )

    assert ids(routable("orders", "v1", instances, now)) == ["live", "also-live"]


def test_no_live_instance_says_how_many_are_down_draining_drained_and_lapsed(
    make_instance: MakeInstance, now: float
) -> None:
    instances = (
        make_instance("a", status="DOWN"),
        make_instance("b", expires_at=0.0),
        make_instance("c", expires_at=0.0),
        make_instance("d", status="DRAINING"),
        make_instance("e", drained=True),
        make_instance("f", status="DOWN", drained=True),
    )

    with pytest.raises(NoLiveInstance) as caught:
        routable("orders", "v1", instances, now)

    assert caught.value.message.endswith(
        "1 reported DOWN, 1 draining, 2 drained by an operator, 2 with lapsed leases"
    )


@pytest.mark.parametrize("kind", [{"status": "DRAINING"}, {"drained": True}])
def test_draining_and_drained_instances_take_no_new_requests(
    make_instance: MakeInstance, now: float, kind: dict[str, object]
) -> None:
    instances = (make_instance("a", **kind), make_instance("b"))

    assert ids(routable("orders", "v1", instances, now)) == ["b"]
