"""infra/task-events.yaml: which ECS events reach the function, and what happens to the ones
it cannot apply.

The rule's pattern is checked the way EventBridge matches it (every field the pattern names
must be in the event, with one of the values listed:
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html) against
events shaped as ECS documents them, and each event it delivers is handed to the function's
own reading of it (chalicelib/task_events.py).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from chalicelib import task_events
from lambdamesh_routing.limits import MAX_LEASE_SECONDS
from lambdamesh_sidecar.variables import DEFAULT_LEASE_SECONDS
from tests.deploy.infra_fixtures import Rendering
from tests.samples import RUNNING, SPOT_NOTICE, STOPPED, load

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "task-events.yaml"
ACCOUNT = "111122223333"
CLUSTER = f"arn:aws:ecs:us-west-2:{ACCOUNT}:cluster/mesh"
OTHER_CLUSTER = f"arn:aws:ecs:us-west-2:{ACCOUNT}:cluster/batch"
FUNCTION_ARN = f"arn:aws:lambda:us-west-2:{ACCOUNT}:function:lambdamesh-prod"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    parsed, matches = decode(str(TEMPLATE))
    assert not matches, matches
    assert parsed is not None
    return dict(parsed)


def rendered(template: dict[str, Any], **parameters: str) -> Rendering:
    """The template as CloudFormation resolves it for these parameters."""
    given = {"Stage": "prod", "FunctionArn": FUNCTION_ARN, "FunctionRoleName": "lambdamesh-prod"}
    return Rendering(
        template,
        parameters=given | parameters,
        references={"DeadLetterQueue": "https://sqs.us-west-2.amazonaws.com/q"},
        attributes={
            ("TaskStoppedRule", "Arn"): "arn:aws:events:us-west-2:1:rule/r",
            ("DeadLetterQueue", "Arn"): "arn:aws:sqs:us-west-2:1:q",
        },
    )


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge's matching of an event pattern of exact values."""
    for field, wanted in pattern.items():
        if field not in event:
            return False
        value = event[field]
        if isinstance(wanted, dict):
            if not isinstance(value, dict) or not matches(wanted, value):
                return False
        elif value not in wanted:
            return False
    return True


def ecs_event(
    desired: str, last: str, *, cluster: str = CLUSTER, stop_code: str | None = None
) -> dict[str, Any]:
    """An "ECS Task State Change" event, with the fields ECS's example events carry
    (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs_task_events.html)."""
    task = f"arn:aws:ecs:us-west-2:{ACCOUNT}:task/mesh/c13b4cb40f1f4fe4a2971f76ae5a47ad"
    detail: dict[str, Any] = {
        "clusterArn": cluster,
        "desiredStatus": desired,
        "lastStatus": last,
        "taskArn": task,
        "launchType": "FARGATE",
        "version": 4,
    }
    if stop_code is not None:
        detail |= {"stopCode": stop_code, "stoppedReason": "Essential container in task exited"}
    return {
        "version": "0",
        "id": "3317b2af-7005-947d-b652-f55e762e571a",
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": ACCOUNT,
        "time": "2020-01-23T17:57:58Z",
        "region": "us-west-2",
        "resources": [task],
        "detail": detail,
    }


# Every event of a task's stop, from ECS deciding it (desiredStatus STOPPED while it still
# runs: a Spot termination notice is one) to the task stopped, for a few stop codes.
STOPS = [
    ecs_event("STOPPED", "RUNNING", stop_code="TerminationNotice"),
    ecs_event("STOPPED", "RUNNING", stop_code="UserInitiated"),
    ecs_event("STOPPED", "DEACTIVATING", stop_code="ServiceSchedulerInitiated"),
    ecs_event("STOPPED", "STOPPING", stop_code="EssentialContainerExited"),
    ecs_event("STOPPED", "DEPROVISIONING", stop_code="SpotInterruption"),
    ecs_event("STOPPED", "STOPPED", stop_code="TaskFailedToStart"),
    # A stop code newer than this code: still a stop.
    ecs_event("STOPPED", "STOPPED", stop_code="InfrastructureHealth"),
]
STARTS = [
    ecs_event("RUNNING", "PROVISIONING"),
    ecs_event("RUNNING", "PENDING"),
    ecs_event("RUNNING", "ACTIVATING"),
    ecs_event("RUNNING", "RUNNING"),
]


