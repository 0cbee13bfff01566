"""infra/task-events.yaml on moto, after `chalice deploy`: a function and a role both named
lambdamesh-<stage>, as Chalice names them, read the way docs/deploy.md reads them
(`aws lambda get-function`). test_api_stack.py deploys the same template after the package
route, from the API stack's outputs.

moto's CloudFormation creates the rule with its target, the function's permission, the queue
and the role's policy. It has no AWS::SQS::QueuePolicy nor AWS::Lambda::EventInvokeConfig
(pinned below): those are replayed as the API calls behind them (SetQueueAttributes,
PutFunctionEventInvokeConfig), from the template's rendering, validated by botocore's model.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from dataclasses import dataclass

import pytest
from moto.cloudformation.parsing import resource_class_from_type

from tests.deploy.conftest import Client
from tests.deploy.infra_fixtures import REGION, Rendering, api_input, load_template
from tests.deploy.test_infra_stacks import INFRA, Stack, deploy

CLUSTERS = (
    f"arn:aws:ecs:{REGION}:123456789012:cluster/mesh",
    f"arn:aws:ecs:{REGION}:123456789012:cluster/mesh-canary",
)


@dataclass(frozen=True)
class Function:
    """What `chalice deploy` leaves: the function, its role, and (here) an alias."""

    arn: str
    name: str
    role_name: str


@pytest.fixture(scope="module")
def function(aws: Client) -> Function:
    name = f"lambdamesh-t{uuid.uuid4().hex[:8]}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = aws("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "def app(event, context):\n    return event\n")
    awslambda = aws("lambda")
    awslambda.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="app.app",
        Code={"ZipFile": code.getvalue()},
    )
    version = awslambda.publish_version(FunctionName=name)["Version"]
    awslambda.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    # As docs/deploy.md reads them: the function's ARN and its role's name.
    configuration = awslambda.get_function(FunctionName=name)["Configuration"]
    return Function(configuration["FunctionArn"], name, configuration["Role"].rsplit("/", 1)[1])


def parameters(function: Function, **more: str) -> dict[str, str]:
    stage = function.name.removeprefix("lambdamesh-")
    return {
        "Stage": stage,
        "FunctionArn": function.arn,
        "FunctionRoleName": function.role_name,
        **more,
    }


@pytest.fixture(scope="module")
def every_cluster(aws: Client, function: Function) -> Stack:
    """The defaults: every cluster's stops, to the unqualified function."""
    return deploy(aws, f"{function.name}-task-events", "task-events", parameters(function))


@pytest.fixture(scope="module")
def two_clusters(aws: Client, function: Function) -> Stack:
    """Two clusters' stops, to the alias live, given up after 5 minutes."""
    given = parameters(
        function,
        Stage=f"{function.name.removeprefix('lambdamesh-')}c",
        ClusterArns=",".join(CLUSTERS),
        FunctionQualifier="live",
        MaximumEventAgeInSeconds="300",
    )
    return deploy(aws, f"{function.name}c-task-events", "task-events", given)


def rendering(function: Function, stack: Stack, **more: str) -> Rendering:
    return Rendering(
        load_template(INFRA / "task-events.yaml"),
        parameters=parameters(function, **more),
        references=stack.resources,
        attributes={
            ("TaskStoppedRule", "Arn"): stack.outputs["RuleArn"],
            ("DeadLetterQueue", "Arn"): stack.outputs["DeadLetterQueueArn"],
        },
        stack_name=stack.name,
    )


def test_motos_cloudformation_has_no_queue_policy_nor_async_invoke_config() -> None:
    assert resource_class_from_type("AWS::SQS::QueuePolicy") is None
    assert resource_class_from_type("AWS::Lambda::EventInvokeConfig") is None


def test_the_stack_makes_the_rule_the_permission_the_queue_and_the_roles_grant(
    every_cluster: Stack, two_clusters: Stack
) -> None:
    for stack in (every_cluster, two_clusters):
        assert stack.status == "CREATE_COMPLETE"
        assert set(stack.resources) - {""} == {
            "TaskStoppedRule",
            "InvokePermission",
            "DeadLetterQueue",
            "FailureDestinationPolicy",
        }


def test_the_rule_on_the_default_bus_takes_every_clusters_task_stops(
    aws: Client, function: Function, every_cluster: Stack
) -> None:
    rule = aws("events").describe_rule(Name=every_cluster.resources["TaskStoppedRule"])

    assert rule["Arn"] == every_cluster.outputs["RuleArn"]
    assert rule["Name"] == f"{function.name}-task-stopped"
    assert (rule["EventBusName"], rule["State"]) == ("default", "ENABLED")
    assert json.loads(rule["EventPattern"]) == {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {"desiredStatus": ["STOPPED"]},
    }


def test_with_cluster_arns_the_rule_takes_those_clusters_stops_only(
    aws: Client, two_clusters: Stack
) -> None:
    rule = aws("events").describe_rule(Name=two_clusters.resources["TaskStoppedRule"])

    assert json.loads(rule["EventPattern"])["detail"] == {
        "desiredStatus": ["STOPPED"],
        "clusterArn": list(CLUSTERS),
    }


