"""Each instance's figures of calls in and out: carried by its heartbeats, kept on its item,
answered with it; never in the routing view sidecars poll, nor in its ETag."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from chalicelib import wiring
from chalicelib.registry import Registry
from chalicelib.storage import InstanceStore
from lambdamesh.testclient import TestClient as Client
from lambdamesh_routing.hosts import AddressPolicy
from tests.functional.conftest import body_json
from tests.helpers import admin_token, bearer, service_token

INSTANCE = "/registry/services/orders/instances/task-1"
JSON = {"Content-Type": "application/json"}
START = 1_800_000_000.0
FIGURES: dict[str, Any] = {
    "seconds": 60.2,
    "in": {"requests": 120, "errors": 2, "p50_ms": 3.1, "p99_ms": 20.5},
    "out": {"requests": 40, "errors": 0, "p50_ms": 1.2, "p99_ms": 2.0},
}


@pytest.fixture
def clock(client: Client, store: InstanceStore, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The registry's clock, which the test moves (set once the app is up)."""
    now = [START]
    registry = Registry(store, AddressPolicy(allow_loopback=True), clock=lambda: now[0])
    monkeypatch.setattr(wiring, "registry", lambda: registry)
    return now


def put(client: Client, path: str, body: Any) -> Any:
    headers = {**JSON, **bearer(service_token("orders"))}
    return client.http.put(path, headers=headers, body=json.dumps(body))


def register(client: Client) -> Any:
    answer = put(client, INSTANCE, {"version": "v1", "host": "127.0.0.1", "port": 8080})
    assert answer.status_code in (200, 201), answer.body
    return body_json(answer)


def listed(client: Client) -> dict[str, Any]:
    answer = client.http.get("/registry/services/orders/instances", headers=bearer(admin_token()))
    [instance] = body_json(answer)["instances"]
    return dict(instance)


def test_a_heartbeats_figures_are_stored_stamped_by_the_registry_and_listed(
    client: Client, clock: list[float]
) -> None:
    assert register(client)["figures"] is None
    clock[0] += 10

    beat = put(client, INSTANCE + "/heartbeat", {"status": "UP", "figures": FIGURES})

    expected = {**FIGURES, "reported_at": START + 10}
    assert beat.status_code == 200, beat.body
    assert body_json(beat)["figures"] == expected
    assert listed(client)["figures"] == expected
    drained = client.http.put(INSTANCE + "/drain", headers=bearer(admin_token()))
    assert body_json(drained)["figures"] == expected


def test_a_port_not_reported_is_null(client: Client, clock: list[float]) -> None:
    register(client)
    only_in = {"seconds": 5, "in": {"requests": 0, "errors": 0, "p50_ms": None, "p99_ms": None}}

    assert put(client, INSTANCE + "/heartbeat", {"figures": only_in}).status_code == 200

    assert listed(client)["figures"] == {**only_in, "out": None, "reported_at": START}


def test_a_heartbeat_without_figures_keeps_the_last_ones(
    client: Client, clock: list[float]
) -> None:
    register(client)
    assert put(client, INSTANCE + "/heartbeat", {"figures": FIGURES}).status_code == 200
    clock[0] += 20

    plain = put(client, INSTANCE + "/heartbeat", {"status": "DOWN"})
    empty = put(client, INSTANCE + "/heartbeat", {"figures": None})

    kept = {**FIGURES, "reported_at": START}
    assert body_json(plain)["figures"] == kept
    assert body_json(empty)["figures"] == kept
    instance = listed(client)
    assert (instance["status"], instance["updated_at"]) == ("DOWN", START + 20)
    assert instance["figures"] == kept


def test_a_registration_drops_the_figures(client: Client, clock: list[float]) -> None:
    register(client)
    assert put(client, INSTANCE + "/heartbeat", {"figures": FIGURES}).status_code == 200

    again = register(client)

    assert again["figures"] is None
    assert listed(client)["figures"] is None


def with_port(**changes: Any) -> dict[str, Any]:
    return {**FIGURES, "in": {**FIGURES["in"], **changes}}


@pytest.mark.parametrize(
    ("figures", "mentions"),
    [
        (with_port(errors=121), "figures.in.errors (121) is more than its requests (120)"),
        (with_port(p99_ms=None), "figures.in counts 120 requests: give p50_ms and p99_ms"),
        (with_port(bytes=10), "figures.in must not contain {'bytes'} properties"),
        ({**FIGURES, "seconds": 3601}, "figures.seconds must be smaller than or equal to 3600"),
        ({"in": FIGURES["in"]}, "figures must contain ['seconds'] properties"),
    ],
)
def test_a_refused_heartbeat_changes_nothing_stored(
    client: Client, clock: list[float], figures: dict[str, Any], mentions: str
) -> None:
    # Given an instance whose sidecar reported figures
    register(client)
    assert put(client, INSTANCE + "/heartbeat", {"figures": FIGURES}).status_code == 200
    before = listed(client)
    clock[0] += 5
    # When a heartbeat with bad figures arrives
    refused = put(client, INSTANCE + "/heartbeat", {"status": "DOWN", "figures": figures})
    # Then it is refused with the reason
    assert refused.status_code == 400
    error = body_json(refused)["error"]
    assert error["code"] == "invalid_request"
    assert mentions in error["message"]
    # And nothing stored changed: not the figures, the status nor the lease
    after = listed(client)
    assert after["figures"] == before["figures"] == {**FIGURES, "reported_at": START}
    assert (after["status"], after["expires_at"]) == (before["status"], before["expires_at"])


def etag(answer: Any) -> str:
    return str({k.lower(): v for k, v in answer.headers.items()}["etag"])


def routing_view(client: Client, etag: str | None = None) -> Any:
    headers = bearer(service_token("billing"))
    if etag is not None:
        headers["If-None-Match"] = etag
    return client.http.get("/registry/services/orders/routing", headers=headers)


def test_figures_change_neither_the_routing_view_nor_its_etag(
    client: Client, clock: list[float]
) -> None:
    register(client)
    first = routing_view(client)
    tag = etag(first)

    beats: list[Callable[[], Any]] = [
        lambda: put(client, INSTANCE + "/heartbeat", {"figures": FIGURES}),
        lambda: put(client, INSTANCE + "/heartbeat", {"figures": {**FIGURES, "seconds": 1}}),
    ]
    for beat in beats:
        assert beat().status_code == 200
        again = routing_view(client, tag)
        assert (again.status_code, etag(again)) == (304, tag)

    assert body_json(routing_view(client)) == body_json(first)
    assert "figures" not in json.dumps(body_json(first))
