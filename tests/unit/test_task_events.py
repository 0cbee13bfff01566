"""ECS's task state changes: which events mean a task is going away, what they remove, and
what the function answers, over the events AWS documents (tests/samples) and an in-memory
store."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.registry import Registry
from chalicelib.task_events import MAX_REASON, Ignored, TaskStop, handle, is_task_event, read
from lambdamesh_routing.hosts import AddressPolicy
from lambdamesh_routing.names import MAX_TASK_ARN
from tests.samples import RUNNING, SPOT_NOTICE, STOPPED, load

TASK = "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/c13b4cb40f1f4fe4a2971f76ae5a47ad"
OTHER_TASK = (
    "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/0123456789abcdef0123456789abcdef"
)


def event(**detail: Any) -> dict[str, Any]:
    """The documented running example with ``detail`` fields replaced (None removes one)."""
    made = load(RUNNING)
    for name, value in detail.items():
        if value is None:
            made["detail"].pop(name, None)
        else:
            made["detail"][name] = value
    return made


class TestWhichEventsAreStops:
    @pytest.mark.parametrize(
        "last_status", ["RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"]
    )
    def test_a_task_ecs_wants_stopped_is_a_stop_whatever_its_last_status(
        self, last_status: str
    ) -> None:
        stop = read(event(desiredStatus="STOPPED", lastStatus=last_status))

        assert isinstance(stop, TaskStop)
        assert (stop.task_arn, stop.desired_status, stop.last_status) == (
            TASK,
            "STOPPED",
            last_status,
        )

    def test_a_stopped_task_is_a_stop_even_without_a_desired_status(self) -> None:
        stop = read(event(desiredStatus=None, lastStatus="STOPPED"))

        assert isinstance(stop, TaskStop)
        assert (stop.desired_status, stop.last_status) == (None, "STOPPED")

    @pytest.mark.parametrize("last_status", ["DEACTIVATING", "STOPPING", "DEPROVISIONING"])
    def test_a_task_on_its_way_out_is_a_stop_even_if_the_desired_status_lags(
        self, last_status: str
    ) -> None:
        assert isinstance(read(event(desiredStatus="RUNNING", lastStatus=last_status)), TaskStop)

    @pytest.mark.parametrize(
        ("desired", "last"),
        [
            ("RUNNING", "RUNNING"),
            ("RUNNING", "PENDING"),
            ("RUNNING", "PROVISIONING"),
            ("RUNNING", "ACTIVATING"),
            ("PENDING", "PENDING"),
            (None, None),
        ],
    )
    def test_a_task_that_is_starting_or_running_is_ignored_with_its_statuses(
        self, desired: str | None, last: str | None
    ) -> None:
        answer = read(event(desiredStatus=desired, lastStatus=last))

        assert isinstance(answer, Ignored)
        assert answer.reason == (
            f"the task is not stopping (desiredStatus {desired}, lastStatus {last})"
        )

    def test_the_documented_running_example_is_ignored(self) -> None:
        assert isinstance(read(load(RUNNING)), Ignored)

    def test_the_documented_spot_termination_notice_is_a_stop_while_the_task_runs(self) -> None:
        stop = read(load(SPOT_NOTICE))

        assert stop == TaskStop(
            task_arn="arn:aws:ecs:us-east-1:111122223333:task/b99d40b3-5176-4f71-9a52-9dbd6fEXAMPLE",
            cluster_arn="arn:aws:ecs:us-east-1:111122223333:cluster/default",
            desired_status="STOPPED",
            last_status="RUNNING",
            stop_code="TerminationNotice",
            stopped_reason="Your Spot Task was interrupted.",
        )

    def test_the_stopped_sample_is_a_stop_with_its_code_and_reason(self) -> None:
        stop = read(load(STOPPED))

        assert isinstance(stop, TaskStop)
        assert stop.to_json() == {
            "task_arn": TASK,
            "cluster_arn": "arn:aws:ecs:us-west-2:111122223333:cluster/FargateCluster",
            "desired_status": "STOPPED",
            "last_status": "STOPPED",
            "stop_code": "EssentialContainerExited",
            "stopped_reason": "Essential container in task exited",
        }

    @pytest.mark.parametrize(
        "stop_code",
        [
            "TaskFailedToStart",
            "EssentialContainerExited",
            "UserInitiated",
            "ServiceSchedulerInitiated",
            "SpotInterruption",
            "TerminationNotice",
            # Newer than some SDK models, and more may come: every reason means it serves no more.
            "InfrastructureHealth",
        ],
    )
    def test_every_stop_code_is_a_stop_unknown_ones_included(self, stop_code: str) -> None:
        stop = read(event(desiredStatus="STOPPED", lastStatus="STOPPED", stopCode=stop_code))

        assert isinstance(stop, TaskStop)
        assert stop.stop_code == stop_code

    def test_a_stop_without_a_stop_code_is_still_a_stop(self) -> None:
        stop = read(event(desiredStatus="STOPPED", stopCode=None, stoppedReason=None))

        assert isinstance(stop, TaskStop)
        assert (stop.stop_code, stop.stopped_reason) == (None, None)

    def test_an_oversized_stopped_reason_is_cut_to_its_bound(self) -> None:
        reason = "Essential container in task exited " + "x" * 10_000
        stop = read(event(desiredStatus="STOPPED", stoppedReason=reason))

        assert isinstance(stop, TaskStop)
        assert stop.stopped_reason == reason[:MAX_REASON]

    def test_fields_of_the_wrong_type_are_read_as_absent(self) -> None:
        stop = read(event(desiredStatus="STOPPED", stopCode=7, stoppedReason=["x"], clusterArn={}))

        assert isinstance(stop, TaskStop)
        assert (stop.stop_code, stop.stopped_reason, stop.cluster_arn) == (None, None, None)


class TestMalformedEvents:
    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            (lambda e: e.pop("detail"), "the event has no detail object"),
            (lambda e: e.update(detail="STOPPED"), "the event has no detail object"),
            (lambda e: e.update(detail=[{"taskArn": TASK}]), "the event has no detail object"),
            (lambda e: e.update(detail=None), "the event has no detail object"),
            (lambda e: e["detail"].pop("taskArn"), "the event names no task"),
            (lambda e: e["detail"].update(taskArn=None), "the event names no task"),
            (lambda e: e["detail"].update(taskArn=["arn"]), "the event names no task"),
            (
                lambda e: e["detail"].update(taskArn=TASK[:-1] + "a" * MAX_TASK_ARN),
                "the event names no task",
            ),
            (
                lambda e: e["detail"].update(taskArn="c13b4cb40f1f4fe4a2971f76ae5a47ad"),
                "the event's taskArn is not an ECS task ARN",
            ),
            (
                lambda e: e["detail"].update(taskArn=""),
                "the event's taskArn is not an ECS task ARN",
            ),
            (
                lambda e: e["detail"].update(taskArn=TASK + "\n"),
                "the event's taskArn is not an ECS task ARN",
            ),
            (
                lambda e: e["detail"].update(
                    taskArn="arn:aws:ecs:us-west-2:111122223333:container/cf159fd6"
                ),
                "the event's taskArn is not an ECS task ARN",
            ),
        ],
    )
    def test_an_event_naming_no_task_is_ignored_with_the_reason(
        self, change: Any, reason: str
    ) -> None:
        made = event(desiredStatus="STOPPED", lastStatus="STOPPED")
        change(made)

        assert read(made) == Ignored(reason)

    def test_a_task_arn_at_the_length_bound_is_read_and_one_past_it_is_not(self) -> None:
        prefix = "arn:aws:ecs:us-west-2:111122223333:task/"
        cluster = "c" * 255
        at_bound = f"{prefix}{cluster}/" + "a" * 64
        assert len(at_bound) <= MAX_TASK_ARN

        assert isinstance(read(event(desiredStatus="STOPPED", taskArn=at_bound)), TaskStop)
        too_long = at_bound + "x" * (MAX_TASK_ARN + 1 - len(at_bound))
        assert read(event(desiredStatus="STOPPED", taskArn=too_long)) == Ignored(
            "the event names no task"
        )


class TestWhichEventsAreTaskEvents:
    def test_ecs_task_state_changes_are(self) -> None:
        assert is_task_event(load(RUNNING))
        assert is_task_event(load(STOPPED))
        assert is_task_event(load(SPOT_NOTICE))

    @pytest.mark.parametrize(
        "changes",
        [
            {"source": "aws.ec2"},
            {"source": "my.app"},
            {"detail-type": "ECS Container Instance State Change"},
            {"detail-type": "ECS Service Action"},
            {"detail-type": "ECS Deployment State Change"},
            {"source": None},
            {"detail-type": None},
        ],
    )
    def test_other_sources_and_detail_types_are_not(self, changes: dict[str, Any]) -> None:
        made = load(STOPPED)
        for name, value in changes.items():
            if value is None:
                made.pop(name)
            else:
                made[name] = value

        assert not is_task_event(made)

    @pytest.mark.parametrize(
        "payload",
        [None, "", "aws.ecs", [], [load(STOPPED)], 7, {"httpMethod": "GET", "path": "/"}],
    )
    def test_payloads_that_are_not_events_are_not(self, payload: object) -> None:
        assert not is_task_event(payload)


class TaskStore:
    """The two storage verbs the removal uses, over a dict of (service, instance id) to the
    task ARN each instance holds; the index may lag the table, as DynamoDB's does."""

    def __init__(self, items: dict[tuple[str, str], str | None]) -> None:
        self.items = dict(items)
        self.index: dict[tuple[str, str], str | None] = dict(items)
        self.deletes: list[tuple[str, str, str]] = []

    def task_instances(self, task_arn: str) -> list[tuple[str, str]]:
        return [key for key, arn in self.index.items() if arn == task_arn]

    def remove_task_instance(self, service: str, instance_id: str, task_arn: str) -> bool:
        self.deletes.append((service, instance_id, task_arn))
        if (service, instance_id) not in self.items or self.items[(service, instance_id)] != (
            task_arn
        ):
            return False
        del self.items[(service, instance_id)]
        return True


