"""Hostile registry bodies and stored hosts, through the app: refused with 400, never a 5xx."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from chalicelib.instances import Registration
from chalicelib.storage import InstanceStore
from chalicelib.validation import MAX_JSON_DEPTH, MAX_REGISTRY_BODY
from lambdamesh.testclient import TestClient as Client
from tests.functional.conftest import Upstream, body_json
from tests.helpers import admin_token, bearer, service_token

INSTANCE = "/registry/services/orders/instances/task-1"
VALID = {"version": "v1", "host": "127.0.0.1", "port": 8080}


def put(client: Client, path: str, raw: bytes) -> Any:
    headers = {"Content-Type": "application/json", **bearer(service_token("orders"))}
    return client.http.put(path, headers=headers, body=raw)


def error_code(response: Any) -> str:
    return str(body_json(response)["error"]["code"])


def registered(client: Client) -> list[Any]:
    response = client.http.get(
        "/registry/services/orders/instances", headers=bearer(service_token("orders"))
    )
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.body
    return list(body_json(response)["instances"])


# Nesting


@pytest.mark.parametrize("path", [INSTANCE, INSTANCE + "/heartbeat"])
def test_eight_thousand_nested_brackets_answer_400_not_500(client: Client, path: str) -> None:
    raw = b"[" * 8000 + b"]" * 8000
    assert len(raw) <= MAX_REGISTRY_BODY

    response = put(client, path, raw)

    assert response.status_code == 400
    assert error_code(response) == "invalid_request"
    assert f"deeper than {MAX_JSON_DEPTH} levels" in body_json(response)["error"]["message"]


def metadata_nested(levels: int) -> bytes:
    """A registration whose body nests ``levels`` deep: the body, metadata, then lists."""
    value: Any = "v"
    for _ in range(levels - 2):
        value = [value]
    return json.dumps({**VALID, "metadata": {"k": value}}).encode()


def test_a_body_at_the_nesting_limit_reaches_the_schema_and_one_level_more_does_not(
    client: Client,
) -> None:
    at_limit = put(client, INSTANCE, metadata_nested(MAX_JSON_DEPTH))
    too_deep = put(client, INSTANCE, metadata_nested(MAX_JSON_DEPTH + 1))

    assert at_limit.status_code == too_deep.status_code == 400
    assert "metadata" in body_json(at_limit)["error"]["message"]
    assert "deeper than" in body_json(too_deep)["error"]["message"]


# Lone surrogates


@pytest.mark.parametrize(
    "fields",
    [
        {"metadata": {"k": "\ud800"}},
        {"metadata": {"k\udfff": "v"}},
        {"zone": "eu\ud800"},
        {"version": "v1\udc00"},
    ],
    ids=["metadata value", "metadata key", "zone", "version"],
)
def test_a_lone_surrogate_in_a_registration_answers_400_and_stores_nothing(
    client: Client, fields: dict[str, Any]
) -> None:
    # json.dumps writes the surrogate as the escape "\ud800", as a client would send it.
    response = put(client, INSTANCE, json.dumps({**VALID, **fields}).encode())

    assert response.status_code == 400
    assert error_code(response) == "invalid_request"
    assert "lone surrogate" in body_json(response)["error"]["message"]
    assert registered(client) == []


def test_a_lone_surrogate_in_a_heartbeat_answers_400(client: Client) -> None:
    assert put(client, INSTANCE, json.dumps(VALID).encode()).status_code == 201
    assert len(registered(client)) == 1

    response = put(client, INSTANCE + "/heartbeat", b'{"status": "UP\\ud800"}')

    assert response.status_code == 400
    assert "lone surrogate" in body_json(response)["error"]["message"]


# IPv6 zone ids


@pytest.mark.parametrize("host", ["2600:1f18::1%eth0", "2600:1f18::1%eth0\r\nX-Injected: 1"])
def test_a_host_with_a_zone_id_answers_400_and_stores_nothing(client: Client, host: str) -> None:
    response = put(client, INSTANCE, json.dumps({**VALID, "host": host}).encode())

    assert response.status_code == 400
    assert error_code(response) == "host_not_allowed"
    assert "zone id" in body_json(response)["error"]["message"]
    assert registered(client) == []


@pytest.mark.parametrize(
    "bad_host", ["::1%lo\r\nX-Injected: 1", "2600:1f18::1%eth0", "a" * 64 + ".example.com"]
)
def test_a_host_stored_under_older_rules_is_skipped_and_the_good_instance_answers(
    client: Client,
    store: InstanceStore,
    upstreams: Callable[[str], Upstream],
    bad_host: str,
) -> None:
    # Given an instance stored before its host would have been refused, and a good one
    upstream = upstreams("orders")
    store.register(Registration("orders", "bad", "v1", bad_host, upstream.port), time.time())
    good = {**VALID, "port": upstream.port}
    assert put(client, INSTANCE, json.dumps(good).encode()).status_code == 201

    # When requests are routed to the service, whichever instance is chosen first
    statuses = [client.http.get("/api/v1/orders/v1/").status_code for _ in range(4)]

    # Then every one is answered by the good instance
    assert statuses == [200] * 4


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_numbers(client: Client, constant: str) -> None:
    body = f'{{"retries": {{"budget_percent": {constant}}}}}'

    answer = client.http.put(
        "/registry/services/orders/policy",
        headers={"Content-Type": "application/json", **bearer(admin_token())},
        body=body,
    )

    assert answer.status_code == 400
    assert f"{constant} is not a JSON number" in body_json(answer)["error"]["message"]


def test_a_key_named_twice_in_one_object_answers_400_and_changes_nothing(client: Client) -> None:
    headers = {"Content-Type": "application/json", **bearer(admin_token())}
    kept = client.http.put(
        "/registry/services/orders/policy", headers=headers, body='{"strategy": "random"}'
    )
    body = '{"strategy": "random", "strategy": "consistent_hash"}'

    answer = client.http.put("/registry/services/orders/policy", headers=headers, body=body)
    stored = client.http.get("/registry/services/orders/policy", headers=headers)

    assert kept.status_code == 201
    assert answer.status_code == 400
    assert "'strategy' appears twice" in body_json(answer)["error"]["message"]
    assert body_json(stored)["policy"]["strategy"] == "random"
