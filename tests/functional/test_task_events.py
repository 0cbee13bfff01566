"""ECS's task state changes through the app, as EventBridge delivers them (``app(event,
context)``), against moto's DynamoDB: a stopping task's instances leave the registry and the
gateway at once; nothing else does, however often or late the event comes."""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import app as application
from chalicelib import wiring
from chalicelib.errors import RegistryUnavailable
from chalicelib.instances import Registration
from chalicelib.registry import Registry
from chalicelib.storage import InstanceStore
from lambdamesh.invokers import LambdaContext
from lambdamesh.projectconfig import patched_environ
from lambdamesh.testclient import TestClient as Client
from lambdamesh_routing.hosts import AddressPolicy
from tests.functional.conftest import Upstream, body_json
from tests.helpers import admin_token, bearer
from tests.samples import RUNNING, SPOT_NOTICE, STOPPED, load

STOPPED_TASK = load(STOPPED)["detail"]["taskArn"]
RUNNING_TASK = load(RUNNING)["detail"]["taskArn"]
NOTICE_TASK = load(SPOT_NOTICE)["detail"]["taskArn"]
NEW_TASK = "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/0123456789abcdef0123456789abcdef"
OTHER_TASK = (
    "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/fedcba9876543210fedcba9876543210"
)
UNKNOWN_TASK = (
    "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/00000000000000000000000000000000"
)

Invoke = Callable[[dict[str, Any]], Any]


@pytest.fixture
def invoke(environment: dict[str, str]) -> Iterator[Invoke]:
    """The function invoked as EventBridge invokes it, with the stage's environment."""

    def call(event: dict[str, Any]) -> Any:
        with patched_environ(environment):
            return application.app(copy.deepcopy(event), LambdaContext())

    yield call


def stopped(task_arn: str) -> dict[str, Any]:
    """The stopped sample, for another task."""
    event = load(STOPPED)
    event["resources"] = [task_arn]
    event["detail"]["taskArn"] = task_arn
    for container in event["detail"]["containers"]:
        container["taskArn"] = task_arn
    return event


def register(
    client: Client, service: str, instance_id: str, port: int = 8080, task_arn: str | None = None
) -> Any:
    body: dict[str, Any] = {"version": "v1", "host": "127.0.0.1", "port": port}
    if task_arn is not None:
        body["task_arn"] = task_arn
    response = client.http.put(
        f"/registry/services/{service}/instances/{instance_id}",
        headers={"Content-Type": "application/json", **bearer(admin_token())},
        body=json.dumps(body),
    )
    assert response.status_code in (200, 201), response.body
    return body_json(response)


def listed(client: Client, service: str = "orders") -> dict[str, str | None]:
    """Instance id to task ARN, of every instance the registry lists."""
    response = client.http.get(
        f"/registry/services/{service}/instances", headers=bearer(admin_token())
    )
    assert response.status_code == 200
    return {i["instance_id"]: i.get("task_arn") for i in body_json(response)["instances"]}


def reached(client: Client, requests: int) -> list[str]:
    """Which upstream (by port) each routed GET reached."""
    answers = [client.http.get("/api/v1/orders/v1/where") for _ in range(requests)]
    assert [a.status_code for a in answers] == [200] * requests
    return [body_json(a)["instance"] for a in answers]