def pattern(template: dict[str, Any], **parameters: str) -> dict[str, Any]:
    rule = rendered(template, **parameters).properties("TaskStoppedRule")
    found: dict[str, Any] = rule["EventPattern"]
    return found


def test_the_rule_keys_on_source_detail_type_and_desired_status_only(
    template: dict[str, Any],
) -> None:
    assert pattern(template) == {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {"desiredStatus": ["STOPPED"]},
    }


@pytest.mark.parametrize(
    "event", STOPS, ids=lambda e: f"{e['detail']['lastStatus']}-{e['detail']['stopCode']}"
)
def test_every_event_of_a_stop_reaches_the_function_which_reads_it_as_a_stop(
    template: dict[str, Any], event: dict[str, Any]
) -> None:
    delivered = matches(pattern(template), event)

    assert delivered is True
    assert task_events.is_task_event(event)
    assert isinstance(task_events.read(event), task_events.TaskStop)


@pytest.mark.parametrize(
    ("sample", "delivered"), [(SPOT_NOTICE, True), (STOPPED, True), (RUNNING, False)]
)
def test_of_ecs_documented_events_the_rule_delivers_the_stops(
    template: dict[str, Any], sample: str, delivered: bool
) -> None:
    event = load(sample)

    assert matches(pattern(template), event) is delivered
    assert isinstance(task_events.read(event), task_events.TaskStop) is delivered


@pytest.mark.parametrize("event", STARTS, ids=lambda e: f"{e['detail']['lastStatus']}")
def test_events_of_starting_and_running_tasks_never_invoke_the_function(
    template: dict[str, Any], event: dict[str, Any]
) -> None:
    assert matches(pattern(template), event) is False


def test_with_cluster_arns_given_only_those_clusters_stops_reach_the_function(
    template: dict[str, Any],
) -> None:
    limited = pattern(template, ClusterArns=f"{CLUSTER},arn:aws:ecs:us-west-2:1:cluster/x")

    assert limited["detail"]["clusterArn"] == [CLUSTER, "arn:aws:ecs:us-west-2:1:cluster/x"]
    assert matches(limited, ecs_event("STOPPED", "STOPPED", cluster=CLUSTER)) is True
    assert matches(limited, ecs_event("STOPPED", "STOPPED", cluster=OTHER_CLUSTER)) is False
    # Empty, the default: every cluster.
    assert template["Parameters"]["ClusterArns"]["Default"] == ""
    assert matches(pattern(template), ecs_event("STOPPED", "STOPPED", cluster=OTHER_CLUSTER))


@pytest.mark.parametrize(
    ("qualifier", "target"), [("$LATEST", FUNCTION_ARN), ("live", f"{FUNCTION_ARN}:live")]
)
def test_the_rule_invokes_the_function_or_its_alias_and_only_the_rule_may(
    template: dict[str, Any], qualifier: str, target: str
) -> None:
    rendering = rendered(template, FunctionQualifier=qualifier)

    (rule_target,) = rendering.properties("TaskStoppedRule")["Targets"]
    permission = rendering.properties("InvokePermission")
    invoke_config = rendering.properties("AsyncInvokeConfig")

    assert rule_target["Arn"] == target
    assert permission == {
        "Action": "lambda:InvokeFunction",
        "FunctionName": target,
        "Principal": "events.amazonaws.com",
        "SourceArn": "arn:aws:events:us-west-2:1:rule/r",
    }
    assert (invoke_config["FunctionName"], invoke_config["Qualifier"]) == (FUNCTION_ARN, qualifier)


def test_eventbridge_retries_the_invoke_for_ten_minutes_then_dead_letters_it(
    template: dict[str, Any],
) -> None:
    (target,) = rendered(template).properties("TaskStoppedRule")["Targets"]

    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 8, "MaximumEventAgeInSeconds": "600"}
    assert target["DeadLetterConfig"] == {"Arn": "arn:aws:sqs:us-west-2:1:q"}


def test_lambda_retries_a_failed_event_twice_then_sends_it_to_the_same_queue(
    template: dict[str, Any],
) -> None:
    config = rendered(template).properties("AsyncInvokeConfig")

    assert config["MaximumRetryAttempts"] == 2
    assert config["MaximumEventAgeInSeconds"] == "600"
    assert config["DestinationConfig"] == {
        "OnFailure": {"Destination": "arn:aws:sqs:us-west-2:1:q"}
    }
    # Lambda checks the role's grant on the destination when it is configured.
    assert template["Resources"]["AsyncInvokeConfig"]["DependsOn"] == "FailureDestinationPolicy"


