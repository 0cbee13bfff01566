"""The per-service instance cap and the instance size bound, through the API on moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import app as application
from chalicelib import wiring
from chalicelib.registry import Registry
from chalicelib.storage import InstanceStore
from lambdamesh.testclient import TestClient as Client
from lambdamesh.testclient import create_test_client
from lambdamesh_routing.hosts import AddressPolicy
from tests.functional.conftest import body_json
from tests.helpers import bearer, service_token

JSON = {"Content-Type": "application/json"}
INSTANCES = "/registry/services/orders/instances"


@pytest.fixture
def capped(environment: dict[str, str], store: InstanceStore) -> Iterator[Client]:
    """The app with at most 3 instances per service."""
    limited = {**environment, "LAMBDAMESH_MAX_INSTANCES_PER_SERVICE": "3"}
    wiring.reset()
    with create_test_client(application.app, environment_variables=limited) as test_client:
        yield test_client
    wiring.reset()


def register(client: Client, instance_id: str, **fields: Any) -> Any:
    body = {"version": "v1", "host": "127.0.0.1", "port": 8080, **fields}
    headers = {**JSON, **bearer(service_token("orders"))}
    return client.http.put(f"{INSTANCES}/{instance_id}", headers=headers, body=json.dumps(body))


def stored_ids(store: InstanceStore) -> list[str]:
    return sorted(i.instance_id for i in store.service_view("orders").instances)


def test_a_new_instance_beyond_the_setting_answers_409_too_many_instances(
    capped: Client, store: InstanceStore
) -> None:
    for instance_id in ("a", "b", "c"):
        assert register(capped, instance_id).status_code == 201

    refused = register(capped, "d")

    assert refused.status_code == 409
    error = body_json(refused)["error"]
    assert error["code"] == "too_many_instances"
    assert "limit is 3" in error["message"]
    assert "Retry-After" not in refused.headers
    assert stored_ids(store) == ["a", "b", "c"]


def test_an_instance_at_the_cap_may_register_again(capped: Client) -> None:
    for instance_id in ("a", "b", "c"):
        register(capped, instance_id)

    again = register(capped, "b", port=9090)

    assert again.status_code == 200
    assert body_json(again)["port"] == 9090


def test_a_deregistration_makes_room(capped: Client) -> None:
    for instance_id in ("a", "b", "c"):
        register(capped, instance_id)
    capped.http.delete(f"{INSTANCES}/b", headers=bearer(service_token("orders")))

    assert register(capped, "d").status_code == 201


def test_a_lapsed_lease_makes_room_and_its_item_is_deleted(
    client: Client, store: InstanceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a service at its cap whose first instance stopped without deregistering
    now = [1_000_000.0]
    registry = Registry(
        store, AddressPolicy(allow_loopback=True), clock=lambda: now[0], max_instances=2
    )
    monkeypatch.setattr(wiring, "registry", lambda: registry)
    assert register(client, "a", lease_seconds=5).status_code == 201
    assert register(client, "b", lease_seconds=60).status_code == 201
    now[0] += 10
    # When a new instance registers
    response = register(client, "c")
    # Then it is admitted and the lapsed item is gone, so the stored ones stay within the cap
    assert response.status_code == 201
    assert stored_ids(store) == ["b", "c"]


def test_an_instance_larger_than_4_kib_as_listed_answers_413_and_stores_nothing(
    client: Client, store: InstanceStore
) -> None:
    metadata = {f"k{n}": "x" * 512 for n in range(8)}  # 4.2 KB, within the 16 KiB body limit

    response = register(client, "a", metadata=metadata)

    assert response.status_code == 413
    assert body_json(response)["error"]["code"] == "payload_too_large"
    assert "4096" in body_json(response)["error"]["message"]
    assert store.service_view("orders").instances == ()