def registry(store: TaskStore) -> Registry:
    return Registry(store, AddressPolicy())  # type: ignore[arg-type]


class TestRemovingATask:
    def test_every_instance_the_task_registered_goes_and_others_stay(self) -> None:
        store = TaskStore(
            {
                ("orders", "a"): TASK,
                ("billing", "a"): TASK,
                ("orders", "b"): OTHER_TASK,
                ("orders", "c"): None,
            }
        )

        removed = list(registry(store).remove_task(TASK))

        assert sorted(removed) == [("billing", "a"), ("orders", "a")]
        assert store.items == {("orders", "b"): OTHER_TASK, ("orders", "c"): None}

    def test_only_instances_whose_condition_holds_are_reported(self) -> None:
        # Given an index that still lists two instances under the task, though one was
        # registered again by a new task and the other is gone
        store = TaskStore({("orders", "a"): TASK, ("orders", "b"): TASK, ("orders", "c"): TASK})
        store.items[("orders", "b")] = OTHER_TASK
        del store.items[("orders", "c")]

        removed = list(registry(store).remove_task(TASK))

        assert removed == [("orders", "a")]
        assert store.items == {("orders", "b"): OTHER_TASK}
        # Each delete named the task, so the store could refuse the others
        assert {arn for *_, arn in store.deletes} == {TASK}

    def test_a_task_that_registered_nothing_removes_nothing(self) -> None:
        store = TaskStore({("orders", "a"): OTHER_TASK})

        assert list(registry(store).remove_task(TASK)) == []
        assert store.deletes == []


