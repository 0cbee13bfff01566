"""ECS's "ECS Task State Change" events, as EventBridge delivers them to the function: which
ones mean a task is going away, and what to remove when one does.

ECS announces every change of a task's state. A task is going away from the moment ECS
decides to stop it (``desiredStatus`` becomes ``STOPPED``: a scale-in, a deployment, a
crashed essential container, a Spot interruption, a lost host) until it has stopped
(``lastStatus`` ``STOPPED``); ECS never starts a task again once it is stopping, so any of
those events is reason enough to take its instances out, and the first to arrive does. The
stop code (``stopCode``: ``EssentialContainerExited``, ``SpotInterruption``, ...) is logged,
not used: every reason a task stops means it serves no more. Events of tasks that are
starting or running are ignored (the EventBridge rule in ``infra/task-events.yaml`` does not
even deliver them).

Delivery is at least once and in no set order, so removal is idempotent and conditional
(``storage.InstanceStore.remove_task_instance``): a replayed or late event removes nothing
that a newer task registered under the same instance id, and an event for a task that
registered nothing is a no-op.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from chalicelib.errors import LambdaMeshError
from chalicelib.observability import logger, record_task_removals
from chalicelib.registry import Registry
from lambdamesh_routing.names import MAX_TASK_ARN, TASK_ARN_RULE

SOURCE = "aws.ecs"
DETAIL_TYPE = "ECS Task State Change"
STOPPED = "STOPPED"
# lastStatus values of a task on its way out (ECS's task lifecycle, after RUNNING).
LEAVING_STATUSES = frozenset({"DEACTIVATING", "STOPPING", "DEPROVISIONING", STOPPED, "DELETED"})
# Free text from ECS, logged: bounded so a malformed event cannot flood the log.
MAX_REASON = 255


class TaskStop(NamedTuple):
    """A task on its way out, as one event describes it."""

    task_arn: str
    cluster_arn: str | None
    desired_status: str | None
    last_status: str | None
    stop_code: str | None
    stopped_reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "task_arn": self.task_arn,
            "cluster_arn": self.cluster_arn,
            "desired_status": self.desired_status,
            "last_status": self.last_status,
            "stop_code": self.stop_code,
            "stopped_reason": self.stopped_reason,
        }


class Ignored(NamedTuple):
    """An event that removes nothing, and why."""

    reason: str


def is_task_event(event: object) -> bool:
    """Whether the function was invoked with an ECS task state change (by EventBridge, or by
    `lambdamesh dev`'s invoke endpoint), not an HTTP request."""
    return (
        isinstance(event, dict)
        and event.get("source") == SOURCE
        and event.get("detail-type") == DETAIL_TYPE
    )


def read(event: dict[str, Any]) -> TaskStop | Ignored:
    """The stop an event announces, or why it announces none."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return Ignored("the event has no detail object")
    task_arn = detail.get("taskArn")
    if not isinstance(task_arn, str) or len(task_arn) > MAX_TASK_ARN:
        return Ignored("the event names no task")
    if not TASK_ARN_RULE.fullmatch(task_arn):
        return Ignored("the event's taskArn is not an ECS task ARN")
    desired, last = _text(detail.get("desiredStatus")), _text(detail.get("lastStatus"))
    if desired != STOPPED and last not in LEAVING_STATUSES:
        return Ignored(f"the task is not stopping (desiredStatus {desired}, lastStatus {last})")
    return TaskStop(
        task_arn=task_arn,
        cluster_arn=_text(detail.get("clusterArn")),
        desired_status=desired,
        last_status=last,
        stop_code=_text(detail.get("stopCode")),
        stopped_reason=_text(detail.get("stoppedReason")),
    )


def _text(value: Any) -> str | None:
    return value[:MAX_REASON] if isinstance(value, str) and value else None


def handle(event: dict[str, Any], registry: Registry) -> dict[str, Any]:
    """Remove what a stopping task registered; the answer says what was done.

    A registry that cannot be reached raises (``RegistryUnavailable``): Lambda then retries
    the event, and EventBridge's dead-letter queue keeps what it could not deliver. What was
    removed before the failure is logged with the task first, since the retry finds it gone.
    An event that is not a stop is answered, not raised: retrying cannot change it.
    """
    stop = read(event)
    if isinstance(stop, Ignored):
        logger.debug("task event ignored", extra={"reason": stop.reason})
        return {"outcome": "ignored", "reason": stop.reason}
    removed: list[dict[str, str]] = []
    try:
        for service, instance_id in registry.remove_task(stop.task_arn):
            removed.append({"service": service, "instance_id": instance_id})
    except LambdaMeshError:
        _report("task stopped; removal failed", stop, removed, warn=True)
        raise
    if not removed:
        logger.debug("task stopped; it registered nothing", extra=stop.to_json())
        return {"outcome": "nothing_registered", **stop.to_json(), "removed": []}
    _report("task stopped; its instances removed", stop, removed)
    return {"outcome": "removed", **stop.to_json(), "removed": removed}


def _report(
    message: str, stop: TaskStop, removed: list[dict[str, str]], warn: bool = False
) -> None:
    """Log what a stop removed, with the task, and count it."""
    (logger.warning if warn else logger.info)(message, extra={**stop.to_json(), "removed": removed})
    if removed:
        record_task_removals(len(removed))