def test_a_stopped_tasks_instances_leave_the_listing_and_the_gateway_and_others_stay(
    client: Client, upstreams: Callable[[str], Upstream], invoke: Invoke
) -> None:
    # Given instances of the stopping task, of another task, and of no task, each serving
    crashed, other, outside = (upstreams("orders") for _ in range(3))
    register(client, "orders", "a", crashed.port, STOPPED_TASK)
    register(client, "orders", "b", other.port, OTHER_TASK)
    register(client, "orders", "c", outside.port)
    ports = {str(u.port) for u in (crashed, other, outside)}
    assert set(reached(client, 3)) == ports
    # When ECS says the task stopped
    answer = invoke(load(STOPPED))
    # Then its instance is removed, and the answer says which and why
    assert answer["outcome"] == "removed"
    assert answer["removed"] == [{"service": "orders", "instance_id": "a"}]
    assert (answer["task_arn"], answer["stop_code"]) == (STOPPED_TASK, "EssentialContainerExited")
    # And neither the registry nor the gateway knows it any more; the others stay
    assert listed(client) == {"b": OTHER_TASK, "c": None}
    assert set(reached(client, 4)) == {str(other.port), str(outside.port)}


def test_a_replayed_event_removes_nothing_the_second_time(client: Client, invoke: Invoke) -> None:
    register(client, "orders", "a", task_arn=STOPPED_TASK)
    register(client, "orders", "b", task_arn=OTHER_TASK)

    first = invoke(load(STOPPED))
    second = invoke(load(STOPPED))

    assert first["outcome"] == "removed"
    assert (second["outcome"], second["removed"]) == ("nothing_registered", [])
    assert listed(client) == {"b": OTHER_TASK}


@pytest.mark.parametrize(
    "registered_again_by", [NEW_TASK, None], ids=["replacement-task", "outside-ecs"]
)
def test_a_late_event_spares_an_instance_id_registered_again_since(
    client: Client, invoke: Invoke, registered_again_by: str | None
) -> None:
    # Given an instance id registered again, by ECS's replacement task or outside ECS
    register(client, "orders", "a", task_arn=STOPPED_TASK)
    register(client, "orders", "a", task_arn=registered_again_by)
    # When the old task's stop arrives after that
    answer = invoke(load(STOPPED))
    # Then the instance registered since stays
    assert (answer["outcome"], answer["removed"]) == ("nothing_registered", [])
    assert listed(client) == {"a": registered_again_by}


def test_the_stop_of_a_task_that_never_registered_is_a_no_op(
    client: Client, invoke: Invoke
) -> None:
    register(client, "orders", "a", task_arn=OTHER_TASK)
    register(client, "orders", "b")

    answer = invoke(stopped(UNKNOWN_TASK))

    assert answer["outcome"] == "nothing_registered"
    assert answer["task_arn"] == UNKNOWN_TASK
    assert listed(client) == {"a": OTHER_TASK, "b": None}


def test_a_task_that_registered_in_two_services_leaves_both(client: Client, invoke: Invoke) -> None:
    register(client, "orders", "a", task_arn=STOPPED_TASK)
    register(client, "billing", "a", task_arn=STOPPED_TASK)
    register(client, "billing", "b", task_arn=OTHER_TASK)

    answer = invoke(load(STOPPED))

    assert sorted((r["service"], r["instance_id"]) for r in answer["removed"]) == [
        ("billing", "a"),
        ("orders", "a"),
    ]
    assert listed(client, "orders") == {}
    assert listed(client, "billing") == {"b": OTHER_TASK}


def test_a_spot_termination_notice_removes_the_task_while_it_still_runs(
    client: Client, invoke: Invoke
) -> None:
    register(client, "orders", "a", task_arn=NOTICE_TASK)
    register(client, "orders", "b", task_arn=OTHER_TASK)

    answer = invoke(load(SPOT_NOTICE))

    assert answer["outcome"] == "removed"
    assert (answer["last_status"], answer["stop_code"]) == ("RUNNING", "TerminationNotice")
    assert listed(client) == {"b": OTHER_TASK}