def test_the_target_is_the_function_with_retries_and_the_stacks_queue_for_dead_letters(
    aws: Client, function: Function, every_cluster: Stack, two_clusters: Stack
) -> None:
    events = aws("events")

    (plain,) = events.list_targets_by_rule(Rule=every_cluster.resources["TaskStoppedRule"])[
        "Targets"
    ]
    (alias,) = events.list_targets_by_rule(Rule=two_clusters.resources["TaskStoppedRule"])[
        "Targets"
    ]

    assert plain == {
        "Id": "lambdamesh",
        "Arn": function.arn,
        "RetryPolicy": {"MaximumRetryAttempts": 8, "MaximumEventAgeInSeconds": 600},
        "DeadLetterConfig": {"Arn": every_cluster.outputs["DeadLetterQueueArn"]},
    }
    assert alias["Arn"] == f"{function.arn}:live"
    assert alias["RetryPolicy"]["MaximumEventAgeInSeconds"] == 300
    assert alias["DeadLetterConfig"] == {"Arn": two_clusters.outputs["DeadLetterQueueArn"]}


def test_eventbridge_may_invoke_the_function_and_its_alias_for_each_stacks_rule_only(
    aws: Client, function: Function, every_cluster: Stack, two_clusters: Stack
) -> None:
    policy = json.loads(aws("lambda").get_policy(FunctionName=function.name)["Policy"])

    # moto keeps every qualifier's statements in the function's one policy, and the
    # template's FunctionName in each.
    granted = {
        (s["FunctionName"], s["Condition"]["ArnLike"]["AWS:SourceArn"])
        for s in policy["Statement"]
        if s["Principal"] == {"Service": "events.amazonaws.com"}
        and s["Action"] == "lambda:InvokeFunction"
    }
    assert granted == {
        (function.arn, every_cluster.outputs["RuleArn"]),
        (f"{function.arn}:live", two_clusters.outputs["RuleArn"]),
    }


def test_the_queue_is_encrypted_standard_and_keeps_messages_fourteen_days(
    aws: Client, every_cluster: Stack
) -> None:
    attributes = aws("sqs").get_queue_attributes(
        QueueUrl=every_cluster.outputs["DeadLetterQueueUrl"], AttributeNames=["All"]
    )["Attributes"]

    assert attributes["QueueArn"] == every_cluster.outputs["DeadLetterQueueArn"]
    assert attributes["SqsManagedSseEnabled"] == "true"
    assert attributes["MessageRetentionPeriod"] == "1209600"
    assert "FifoQueue" not in attributes


def test_the_functions_role_may_send_to_the_queue(
    aws: Client, function: Function, every_cluster: Stack
) -> None:
    name = f"{function.name}-task-events-failures"

    document = aws("iam").get_role_policy(RoleName=function.role_name, PolicyName=name)[
        "PolicyDocument"
    ]

    assert document["Statement"] == [
        {
            "Sid": "SendFailedTaskEvents",
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": every_cluster.outputs["DeadLetterQueueArn"],
        }
    ]


def test_the_queue_policy_lets_only_the_rule_send_its_dead_letters(
    aws: Client, function: Function, every_cluster: Stack
) -> None:
    properties = rendering(function, every_cluster).properties("DeadLetterQueuePolicy")
    sqs = aws("sqs")

    # CloudFormation sets the policy on each queue named: SetQueueAttributes' Policy.
    for url in properties["Queues"]:
        attributes = {"Policy": json.dumps(properties["PolicyDocument"])}
        sqs.set_queue_attributes(
            **api_input("sqs", "SetQueueAttributes", {"QueueUrl": url, "Attributes": attributes})
        )
    policy = json.loads(
        sqs.get_queue_attributes(
            QueueUrl=every_cluster.outputs["DeadLetterQueueUrl"], AttributeNames=["Policy"]
        )["Attributes"]["Policy"]
    )

    assert properties["Queues"] == [every_cluster.outputs["DeadLetterQueueUrl"]]
    allow = policy["Statement"][0]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Resource"] == every_cluster.outputs["DeadLetterQueueArn"]
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": every_cluster.outputs["RuleArn"]}}


def test_lambda_retries_the_functions_errors_twice_then_sends_them_to_the_queue(
    aws: Client, function: Function, every_cluster: Stack
) -> None:
    properties = rendering(function, every_cluster).properties("AsyncInvokeConfig")
    awslambda = aws("lambda")

    awslambda.put_function_event_invoke_config(
        **api_input("lambda", "PutFunctionEventInvokeConfig", properties)
    )
    config = awslambda.get_function_event_invoke_config(
        FunctionName=function.name, Qualifier="$LATEST"
    )

    assert (properties["FunctionName"], properties["Qualifier"]) == (function.arn, "$LATEST")
    assert config["MaximumRetryAttempts"] == 2
    assert config["MaximumEventAgeInSeconds"] == 600
    assert config["DestinationConfig"] == {
        "OnFailure": {"Destination": every_cluster.outputs["DeadLetterQueueArn"]}
    }
