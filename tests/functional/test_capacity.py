"""What DynamoDB charges for: a heartbeat is one UpdateItem of one write unit for an ECS task's
item; a routed request reads nothing while the instance cache holds the list.

moto answers ``ReturnConsumedCapacity`` with a fixed figure, so the units are computed here from
the stored item by DynamoDB's published size rules (an UpdateItem costs the larger of the item
before and after, in 1 KB units), and the heartbeat is checked to ask for DynamoDB's own count,
which the deployed function records as the ``HeartbeatWriteUnits`` metric.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest

import app as application
from chalicelib import storage, wiring
from chalicelib.instances import Registration
from chalicelib.storage import InstanceStore
from chalicelib.validation import MAX_INSTANCE_JSON, instance_json_size
from lambdamesh.testclient import TestClient as Client
from lambdamesh.testclient import create_test_client
from lambdamesh_routing.names import MAX_METADATA_ENTRIES, MAX_METADATA_KEY, MAX_METADATA_VALUE
from tests.functional.conftest import Upstream, functional_environment
from tests.helpers import bearer, service_token

WRITE_UNIT_BYTES = 1024

# What the sidecar registers for an ECS task (sidecar/README.md), with metadata a team adds.
ECS_TASK = {
    "version": "v1",
    "host": "10.0.17.203",
    "port": 8080,
    "weight": 100,
    "zone": "eu-west-1a",
    "lease_seconds": 30,
    "metadata": {
        "task": "arn:aws:ecs:eu-west-1:111122223333:task/prod/0123456789abcdef0123456789abcdef",
        "image": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/orders:2026.11.28-3",
        "commit": "3f9c2a7e5b1d4c6a8e0f2b4d6c8a0e2f4b6d8c0a",
    },
}
INSTANCE_ID = "0123456789abcdef0123456789abcdef"
# A sidecar's figures at their longest (chalicelib/validation.py's bounds), and as the docs
# quote them for a minute of a busy instance.
LONGEST_CALLS = {
    "requests": 1_000_000_000,
    "errors": 999_999_999,
    "p50_ms": 899_999.999,
    "p99_ms": 899_999.999,
}
LONGEST_FIGURES = {"seconds": 3599.999, "in": LONGEST_CALLS, "out": LONGEST_CALLS}
FIGURES = {
    "seconds": 60.2,
    "in": {"requests": 120, "errors": 2, "p50_ms": 3.1, "p99_ms": 20.5},
    "out": {"requests": 40, "errors": 0, "p50_ms": 1.2, "p99_ms": 2.0},
}


def attribute_size(value: dict[str, Any]) -> int:
    """The bytes DynamoDB counts for one attribute value (its name is counted apart).

    Strings: their UTF-8 bytes. Numbers: one byte per two significant digits, plus one.
    Booleans and null: one byte. Maps and lists: three bytes, plus one a member, plus the
    members (a map's keys counted like attribute names).
    """
    [(kind, inner)] = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        digits = Decimal(str(inner)).normalize().as_tuple().digits
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_size(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in inner)
    raise AssertionError(f"no size rule here for {kind}")


def item_size(item: dict[str, dict[str, Any]]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def write_units(item: dict[str, dict[str, Any]]) -> int:
    return max(1, math.ceil(item_size(item) / WRITE_UNIT_BYTES))


@pytest.fixture
def environment(dynamodb_endpoint: str, table_name: str) -> dict[str, str]:
    """A deployed stage's address rules: the tasks' private network allowed (and loopback,
    where the test's upstream listens)."""
    return {
        **functional_environment(dynamodb_endpoint, table_name),
        "LAMBDAMESH_ALLOW_PRIVATE": "true",
        "LAMBDAMESH_ALLOWED_NETWORKS": "10.0.0.0/16,127.0.0.0/8",
    }


@pytest.fixture
def raw_item(dynamodb_endpoint: str, environment: dict[str, str]) -> Callable[[str], Any]:
    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)

    def read(instance_id: str) -> Any:
        key = {"pk": {"S": "orders"}, "sk": {"S": instance_id}}
        return client.get_item(TableName=environment["LAMBDAMESH_TABLE"], Key=key)["Item"]

    return read


class DynamoDBCalls(list[tuple[str, dict[str, Any]]]):
    """The DynamoDB operations the app's store sends, with their parameters, seen through
    botocore's public ``before-parameter-build`` event on the store's client."""

    def watch(self) -> None:
        """Forget what was seen and watch from now on (the store exists once the app has
        served a request)."""
        self.clear()
        events = wiring.store().client_events()
        events.register("before-parameter-build.dynamodb", self._seen, unique_id="capacity")

    def _seen(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.append((model.name, dict(params)))


@pytest.fixture
def dynamodb_calls() -> DynamoDBCalls:
    return DynamoDBCalls()


@pytest.fixture
def cached_client(environment: dict[str, str], store: InstanceStore) -> Iterator[Client]:
    """The app with the deployed default instance cache, one second, held for a minute."""
    wiring.reset()
    cached = {**environment, "LAMBDAMESH_CACHE_SECONDS": "60"}
    with create_test_client(application.app, environment_variables=cached) as test_client:
        yield test_client
    wiring.reset()


def register(client: Client, body: dict[str, Any], instance_id: str = INSTANCE_ID) -> None:
    answer = client.http.put(
        f"/registry/services/orders/instances/{instance_id}",
        headers={**bearer(service_token("orders")), "Content-Type": "application/json"},
        body=json.dumps(body),
    )
    assert answer.status_code == 201, answer.body


def heartbeat(client: Client, instance_id: str = INSTANCE_ID, body: object = None) -> None:
    answer = client.http.put(
        f"/registry/services/orders/instances/{instance_id}/heartbeat",
        headers={**bearer(service_token("orders")), "Content-Type": "application/json"},
        body=json.dumps(body or {}),
    )
    assert answer.status_code == 200, answer.body


def test_the_size_rules_match_dynamodbs_published_examples() -> None:
    # "a" (1) + "abc" (3); "n" (1) + 123 -> 3 digits -> 2 + 1 (3); "m" (1) + map 3 + 1 + "k" 1 + 1
    assert item_size({"a": {"S": "abc"}}) == 4
    assert item_size({"n": {"N": "123"}}) == 4
    assert item_size({"m": {"M": {"k": {"BOOL": True}}}}) == 7
    assert item_size({"n": {"N": "1800000000.5"}}) == 1 + 6 + 1


def test_a_heartbeat_is_one_update_item_that_asks_what_it_cost(
    client: Client,
    dynamodb_calls: DynamoDBCalls,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorded: list[tuple[str, float]] = []
    monkeypatch.setattr(storage, "record_write_units", lambda n, u: recorded.append((n, u)))
    register(client, ECS_TASK)
    dynamodb_calls.watch()

    heartbeat(client)

    [(operation, params)] = dynamodb_calls
    assert operation == "UpdateItem"
    assert params["ReturnConsumedCapacity"] == "TOTAL"
    assert "ConditionExpression" in params
    [(name, units)] = recorded  # the figure is moto's here, DynamoDB's own on AWS
    assert name == "HeartbeatWriteUnits" and units > 0


def test_an_ecs_tasks_item_costs_one_write_unit_a_heartbeat(
    client: Client, raw_item: Callable[[str], Any]
) -> None:
    register(client, ECS_TASK)
    before = raw_item(INSTANCE_ID)
    heartbeat(client)
    after = raw_item(INSTANCE_ID)

    assert item_size(before) < WRITE_UNIT_BYTES // 2, item_size(before)
    assert max(write_units(before), write_units(after)) == 1


def test_a_sidecars_figures_keep_an_ecs_tasks_heartbeat_at_one_write_unit(
    client: Client, raw_item: Callable[[str], Any]
) -> None:
    """The figures docs/cost.md quotes: about 95 B a typical heartbeat's, at most 160 B."""
    register(client, ECS_TASK)
    heartbeat(client)
    plain = item_size(raw_item(INSTANCE_ID))
    heartbeat(client, body={"figures": FIGURES})
    typical = item_size(raw_item(INSTANCE_ID))
    heartbeat(client, body={"figures": LONGEST_FIGURES})
    longest = raw_item(INSTANCE_ID)

    assert 90 <= typical - plain <= 100, (plain, typical)
    assert item_size(longest) - plain <= 160, (plain, item_size(longest))
    assert write_units(longest) == 1


def largest_instance(instance_id: str) -> dict[str, Any]:
    """The ECS task's fields at their longest, metadata filled to the instance limit."""
    body: dict[str, Any] = {**ECS_TASK, "version": "v" * 32, "zone": "z" * 64, "metadata": {}}

    def size(metadata: dict[str, str]) -> int:
        fields = {k: v for k, v in {**body, "metadata": metadata}.items()}
        return instance_json_size(Registration(service="orders", instance_id=instance_id, **fields))

    metadata: dict[str, str] = {}
    while len(metadata) < MAX_METADATA_ENTRIES:
        key = f"{len(metadata):02d}".ljust(MAX_METADATA_KEY, "k")
        room = MAX_INSTANCE_JSON - size({**metadata, key: ""})
        if room < 0:
            break
        metadata[key] = "x" * min(room, MAX_METADATA_VALUE)
    assert size(metadata) == MAX_INSTANCE_JSON
    return {**body, "metadata": metadata}


def test_an_instance_at_the_size_limit_costs_four_write_units(
    client: Client, raw_item: Callable[[str], Any]
) -> None:
    """The figure docs/cost.md quotes for `--write-units-per-heartbeat` at the limit."""
    instance_id = "i" * 128
    register(client, largest_instance(instance_id), instance_id)

    item = raw_item(instance_id)

    assert 3 * WRITE_UNIT_BYTES < item_size(item) <= 4 * WRITE_UNIT_BYTES, item_size(item)
    assert write_units(item) == 4


def test_figures_take_an_instance_at_the_size_limit_to_five_write_units(
    client: Client, raw_item: Callable[[str], Any]
) -> None:
    """The figure docs/cost.md quotes for an instance at the limit whose sidecar reports."""
    instance_id = "i" * 128
    register(client, largest_instance(instance_id), instance_id)

    heartbeat(client, instance_id, {"figures": FIGURES})

    assert write_units(raw_item(instance_id)) == 5


def test_routed_requests_read_dynamodb_once_per_cache_period(
    cached_client: Client,
    upstreams: Callable[[str], Upstream],
    dynamodb_calls: DynamoDBCalls,
) -> None:
    upstream = upstreams("orders")
    register(cached_client, {**ECS_TASK, "host": "127.0.0.1", "port": upstream.port})
    dynamodb_calls.watch()

    for _ in range(50):
        assert cached_client.http.get("/api/v1/orders/v1/items").status_code == 200

    assert [operation for operation, _ in dynamodb_calls] == ["Query"]