class TestHandling:
    def test_a_stop_removes_the_tasks_instances_and_says_which(self) -> None:
        store = TaskStore({("orders", "a"): TASK, ("orders", "b"): OTHER_TASK})

        answer = handle(load(STOPPED), registry(store))

        assert answer["outcome"] == "removed"
        assert answer["removed"] == [{"service": "orders", "instance_id": "a"}]
        assert answer["task_arn"] == TASK
        assert answer["stop_code"] == "EssentialContainerExited"
        assert store.items == {("orders", "b"): OTHER_TASK}

    def test_a_stop_of_a_task_that_registered_nothing_is_answered_not_raised(self) -> None:
        answer = handle(load(STOPPED), registry(TaskStore({})))

        assert (answer["outcome"], answer["removed"]) == ("nothing_registered", [])

    def test_an_event_that_is_not_a_stop_touches_no_store(self) -> None:
        store = TaskStore({("orders", "a"): TASK})

        answer = handle(load(RUNNING), registry(store))

        assert answer == {
            "outcome": "ignored",
            "reason": "the task is not stopping (desiredStatus RUNNING, lastStatus RUNNING)",
        }
        assert store.deletes == []
        assert store.items == {("orders", "a"): TASK}

    def test_a_removal_that_fails_part_way_raises_and_still_logs_and_counts_what_it_removed(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        # Given a store that throttles the second delete of a task's three instances
        from chalicelib import task_events
        from chalicelib.errors import RegistryUnavailable

        store = TaskStore({("orders", "a"): TASK, ("orders", "b"): TASK, ("orders", "c"): TASK})
        deletes = store.remove_task_instance

        def throttled(service: str, instance_id: str, task_arn: str) -> bool:
            if len(store.deletes) == 1:
                raise RegistryUnavailable("the registry could not write; try again shortly")
            return deletes(service, instance_id, task_arn)

        store.remove_task_instance = throttled  # type: ignore[method-assign]
        counted: list[int] = []
        monkeypatch.setattr(task_events, "record_task_removals", counted.append)
        # When the stop is handled, the event fails, so Lambda retries it
        with (
            caplog.at_level("WARNING", logger="lambdamesh"),
            pytest.raises(RegistryUnavailable),
        ):
            handle(load(STOPPED), registry(store))
        # Then the instance already removed is in the log and the count all the same: the
        # retry finds it gone and reports nothing for it
        [record] = [r for r in caplog.records if r.name == "lambdamesh"]
        assert (record.levelname, record.getMessage()) == (
            "WARNING",
            "task stopped; removal failed",
        )
        assert vars(record)["task_arn"] == TASK
        assert vars(record)["removed"] == [{"service": "orders", "instance_id": "a"}]
        assert counted == [1]
        assert ("orders", "a") not in store.items

    def test_the_answer_is_json(self) -> None:
        import json

        answer = handle(load(SPOT_NOTICE), registry(TaskStore({})))

        assert json.loads(json.dumps(answer)) == answer


ARNS = [
    TASK,
    "arn:aws:ecs:us-east-1:111122223333:task/b99d40b3-5176-4f71-9a52-9dbd6fEXAMPLE",
    "arn:aws-cn:ecs:cn-north-1:111122223333:task/prod/0123456789abcdef0123456789abcdef",
    "arn:aws-us-gov:ecs:us-gov-west-1:111122223333:task/my_cluster-1/abc",
    "arn:aws:ecs:us-west-2:111122223333:task/a/b/c",
    "arn:aws:ecs:us-west-2:11112222333:task/c/abc",
    "arn:aws:ecs:us-west-2:111122223333:task/",
    "arn:aws:ecs:US-WEST-2:111122223333:task/c/abc",
    "arn:aws:ec2:us-west-2:111122223333:task/c/abc",
    "arn:aws:ecs:us-west-2:111122223333:task/c/a.b",
    TASK + "\n",
    " " + TASK,
]


@pytest.mark.parametrize("arn", ARNS)
def test_a_stop_event_can_name_exactly_the_task_arns_a_registration_may_carry(arn: str) -> None:
    from chalicelib.errors import InvalidRequest
    from chalicelib.validation import parse_registration

    body = {"version": "v1", "host": "orders.example.com", "port": 80, "task_arn": arn}
    try:
        parse_registration("orders", "i-1", body, AddressPolicy())
    except InvalidRequest:
        registrable = False
    else:
        registrable = True

    assert isinstance(read(event(desiredStatus="STOPPED", taskArn=arn)), TaskStop) is registrable
