"""The storage verbs against moto's DynamoDB server: the invariants the registry relies on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import botocore.session
import pytest

from chalicelib.config import Settings
from chalicelib.errors import InstanceNotFound, RegistryMisconfigured, RegistryUnavailable
from chalicelib.instances import Registration
from chalicelib.registry import Lease
from chalicelib.storage import CATALOG_PARTITION, InstanceStore

NOW = 1_800_000_000.0


def registration(instance_id: str = "i-1", **fields: object) -> Registration:
    values: dict[str, object] = {"version": "v1", "host": "10.0.0.1", "port": 80}
    values.update(fields)
    return Registration(service="orders", instance_id=instance_id, **values)  # type: ignore[arg-type]


def test_created_is_true_for_new_and_lapsed_leases_only(store: InstanceStore) -> None:
    assert store.register(registration(lease_seconds=5), NOW).created is True
    assert store.register(registration(lease_seconds=5), NOW + 1).created is False
    assert store.register(registration(lease_seconds=5), NOW + 10).created is True


def test_a_missing_catalog_entry_is_written_again_by_the_next_registration(
    store: InstanceStore, dynamodb_endpoint: str, environment: dict[str, str]
) -> None:
    # Given an instance whose catalog write was lost (say the Lambda timed out in between)
    store.register(registration(), NOW)
    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    client.delete_item(
        TableName=environment["LAMBDAMESH_TABLE"],
        Key={"pk": {"S": CATALOG_PARTITION}, "sk": {"S": "orders"}},
    )
    assert store.services() == []
    # When its sidecar registers again while the lease still runs
    assert store.register(registration(), NOW + 1).created is False
    # Then the service is listed again
    assert store.services() == ["orders"]


def test_a_heartbeat_renews_by_the_stored_lease_in_one_conditional_write(
    store: InstanceStore,
) -> None:
    store.register(registration(lease_seconds=20), NOW)

    renewed, figures = store.heartbeat("orders", "i-1", NOW + 15, "DOWN")

    assert renewed.expires_at == NOW + 35
    assert renewed.status == "DOWN"
    assert renewed.host == "10.0.0.1"
    assert figures is None


def test_a_heartbeat_writes_figures_in_its_one_write_and_one_without_keeps_them(
    store: InstanceStore,
) -> None:
    store.register(registration(), NOW)
    text = '{"seconds":60.2,"in":[120,2,3.1,20.5],"reported_at":1800000001}'

    _, written = store.heartbeat("orders", "i-1", NOW + 1, figures=text)
    renewed, kept = store.heartbeat("orders", "i-1", NOW + 2, "DOWN")

    assert written == kept == text
    assert (renewed.status, renewed.updated_at) == ("DOWN", NOW + 2)
    assert store.service_view("orders").figures == {"i-1": text}


def test_a_heartbeat_of_a_lapsed_lease_writes_no_figures(store: InstanceStore) -> None:
    store.register(registration(lease_seconds=5), NOW)

    with pytest.raises(InstanceNotFound):
        store.heartbeat("orders", "i-1", NOW + 6, figures='{"seconds":1,"reported_at":1}')

    assert store.service_view("orders").figures == {}


def test_a_registration_drops_the_stored_figures(store: InstanceStore) -> None:
    store.register(registration(), NOW)
    store.heartbeat("orders", "i-1", NOW + 1, figures='{"seconds":1,"reported_at":1}')

    store.register(registration(), NOW + 2)

    assert store.service_view("orders").figures == {}
    assert store.heartbeat("orders", "i-1", NOW + 3)[1] is None


@pytest.mark.parametrize("late_by", [0.0, 0.001, 100.0])
def test_a_heartbeat_at_or_after_expiry_is_refused(store: InstanceStore, late_by: float) -> None:
    store.register(registration(lease_seconds=5), NOW)

    with pytest.raises(InstanceNotFound):
        store.heartbeat("orders", "i-1", NOW + 5 + late_by)


def test_a_heartbeat_after_deregistration_does_not_recreate_the_instance(
    store: InstanceStore,
) -> None:
    store.register(registration(), NOW)
    store.deregister("orders", "i-1", NOW)

    with pytest.raises(InstanceNotFound):
        store.heartbeat("orders", "i-1", NOW + 1)
    assert store.service_view("orders").instances == ()


def test_metadata_round_trips(store: InstanceStore) -> None:
    store.register(registration(metadata={"commit": "abc", "team": "payments"}), NOW)

    [stored] = store.service_view("orders").instances

    assert stored.metadata == {"commit": "abc", "team": "payments"}


def test_storage_failures_say_nothing_of_the_table_or_the_account(
    environment: dict[str, str],
) -> None:
    missing = InstanceStore(Settings.from_environ({**environment, "LAMBDAMESH_TABLE": "secret"}))

    with pytest.raises(RegistryUnavailable) as caught:
        missing.service_view("orders").instances

    assert "secret" not in caught.value.message
    assert "ResourceNotFound" not in caught.value.message


@pytest.mark.parametrize("verb", ["register", "heartbeat", "deregister", "instances", "ping"])
def test_a_missing_table_is_a_misconfiguration_for_every_verb(
    environment: dict[str, str], caplog: pytest.LogCaptureFixture, verb: str
) -> None:
    missing = InstanceStore(Settings.from_environ({**environment, "LAMBDAMESH_TABLE": "absent"}))
    calls: dict[str, Callable[[], object]] = {
        "register": lambda: missing.register(registration(), NOW),
        "heartbeat": lambda: missing.heartbeat("orders", "i-1", NOW),
        "deregister": lambda: missing.deregister("orders", "i-1", NOW),
        "instances": lambda: missing.service_view("orders").instances,
        "ping": missing.ping,
    }

    with caplog.at_level("ERROR", logger="lambdamesh"), pytest.raises(RegistryMisconfigured):
        calls[verb]()

    [record] = [r for r in caplog.records if r.getMessage().startswith("registry ")]
    assert vars(record)["error_code"] == "ResourceNotFoundException"


def test_creating_the_table_turns_on_ttl_for_expires_at(
    environment: dict[str, str], dynamodb_endpoint: str
) -> None:
    name = f"{environment['LAMBDAMESH_TABLE']}-fresh"
    fresh = InstanceStore(Settings.from_environ({**environment, "LAMBDAMESH_TABLE": name}))

    assert fresh.create_table() is True
    assert fresh.create_table() is False

    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


def test_a_table_made_before_the_task_index_is_told_apart(
    environment: dict[str, str], dynamodb_endpoint: str
) -> None:
    name = f"{environment['LAMBDAMESH_TABLE']}-old"
    boto3.client("dynamodb", endpoint_url=dynamodb_endpoint).create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    old = InstanceStore(Settings.from_environ({**environment, "LAMBDAMESH_TABLE": name}))
    new = InstanceStore(Settings.from_environ({**environment, "LAMBDAMESH_TABLE": name + "-new"}))
    new.create_table()

    assert old.create_table() is False
    assert old.has_task_index() is False
    assert new.has_task_index() is True


def test_leases_hold_each_stored_instances_id_version_and_expiry(store: InstanceStore) -> None:
    store.register(registration("i-1", lease_seconds=5), NOW)
    store.register(registration("i-2", version="v2", metadata={"a": "b"}), NOW)

    assert store.leases("orders") == [Lease("i-1", "v1", NOW + 5), Lease("i-2", "v2", NOW + 30)]
    assert store.leases("orders", consistent=True) == store.leases("orders")


def test_pruning_deletes_lapsed_instances_and_keeps_renewed_ones(store: InstanceStore) -> None:
    for instance_id in ("lapsed", "renewed", "live"):
        store.register(registration(instance_id, lease_seconds=5), NOW)
    store.heartbeat("orders", "renewed", NOW + 4)

    deleted = store.prune("orders", ["lapsed", "renewed", "live", "never-stored"], NOW + 5)

    assert [lease.instance_id for lease in store.leases("orders")] == ["renewed"]
    assert deleted == ["lapsed", "live"]


def test_a_service_holds_at_most_limit_drains(store: InstanceStore) -> None:
    assert store.drain("orders", "a", limit=2) is True
    assert store.drain("orders", "b", limit=2) is True

    assert store.drain("orders", "c", limit=2) is False
    assert store.drain("orders", "a", limit=2) is True  # drained already: no new room needed
    assert store.service_view("orders").drained == {"a", "b"}
    assert store.undrain("orders", "b") is True
    assert store.drain("orders", "c", limit=2) is True


def test_forgetting_drains_keeps_the_others_and_writes_no_item_for_a_service_without_any(
    store: InstanceStore, dynamodb_endpoint: str, environment: dict[str, str]
) -> None:
    store.drain("orders", "a", limit=5)
    store.drain("orders", "b", limit=5)

    store.forget_drains("orders", ["a", "never-drained"])
    store.forget_drains("payments", ["a"])

    assert store.service_view("orders").drained == {"b"}
    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    found = client.get_item(
        TableName=environment["LAMBDAMESH_TABLE"],
        Key={"pk": {"S": "payments"}, "sk": {"S": "~policy"}},
    )
    assert "Item" not in found


def test_every_registration_bumps_the_catalog_generation(store: InstanceStore) -> None:
    assert store.catalog_generation("orders") is None
    store.register(registration("i-1"), NOW)
    first = store.catalog_generation("orders")
    store.register(registration("i-1"), NOW + 1)

    assert first is not None
    assert store.catalog_generation("orders") == first + 1


def test_a_catalog_entry_is_forgotten_only_while_no_registration_came_in(
    store: InstanceStore,
) -> None:
    # Given a service whose generation the service list read
    store.register(registration(), NOW)
    store.deregister("orders", "i-1", NOW)
    generation = store.catalog_generation("orders")
    assert generation is not None
    # When an instance registers before the list deletes the entry
    store.register(registration("i-2"), NOW + 1)
    # Then the delete is refused and the service stays listed
    assert store.forget("orders", generation) is False
    assert store.services() == ["orders"]
    # And with no registration in between it is deleted
    store.deregister("orders", "i-2", NOW)
    assert store.forget("orders", generation + 1) is True
    assert store.services() == []


def test_a_catalog_entry_written_before_generations_can_be_forgotten(
    store: InstanceStore, dynamodb_endpoint: str, environment: dict[str, str]
) -> None:
    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    client.put_item(
        TableName=environment["LAMBDAMESH_TABLE"],
        Item={"pk": {"S": CATALOG_PARTITION}, "sk": {"S": "legacy"}, "created_at": {"N": "1"}},
    )

    assert store.catalog_generation("legacy") == 0
    assert store.forget("legacy", 0) is True
    assert store.services() == []


def test_a_registration_after_its_service_was_forgotten_lists_it_again(
    store: InstanceStore,
) -> None:
    store.register(registration(), NOW)
    store.deregister("orders", "i-1", NOW)
    generation = store.catalog_generation("orders")
    assert generation is not None and store.forget("orders", generation)

    store.register(registration(), NOW + 1)

    assert store.services() == ["orders"]


def test_one_botocore_client_serves_every_verb(
    environment: dict[str, str], store: InstanceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each client costs about 100 ms of CPU on a cold start: the models and the table
    connection must share one, not build one each."""
    created: list[str] = []
    create_client = botocore.session.Session.create_client

    def counting(self: botocore.session.Session, service_name: str, *a: Any, **k: Any) -> Any:
        created.append(service_name)
        return create_client(self, service_name, *a, **k)

    monkeypatch.setattr(botocore.session.Session, "create_client", counting)
    fresh = InstanceStore(Settings.from_environ(environment))

    fresh.prime()
    assert created == ["dynamodb"]
    result = fresh.register(registration(), NOW)
    fresh.heartbeat("orders", "i-1", NOW + 1)
    fresh.service_view("orders").instances
    fresh.leases("orders", consistent=True)
    fresh.services()
    fresh.catalog_generation("orders")
    fresh.ping()
    fresh.deregister("orders", "i-1", NOW)
    fresh.prune("orders", ["i-1"], NOW + 2)

    assert result.created is True
    assert created == ["dynamodb"]