def test_an_event_older_than_the_longest_lease_is_given_up(template: dict[str, Any]) -> None:
    """By then the lease has taken the stopped task's instances out of every list."""
    age = template["Parameters"]["MaximumEventAgeInSeconds"]

    assert age["Default"] >= MAX_LEASE_SECONDS > DEFAULT_LEASE_SECONDS
    # EventBridge's range (60..86400) and Lambda's (60..21600) both hold it.
    assert age["MinValue"] >= 60 and age["MaxValue"] <= 21600


def test_only_the_rule_may_send_dead_letters_and_only_over_tls(template: dict[str, Any]) -> None:
    policy = rendered(template).properties("DeadLetterQueuePolicy")

    assert policy["Queues"] == ["https://sqs.us-west-2.amazonaws.com/q"]
    allow, deny = policy["PolicyDocument"]["Statement"]
    assert allow == {
        "Sid": "TaskStoppedRuleDeadLetters",
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": "arn:aws:sqs:us-west-2:1:q",
        "Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:events:us-west-2:1:rule/r"}},
    }
    assert (deny["Effect"], deny["Condition"]) == (
        "Deny",
        {"Bool": {"aws:SecureTransport": "false"}},
    )


def test_the_functions_role_may_send_to_the_queue_and_nothing_else(
    template: dict[str, Any],
) -> None:
    policy = rendered(template).properties("FailureDestinationPolicy")

    assert policy["Roles"] == ["lambdamesh-prod"]
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Sid": "SendFailedTaskEvents",
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": "arn:aws:sqs:us-west-2:1:q",
        }
    ]


def test_the_queue_is_standard_encrypted_and_keeps_messages_fourteen_days(
    template: dict[str, Any],
) -> None:
    queue = rendered(template).properties("DeadLetterQueue")

    # EventBridge takes a standard queue only; SSE-SQS needs no KMS grant.
    assert "FifoQueue" not in queue
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queue["QueueName"] == "lambdamesh-prod-task-events-dlq"


@pytest.mark.parametrize(
    ("parameter", "value", "accepted"),
    [
        ("FunctionArn", FUNCTION_ARN, True),
        ("FunctionArn", f"arn:aws-cn:lambda:cn-north-1:{ACCOUNT}:function:lambdamesh-prod", True),
        ("FunctionArn", f"{FUNCTION_ARN}:live", False),
        ("FunctionArn", "lambdamesh-prod", False),
        ("FunctionQualifier", "$LATEST", True),
        ("FunctionQualifier", "live", True),
        ("FunctionQualifier", "live:1", False),
        ("FunctionRoleName", "lambdamesh-prod", True),
        ("FunctionRoleName", "lambdamesh-prod-api-ApiHandlerRole-1A2B3C4D5E6F", True),
        ("FunctionRoleName", f"arn:aws:iam::{ACCOUNT}:role/lambdamesh-prod", False),
    ],
)
def test_parameters_accept_what_the_deploy_routes_give_and_refuse_the_rest(
    template: dict[str, Any], parameter: str, value: str, accepted: bool
) -> None:
    allowed = template["Parameters"][parameter]["AllowedPattern"]

    # CloudFormation matches AllowedPattern against the whole value.
    assert (re.fullmatch(allowed, value) is not None) is accepted


def test_outputs_are_the_rule_and_the_queue(template: dict[str, Any]) -> None:
    assert set(template["Outputs"]) == {"RuleArn", "DeadLetterQueueUrl", "DeadLetterQueueArn"}


DEPLOY = re.compile(
    r"^aws cloudformation deploy --stack-name lambdamesh-\$STAGE-task-events.*?[^\\]$",
    re.M | re.S,
)


def test_each_documented_deploy_gives_every_parameter_without_a_default(
    template: dict[str, Any],
) -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    required = {name for name, p in template["Parameters"].items() if "Default" not in p}

    commands = DEPLOY.findall(guide)

    assert len(commands) >= 2  # chalice deploy's route and the package route's
    for command in commands:
        words = shlex.split(command.replace("\\\n", " "))
        given = {w.split("=", 1)[0] for w in words[words.index("--parameter-overrides") + 1 :]}
        assert required <= given, command
        assert "--capabilities" in words and "CAPABILITY_IAM" in words, command
        assert words[words.index("--template-file") + 1] == "infra/task-events.yaml"