def test_a_running_task_event_removes_nothing(client: Client, invoke: Invoke) -> None:
    register(client, "orders", "a", task_arn=RUNNING_TASK)

    answer = invoke(load(RUNNING))

    assert answer["outcome"] == "ignored"
    assert "not stopping" in answer["reason"]
    assert listed(client) == {"a": RUNNING_TASK}


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification"},
        {"source": "aws.ecs", "detail-type": "ECS Container Instance State Change"},
        [],
        "STOPPED",
    ],
    ids=["empty", "ec2", "container-instance", "list", "string"],
)
def test_an_event_the_function_does_not_handle_is_answered_ignored(
    client: Client, invoke: Invoke, event: Any
) -> None:
    register(client, "orders", "a", task_arn=STOPPED_TASK)

    with patched_environ({}):
        answer = application.app(event, LambdaContext())

    assert answer["outcome"] == "ignored"
    assert listed(client) == {"a": STOPPED_TASK}


def test_a_malformed_task_event_is_answered_with_its_reason(client: Client, invoke: Invoke) -> None:
    register(client, "orders", "a", task_arn=STOPPED_TASK)
    event = load(STOPPED)
    event["detail"]["taskArn"] = "c13b4cb40f1f4fe4a2971f76ae5a47ad"

    answer = invoke(event)

    assert answer == {
        "outcome": "ignored",
        "reason": "the event's taskArn is not an ECS task ARN",
    }
    assert listed(client) == {"a": STOPPED_TASK}


def test_the_instance_json_shows_its_task_arn_and_none_without_one(client: Client) -> None:
    with_task = register(client, "orders", "a", task_arn=STOPPED_TASK)
    without = register(client, "orders", "b")

    assert with_task["task_arn"] == STOPPED_TASK
    assert "task_arn" not in without
    assert listed(client) == {"a": STOPPED_TASK, "b": None}


def test_a_heartbeat_keeps_the_task_arn_and_the_stop_still_finds_the_instance(
    client: Client, invoke: Invoke
) -> None:
    register(client, "orders", "a", task_arn=STOPPED_TASK)
    beat = client.http.put(
        "/registry/services/orders/instances/a/heartbeat",
        headers={"Content-Type": "application/json", **bearer(admin_token())},
        body=json.dumps({"status": "DOWN"}),
    )
    assert beat.status_code == 200
    assert body_json(beat)["task_arn"] == STOPPED_TASK

    assert invoke(load(STOPPED))["outcome"] == "removed"
    assert listed(client) == {}


def test_the_openapi_document_describes_the_task_arn_as_registered_and_answered(
    client: Client,
) -> None:
    import fastjsonschema

    from lambdamesh_routing.names import TASK_ARN_PATTERN

    schemas = body_json(client.http.get("/registry/openapi.json"))["components"]["schemas"]
    answered = register(client, "orders", "a", task_arn=STOPPED_TASK)

    taken = schemas["Registration"]["properties"]["task_arn"]
    assert (taken["type"], taken["pattern"]) == ("string", TASK_ARN_PATTERN)
    instance = schemas["Instance"]
    assert instance["properties"]["task_arn"] == {"type": "string"}
    assert "task_arn" not in instance["required"]  # instances outside ECS have none
    fastjsonschema.compile(instance)(answered)
    fastjsonschema.compile(instance)(register(client, "orders", "b"))


