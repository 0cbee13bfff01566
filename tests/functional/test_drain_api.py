"""Out of rotation: an operator's drain, which the instance's heartbeats cannot undo, and the
DRAINING status a stopping task reports."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from chalicelib import wiring
from chalicelib.registry import Registry
from chalicelib.storage import InstanceStore
from lambdamesh.testclient import TestClient as Client
from lambdamesh_routing.hosts import AddressPolicy
from tests.functional.conftest import Upstream, body_json
from tests.helpers import admin_token, bearer, service_token

DRAIN = "/registry/services/orders/instances/{}/drain"
JSON = {"Content-Type": "application/json"}


def register(client: Client, instance: str, port: int, **fields: Any) -> None:
    answer = client.http.put(
        f"/registry/services/orders/instances/{instance}",
        headers={**JSON, **bearer(service_token("orders"))},
        body=json.dumps({"version": "v1", "host": "127.0.0.1", "port": port, **fields}),
    )
    assert answer.status_code == 201, answer.body


def heartbeat(client: Client, instance: str, status: str = "UP") -> Any:
    return client.http.put(
        f"/registry/services/orders/instances/{instance}/heartbeat",
        headers={**JSON, **bearer(service_token("orders"))},
        body=json.dumps({"status": status}),
    )


def served_by(client: Client, count: int = 12) -> set[str]:
    seen = set()
    for _ in range(count):
        answer = client.http.get("/api/v1/orders/v1/")
        assert answer.status_code == 200, answer.body
        seen.add(answer.headers["X-Served-By"])
    return seen


def listed(client: Client) -> dict[str, dict[str, Any]]:
    answer = client.http.get("/registry/services/orders/instances", headers=bearer(admin_token()))
    return {i["instance_id"]: i for i in body_json(answer)["instances"]}


def test_a_drained_instance_gets_no_traffic_whatever_its_heartbeats_say(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    a, b = upstreams("orders"), upstreams("orders")
    register(client, "a", a.port)
    register(client, "b", b.port)

    drained = client.http.put(DRAIN.format("a"), headers=bearer(admin_token()))
    beat = heartbeat(client, "a", "UP")

    assert drained.status_code == 200
    assert body_json(drained)["drained"] is True
    assert beat.status_code == 200
    assert listed(client)["a"]["drained"] is True
    assert listed(client)["a"]["status"] == "UP"
    assert served_by(client) == {f"orders:{b.port}"}


def test_lifting_the_drain_puts_the_instance_back(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    a, b = upstreams("orders"), upstreams("orders")
    register(client, "a", a.port)
    register(client, "b", b.port)
    client.http.put(DRAIN.format("a"), headers=bearer(admin_token()))

    lifted = client.http.delete(DRAIN.format("a"), headers=bearer(admin_token()))
    again = client.http.delete(DRAIN.format("a"), headers=bearer(admin_token()))

    assert lifted.status_code == 204
    assert again.status_code == 404
    assert listed(client)["a"]["drained"] is False
    assert served_by(client) == {f"orders:{a.port}", f"orders:{b.port}"}


def test_only_an_admin_drains_and_only_a_registered_instance(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    register(client, "a", upstreams("orders").port)

    by_service = client.http.put(DRAIN.format("a"), headers=bearer(service_token("orders")))
    unknown = client.http.put(DRAIN.format("ghost"), headers=bearer(admin_token()))
    bad_name = client.http.put(DRAIN.format("Bad!"), headers=bearer(admin_token()))

    assert by_service.status_code == 403
    assert (unknown.status_code, body_json(unknown)["error"]["code"]) == (
        404,
        "instance_not_found",
    )
    assert bad_name.status_code == 400
    assert listed(client)["a"]["drained"] is False


def test_drains_and_the_policy_live_side_by_side(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    register(client, "a", upstreams("orders").port)
    admin = {**JSON, **bearer(admin_token())}
    client.http.put(
        "/registry/services/orders/policy", headers=admin, body='{"strategy": "random"}'
    )
    client.http.put(DRAIN.format("a"), headers=bearer(admin_token()))

    client.http.delete("/registry/services/orders/policy", headers=bearer(admin_token()))
    still_drained = listed(client)["a"]["drained"]
    client.http.put(
        "/registry/services/orders/policy", headers=admin, body='{"strategy": "random"}'
    )
    client.http.delete(DRAIN.format("a"), headers=bearer(admin_token()))
    policy = client.http.get("/registry/services/orders/policy", headers=bearer(admin_token()))

    assert still_drained is True
    assert body_json(policy)["policy"]["strategy"] == "random"


def test_a_draining_task_takes_no_new_requests_and_says_so(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    a = upstreams("orders")
    register(client, "a", a.port)

    beat = heartbeat(client, "a", "DRAINING")
    answer = client.http.get("/api/v1/orders/v1/")

    assert body_json(beat)["status"] == "DRAINING"
    assert answer.status_code == 503
    assert "1 draining" in body_json(answer)["error"]["message"]


def test_answers_that_read_no_drain_state_do_not_claim_one(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    register(client, "a", upstreams("orders").port)
    client.http.put(DRAIN.format("a"), headers=bearer(admin_token()))

    beat = heartbeat(client, "a")

    assert beat.status_code == 200
    assert "drained" not in body_json(beat)
    assert listed(client)["a"]["drained"] is True


def test_drains_of_departed_instances_are_dropped_at_the_next_drain(
    client: Client,
    upstreams: Callable[[str], Upstream],
    dynamodb_endpoint: str,
    environment: dict[str, str],
) -> None:
    register(client, "a", upstreams("orders").port)
    register(client, "b", upstreams("orders").port)
    client.http.put(DRAIN.format("a"), headers=bearer(admin_token()))
    gone = client.http.delete(
        "/registry/services/orders/instances/a", headers=bearer(service_token("orders"))
    )
    assert gone.status_code == 204

    client.http.put(DRAIN.format("b"), headers=bearer(admin_token()))

    item = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint).get_item(
        TableName=environment["LAMBDAMESH_TABLE"],
        Key={"pk": {"S": "orders"}, "sk": {"S": "~policy"}},
    )["Item"]
    assert item["drained"]["SS"] == ["b"]


def test_a_re_registration_does_not_lift_a_drain(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    port = upstreams("orders").port
    register(client, "a", port)
    client.http.put(DRAIN.format("a"), headers=bearer(admin_token()))
    client.http.delete(
        "/registry/services/orders/instances/a", headers=bearer(service_token("orders"))
    )

    register(client, "a", port)

    assert listed(client)["a"]["drained"] is True


def capped_registry(store: InstanceStore, cap: int, now: list[float]) -> Registry:
    return Registry(
        store, AddressPolicy(allow_loopback=True), clock=lambda: now[0], max_instances=cap
    )


def drain(client: Client, instance: str) -> Any:
    return client.http.put(DRAIN.format(instance), headers=bearer(admin_token()))


def test_crash_cycles_of_drained_instances_leave_a_bounded_drain_set(
    client: Client,
    store: InstanceStore,
    upstreams: Callable[[str], Upstream],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a service of at most 4 instances, with a live instance an operator drained
    now = [1_000_000.0]
    monkeypatch.setattr(wiring, "registry", lambda: capped_registry(store, 4, now))
    port = upstreams("orders").port
    register(client, "steady", port, lease_seconds=300)
    assert drain(client, "steady").status_code == 200
    departed: set[str] = set()  # deregistered since the last drain, which keeps their drains

    def assert_bounded() -> None:
        view = store.service_view("orders")
        stored = {i.instance_id for i in view.instances}
        assert view.drained <= stored | departed, (view.drained, stored)
        assert len(view.drained) <= 4
        assert "steady" in view.drained

    # When, 20 times, an instance is drained, crashes (its lease lapses, or it deregisters on
    # the way down) and comes back under a new id
    for cycle in range(20):
        crashing = f"task-{cycle}"
        register(client, crashing, port, lease_seconds=5)
        assert_bounded()
        assert drain(client, crashing).status_code == 200
        departed.clear()
        assert_bounded()
        if cycle % 2:
            gone = client.http.delete(
                f"/registry/services/orders/instances/{crashing}",
                headers=bearer(service_token("orders")),
            )
            assert gone.status_code == 204
            departed.add(crashing)
        now[0] += 10
        assert heartbeat(client, "steady").status_code == 200
    # Then the drain set stayed within the cap throughout, and the live drain was never lifted
    assert listed(client)["steady"]["drained"] is True


def test_a_drain_beyond_the_cap_answers_409_and_drains_nothing(
    client: Client,
    store: InstanceStore,
    upstreams: Callable[[str], Upstream],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given three live instances, two of them drained, and the cap since lowered to two
    now = [1_000_000.0]
    monkeypatch.setattr(wiring, "registry", lambda: capped_registry(store, 3, now))
    port = upstreams("orders").port
    for instance in ("a", "b", "c"):
        register(client, instance, port)
    monkeypatch.setattr(wiring, "registry", lambda: capped_registry(store, 2, now))
    assert drain(client, "a").status_code == 200
    assert drain(client, "b").status_code == 200
    # When an operator drains the third
    refused = drain(client, "c")
    # Then it is refused in the error envelope, and nothing changes
    assert refused.status_code == 409
    error = body_json(refused)["error"]
    assert error["code"] == "too_many_drains"
    assert "LAMBDAMESH_MAX_INSTANCES_PER_SERVICE" in error["message"]
    assert "Retry-After" not in refused.headers
    assert store.service_view("orders").drained == {"a", "b"}
    assert drain(client, "a").status_code == 200