def test_a_client_whose_connections_were_dropped_keeps_working(store: InstanceStore) -> None:
    store.register(registration(), NOW)

    store.drop_connections()

    assert [i.instance_id for i in store.service_view("orders").instances] == ["i-1"]


def test_each_change_is_recorded_for_eurekas_delta_with_the_removed_instances_last_state(
    store: InstanceStore,
) -> None:
    store.register(registration("a", lease_seconds=5, eureka='{"id":"A:1"}'), NOW)
    store.register(registration("b", lease_seconds=5), NOW)
    store.heartbeat("orders", "a", NOW + 1, status="DOWN")  # a change of status
    store.heartbeat("orders", "a", NOW + 2, status="DOWN")  # none
    store.deregister("orders", "a", NOW + 3)
    # b lapses at NOW + 5; the cleanup at the instance cap removes it later
    assert store.prune("orders", ["b"], NOW + 9) == ["b"]

    changes = store.changes(NOW, 100)

    assert [(c.at, c.instance_id, c.action) for c in changes] == [
        (NOW, "a", "ADDED"),
        (NOW, "b", "ADDED"),
        (NOW + 1, "a", "MODIFIED"),
        (NOW + 3, "a", "DELETED"),
        (NOW + 5, "b", "DELETED"),
    ]
    removed_a, removed_b = changes[3], changes[4]
    assert removed_a.last is not None and removed_a.last.status == "DOWN"
    assert removed_a.last_eureka == '{"id":"A:1"}'
    assert removed_b.last is not None and removed_b.last.expires_at == NOW + 5
    assert store.changes(NOW + 4, 100) == changes[4:]
    assert len(store.changes(NOW, 2)) == 2