def test_a_removal_is_logged_with_the_task_and_counted(
    client: Client,
    invoke: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from chalicelib.observability import logger

    register(client, "orders", "a", task_arn=STOPPED_TASK)
    register(client, "billing", "a", task_arn=STOPPED_TASK)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()
    logger.setLevel("INFO")
    try:
        with caplog.at_level("INFO", logger="lambdamesh"):
            invoke(load(STOPPED))
            invoke(load(STOPPED))  # the replay: nothing to log at INFO, nothing to count
    finally:
        logger.setLevel("WARNING")

    [record] = [r for r in caplog.records if r.levelname == "INFO"]
    fields = vars(record)
    assert record.getMessage() == "task stopped; its instances removed"
    assert (fields["task_arn"], fields["stop_code"]) == (STOPPED_TASK, "EssentialContainerExited")
    assert len(fields["removed"]) == 2
    printed = capsys.readouterr().out.splitlines()
    [counted] = [json.loads(line) for line in printed if '"TaskStopRemovals"' in line]
    assert counted["TaskStopRemovals"] in ([2.0], 2.0)


class TestTheStorageVerbs:
    """The conditional delete, against DynamoDB's own semantics: the task index is read
    eventually consistently, so it may still list an instance under the task that
    registered it before; only the delete's condition then keeps the newer one."""

    NOW = 1_800_000_000.0

    def put(self, store: InstanceStore, instance_id: str, task_arn: str | None) -> None:
        registration = Registration(
            service="orders",
            instance_id=instance_id,
            version="v1",
            host="10.0.0.1",
            port=80,
            task_arn=task_arn,
        )
        store.register(registration, self.NOW)

    def stored(self, store: InstanceStore) -> dict[str, str | None]:
        return {i.instance_id: i.task_arn for i in store.service_view("orders").instances}

    def test_the_delete_removes_the_instance_of_the_task_it_names(
        self, store: InstanceStore
    ) -> None:
        self.put(store, "a", STOPPED_TASK)

        assert store.remove_task_instance("orders", "a", STOPPED_TASK) is True
        assert self.stored(store) == {}

    @pytest.mark.parametrize("now_held_by", [NEW_TASK, None], ids=["new-task", "no-task"])
    def test_the_delete_spares_an_instance_another_registration_holds_now(
        self, store: InstanceStore, now_held_by: str | None
    ) -> None:
        self.put(store, "a", STOPPED_TASK)
        self.put(store, "a", now_held_by)

        assert store.remove_task_instance("orders", "a", STOPPED_TASK) is False
        assert self.stored(store) == {"a": now_held_by}

    def test_the_delete_of_an_instance_already_gone_is_false(self, store: InstanceStore) -> None:
        assert store.remove_task_instance("orders", "gone", STOPPED_TASK) is False
        assert self.stored(store) == {}

    def test_the_index_lists_the_tasks_instances_in_every_service_and_nothing_else(
        self, store: InstanceStore
    ) -> None:
        self.put(store, "a", STOPPED_TASK)
        self.put(store, "b", OTHER_TASK)
        self.put(store, "c", None)
        store.register(
            Registration(
                service="billing",
                instance_id="a",
                version="v1",
                host="10.0.0.1",
                port=80,
                task_arn=STOPPED_TASK,
            ),
            self.NOW,
        )

        assert sorted(store.task_instances(STOPPED_TASK)) == [("billing", "a"), ("orders", "a")]
        assert store.task_instances(UNKNOWN_TASK) == []

    def test_a_stale_index_entry_removes_nothing_through_the_registry(
        self, store: InstanceStore
    ) -> None:
        # Given the index still listing the instance under the old task (as a lagging index
        # would), though a new task registered it since
        self.put(store, "a", STOPPED_TASK)
        stale = store.task_instances(STOPPED_TASK)
        self.put(store, "a", NEW_TASK)
        registry = Registry(store, AddressPolicy())
        store.task_instances = lambda task_arn: stale  # type: ignore[method-assign]
        # When the old task's stop is handled
        removed = list(registry.remove_task(STOPPED_TASK))
        # Then nothing is removed
        assert removed == []
        assert self.stored(store) == {"a": NEW_TASK}


def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_a_registry_that_cannot_be_reached_raises_so_lambda_retries_the_event(
    environment: dict[str, str], store: object
) -> None:
    unreachable = {
        **environment,
        "AWS_ENDPOINT_URL_DYNAMODB": closed_port(),
        "LAMBDAMESH_MAX_ATTEMPTS": "1",
    }
    wiring.reset()
    try:
        with patched_environ(unreachable), pytest.raises(RegistryUnavailable) as raised:
            application.app(load(STOPPED), LambdaContext())
    finally:
        wiring.reset()

    assert raised.value.status == 503
