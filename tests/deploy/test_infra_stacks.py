"""infra/: checkov finds nothing left unexplained, and the stacks deploy in order on moto.

The order is the deployment's: the VPC, subnets, route table and tasks' security group exist
already (made here with the EC2 API), then registry -> signing-key -> network -> example
service, each stack's outputs feeding the next. moto's CloudFormation creates most resource
types; for the ones it skips or passes on in part, `infra_fixtures` replays CloudFormation's
rendering as the API call behind the resource, validated by botocore, on moto.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdamesh import cli
from lambdamesh_sidecar import config as sidecar_config
from lambdamesh_sidecar.ecs import TaskMetadata
from lambdamesh_sidecar.variables import ECS_METADATA_VARIABLE
from tests.deploy.conftest import Client
from tests.deploy.infra_fixtures import REGION, Rendering, api_input, load_template

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
OWN_TEMPLATES = ("registry-table", "signing-key", "network", "example-service", "task-events")
TASK_SUBNETS = ("10.20.0.0/20", "10.20.16.0/20")
API_URL = "https://abc123.execute-api.us-east-1.amazonaws.com/prod"
SIDECAR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/lambdamesh-sidecar:0.1.0"
TOKEN = "service-token-for-hello"
# infra/example-service.yaml's defaults: the sidecar's inbound port, the app's port behind it.
INBOUND_PORT = 8443
APP_PORT = 80


@dataclass
class Given:
    """What the network stack is given: made with the EC2 API, as a real VPC would be."""

    stage: str
    vpc_id: str
    subnet_ids: list[str]
    route_table_id: str
    tasks_group_id: str
    token_secret_arn: str


@dataclass
class Stack:
    name: str
    status: str
    outputs: dict[str, str]
    resources: dict[str, str]  # logical id -> physical id, for what moto created


@pytest.fixture(scope="module")
def given(aws: Client) -> Given:
    ec2 = aws("ec2")
    stage = f"t{uuid.uuid4().hex[:8]}"
    vpc_id = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet_ids = [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=f"{REGION}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for cidr, zone in zip(TASK_SUBNETS, "ab", strict=True)
    ]
    route_table_id = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    for subnet_id in subnet_ids:
        ec2.associate_route_table(RouteTableId=route_table_id, SubnetId=subnet_id)
    tasks_group_id = ec2.create_security_group(
        GroupName=f"{stage}-tasks", Description="hello tasks", VpcId=vpc_id
    )["GroupId"]
    # `lambdamesh token hello`, stored as the docs say.
    token_secret_arn = aws("secretsmanager").create_secret(
        Name=f"lambdamesh/{stage}/hello-token", SecretString=TOKEN
    )["ARN"]
    return Given(stage, vpc_id, subnet_ids, route_table_id, tasks_group_id, token_secret_arn)


def deploy(aws: Client, name: str, template: str, parameters: Mapping[str, str]) -> Stack:
    cloudformation = aws("cloudformation")
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=(INFRA / f"{template}.yaml").read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    cloudformation.get_waiter("stack_create_complete").wait(
        StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    (described,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    summaries = cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
    return Stack(
        name=name,
        status=described["StackStatus"],
        outputs={o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])},
        # moto lists a resource type it skipped as an entry without a logical id.
        resources={
            s["LogicalResourceId"]: s.get("PhysicalResourceId", "")
            for s in summaries
            if s.get("LogicalResourceId")
        },
    )


@pytest.fixture(scope="module")
def stacks(aws: Client, given: Given) -> dict[str, Stack]:
    """The deployment, in order: lambdamesh-{stage}-{registry,signing-key,network,hello}."""
    prefix = f"lambdamesh-{given.stage}"
    registry = deploy(aws, f"{prefix}-registry", "registry-table", {"Stage": given.stage})
    signing_key = deploy(aws, f"{prefix}-signing-key", "signing-key", {"Stage": given.stage})
    network = deploy(
        aws,
        f"{prefix}-network",
        "network",
        {
            "VpcId": given.vpc_id,
            "SubnetIds": ",".join(given.subnet_ids),
            "RouteTableIds": given.route_table_id,
            "TasksSecurityGroupId": given.tasks_group_id,
            "TaskSubnetCidrs": ",".join(TASK_SUBNETS),
            # As docs/deploy.md deploys it: the example service's inbound port only.
            "ServicePortFrom": str(INBOUND_PORT),
            "ServicePortTo": str(INBOUND_PORT),
        },
    )
    hello = deploy(
        aws,
        f"{prefix}-hello",
        "example-service",
        {
            "Stage": given.stage,
            # The tasks share the Lambda's subnets here: the network stack's output.
            "SubnetIds": network.outputs["SubnetIds"],
            "TaskSubnetCidrs": network.outputs["AllowedNetworks"],
            "TasksSecurityGroupId": given.tasks_group_id,
            "LambdaMeshUrl": API_URL,
            "TokenSecretArn": given.token_secret_arn,
            "SidecarImage": SIDECAR_IMAGE,
        },
    )
    return {"registry": registry, "signing-key": signing_key, "network": network, "hello": hello}


@pytest.fixture(scope="module")
def provisioned(aws: Client, given: Given) -> Stack:
    return deploy(
        aws,
        f"lambdamesh-{given.stage}p-registry",
        "registry-table",
        {
            "Stage": f"{given.stage}p",
            "BillingMode": "PROVISIONED",
            "ReadCapacityUnits": "7",
            "MaxReadCapacityUnits": "70",
            "WriteCapacityUnits": "3",
            "MaxWriteCapacityUnits": "30",
        },
    )


@pytest.fixture(scope="module")
def checkov_report(checkov: Path) -> Iterator[dict[str, Any]]:
    files = [arg for name in OWN_TEMPLATES for arg in ("--file", str(INFRA / f"{name}.yaml"))]
    # --skip-download: no call to the vendor's platform; the checks ship with checkov.
    options = ["--framework", "cloudformation", "--output", "json", "--compact", "--skip-download"]
    completed = subprocess.run(
        [str(checkov), *options, *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.stdout, completed.stderr
    yield json.loads(completed.stdout)


# checkov


def test_checkov_reports_no_failed_check_on_any_infra_template(
    checkov_report: dict[str, Any],
) -> None:
    failed = checkov_report["results"]["failed_checks"]

    assert [(c["check_id"], c["resource"], c["file_path"]) for c in failed] == []
    assert checkov_report["summary"]["parsing_errors"] == 0


def test_checkov_checked_every_template(checkov_report: dict[str, Any]) -> None:
    results = checkov_report["results"]
    checks = results["passed_checks"] + results["skipped_checks"]
    checked = {Path(c["file_path"]).stem for c in checks}

    assert checked == set(OWN_TEMPLATES)


def test_every_checkov_skip_gives_its_reason_in_the_template(
    checkov_report: dict[str, Any],
) -> None:
    skipped = checkov_report["results"]["skipped_checks"]

    assert {(c["check_id"], c["resource"]) for c in skipped} == {
        ("CKV_AWS_119", "AWS::DynamoDB::Table.RegistryTable"),
        ("CKV_AWS_149", "AWS::SecretsManager::Secret.SigningKeySecret"),
        ("CKV_AWS_158", "AWS::Logs::LogGroup.LogGroup"),
        ("CKV_AWS_27", "AWS::SQS::Queue.DeadLetterQueue"),
    }
    assert all(len(c["check_result"]["suppress_comment"]) > 40 for c in skipped)


# registry-table


def test_every_stack_reaches_create_complete(stacks: dict[str, Stack]) -> None:
    assert {name: stack.status for name, stack in stacks.items()} == dict.fromkeys(
        stacks, "CREATE_COMPLETE"
    )


def test_registry_stack_creates_the_stage_table_keyed_by_pk_and_sk_on_demand(
    aws: Client, given: Given, stacks: dict[str, Stack]
) -> None:
    outputs = stacks["registry"].outputs

    table = aws("dynamodb").describe_table(TableName=outputs["TableName"])["Table"]

    assert outputs["TableName"] == f"lambdamesh-registry-{given.stage}"
    assert outputs["TableArn"] == table["TableArn"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert [
        (i["IndexName"], i["KeySchema"], i["Projection"], i["IndexStatus"])
        for i in table["GlobalSecondaryIndexes"]
    ] == [
        (
            "by-task",
            [{"AttributeName": "task_arn", "KeyType": "HASH"}],
            {"ProjectionType": "KEYS_ONLY"},
            "ACTIVE",
        )
    ]
    # moto's CloudFormation does not apply TimeToLiveSpecification, point-in-time recovery
    # or SSESpecification; tests/unit/test_infra_template.py checks them in the template.


def test_deleting_the_registry_stack_keeps_the_table(aws: Client, given: Given) -> None:
    stage = f"{given.stage}d"
    stack = deploy(aws, f"lambdamesh-{stage}-registry", "registry-table", {"Stage": stage})

    aws("cloudformation").delete_stack(StackName=stack.name)

    table = aws("dynamodb").describe_table(TableName=stack.outputs["TableName"])["Table"]
    assert table["TableStatus"] == "ACTIVE"


def test_provisioned_registry_table_has_the_capacity_given(aws: Client, provisioned: Stack) -> None:
    table = aws("dynamodb").describe_table(TableName=provisioned.outputs["TableName"])["Table"]

    assert provisioned.status == "CREATE_COMPLETE"
    assert table["BillingModeSummary"]["BillingMode"] == "PROVISIONED"
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 7
    assert table["ProvisionedThroughput"]["WriteCapacityUnits"] == 3
    # The index by-task has capacity of its own: the table's.
    [index] = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by-task"
    assert index["ProvisionedThroughput"]["ReadCapacityUnits"] == 7
    assert index["ProvisionedThroughput"]["WriteCapacityUnits"] == 3
    # moto's CloudFormation has no Application Auto Scaling: the scaling resources are
    # replayed through its API in the next test.
    assert set(provisioned.resources) == {"RegistryTable", "RegistryAccessPolicy"}


def test_provisioned_table_capacity_scales_between_the_bounds_given(
    aws: Client, given: Given, provisioned: Stack
) -> None:
    rendering = Rendering(
        load_template(INFRA / "registry-table.yaml"),
        parameters={
            "Stage": f"{given.stage}p",
            "BillingMode": "PROVISIONED",
            "ReadCapacityUnits": "7",
            "MaxReadCapacityUnits": "70",
            "WriteCapacityUnits": "3",
            "MaxWriteCapacityUnits": "30",
        },
        references=provisioned.resources,
    )
    autoscaling = aws("application-autoscaling")
    assert rendering.condition("IsProvisioned")

    for target, policy in (
        ("ReadScalableTarget", "ReadScalingPolicy"),
        ("WriteScalableTarget", "WriteScalingPolicy"),
        ("TaskIndexReadScalableTarget", "TaskIndexReadScalingPolicy"),
        ("TaskIndexWriteScalableTarget", "TaskIndexWriteScalingPolicy"),
    ):
        target_properties = rendering.properties(target)
        autoscaling.register_scalable_target(
            **api_input("application-autoscaling", "RegisterScalableTarget", target_properties)
        )
        # ScalingTargetId is CloudFormation's link to the target; the API names the target.
        policy_template = dict(rendering.template["Resources"][policy]["Properties"])
        del policy_template["ScalingTargetId"]
        policy_properties = rendering.resolve(policy_template) | {
            key: target_properties[key]
            for key in ("ServiceNamespace", "ResourceId", "ScalableDimension")
        }
        autoscaling.put_scaling_policy(
            **api_input("application-autoscaling", "PutScalingPolicy", policy_properties)
        )

    table_id = f"table/lambdamesh-registry-{given.stage}p"
    index_id = f"{table_id}/index/by-task"
    targets = autoscaling.describe_scalable_targets(ServiceNamespace="dynamodb")
    bounds = {
        (t["ResourceId"], t["ScalableDimension"]): (t["MinCapacity"], t["MaxCapacity"])
        for t in targets["ScalableTargets"]
        if t["ResourceId"] in (table_id, index_id)
    }
    assert bounds == {
        (table_id, "dynamodb:table:ReadCapacityUnits"): (7, 70),
        (table_id, "dynamodb:table:WriteCapacityUnits"): (3, 30),
        (index_id, "dynamodb:index:ReadCapacityUnits"): (7, 70),
        (index_id, "dynamodb:index:WriteCapacityUnits"): (3, 30),
    }
    # moto's ResourceId filter keeps every policy whose id is part of the one given (the
    # table's is part of its index's), so the ids are compared here.
    policies = autoscaling.describe_scaling_policies(
        ServiceNamespace="dynamodb", ResourceId=index_id
    )["ScalingPolicies"]
    for resource_id in (table_id, index_id):
        assert sorted(
            (
                p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"][
                    "PredefinedMetricType"
                ],
                p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"],
            )
            for p in policies
            if p["ResourceId"] == resource_id
        ) == [
            ("DynamoDBReadCapacityUtilization", 70.0),
            ("DynamoDBWriteCapacityUtilization", 70.0),
        ], resource_id


# signing-key


def test_signing_key_stack_names_the_stage_secret(given: Given, stacks: dict[str, Stack]) -> None:
    outputs = stacks["signing-key"].outputs

    assert outputs["SigningKeySecretName"] == f"lambdamesh/{given.stage}/signing-key"
    # moto's CloudFormation has no AWS::SecretsManager::Secret: it creates no secret and so
    # no SigningKeySecretArn. The next test replays the value's generation instead.
    assert stacks["signing-key"].resources == {}


def test_generated_signing_key_is_64_letters_and_digits(aws: Client) -> None:
    rendering = Rendering(load_template(INFRA / "signing-key.yaml"), parameters={"Stage": "prod"})
    generate = rendering.properties("SigningKeySecret")["GenerateSecretString"]

    # CloudFormation generates the value with Secrets Manager's GetRandomPassword.
    params = api_input("secretsmanager", "GetRandomPassword", generate)
    values = [
        aws("secretsmanager").get_random_password(**params)["RandomPassword"] for _ in "12345"
    ]

    assert [len(value) for value in values] == [64] * 5
    assert all(value.isascii() and value.isalnum() for value in values)


# network


def test_network_outputs_are_what_lambdamesh_configure_reads(
    given: Given, stacks: dict[str, Stack]
) -> None:
    network = stacks["network"]

    assert network.outputs == {
        "SubnetIds": ",".join(given.subnet_ids),
        "SecurityGroupIds": network.resources["LambdaSecurityGroup"],
        "AllowedNetworks": ",".join(TASK_SUBNETS),
        "VpcId": given.vpc_id,
    }


def test_network_stack_creates_its_groups_rules_and_endpoints(stacks: dict[str, Stack]) -> None:
    # moto's CloudFormation has no AWS::EC2::SecurityGroupEgress and ignores a group's
    # SecurityGroupEgress: the Lambda's egress is checked in tests/unit/test_infra_template.py.
    assert set(stacks["network"].resources) == {
        "LambdaSecurityGroup",
        "TasksIngressFromLambda",
        "SecretsManagerEndpointSecurityGroup",
        "DynamoDbEndpoint",
        "SecretsManagerEndpoint",
    }


def ingress(aws: Client, group_id: str) -> list[tuple[str, int, int, list[str]]]:
    (group,) = aws("ec2").describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    return [
        (
            rule["IpProtocol"],
            rule["FromPort"],
            rule["ToPort"],
            [pair["GroupId"] for pair in rule["UserIdGroupPairs"]],
        )
        for rule in group["IpPermissions"]
    ]


def test_tasks_admit_the_lambda_on_the_service_ports_only(
    aws: Client, given: Given, stacks: dict[str, Stack]
) -> None:
    lambda_group = stacks["network"].outputs["SecurityGroupIds"]

    assert ingress(aws, given.tasks_group_id) == [
        ("tcp", INBOUND_PORT, INBOUND_PORT, [lambda_group])
    ]


def test_secrets_manager_endpoint_admits_the_lambda_and_the_tasks_on_https_only(
    aws: Client, given: Given, stacks: dict[str, Stack]
) -> None:
    network = stacks["network"]

    rules = ingress(aws, network.resources["SecretsManagerEndpointSecurityGroup"])

    assert [(protocol, low, high) for protocol, low, high, _ in rules] == [("tcp", 443, 443)]
    assert sorted(rules[0][3]) == sorted(
        [network.outputs["SecurityGroupIds"], given.tasks_group_id]
    )


def test_dynamodb_gateway_endpoint_routes_the_route_tables(
    aws: Client, given: Given, stacks: dict[str, Stack]
) -> None:
    ec2 = aws("ec2")
    endpoint_id = stacks["network"].resources["DynamoDbEndpoint"]

    (endpoint,) = ec2.describe_vpc_endpoints(VpcEndpointIds=[endpoint_id])["VpcEndpoints"]
    (table,) = ec2.describe_route_tables(RouteTableIds=[given.route_table_id])["RouteTables"]

    assert endpoint["VpcEndpointType"] == "Gateway"
    assert endpoint["ServiceName"] == f"com.amazonaws.{REGION}.dynamodb"
    assert endpoint["RouteTableIds"] == [given.route_table_id]
    assert [r["GatewayId"] for r in table["Routes"] if "DestinationPrefixListId" in r] == [
        endpoint_id
    ]


def test_secrets_manager_interface_endpoint_resolves_privately_in_the_lambda_subnets(
    aws: Client, given: Given, stacks: dict[str, Stack]
) -> None:
    network = stacks["network"]
    endpoint_id = network.resources["SecretsManagerEndpoint"]

    (endpoint,) = aws("ec2").describe_vpc_endpoints(VpcEndpointIds=[endpoint_id])["VpcEndpoints"]

    assert endpoint["VpcEndpointType"] == "Interface"
    assert endpoint["ServiceName"] == f"com.amazonaws.{REGION}.secretsmanager"
    assert endpoint["PrivateDnsEnabled"] is True
    assert sorted(endpoint["SubnetIds"]) == sorted(given.subnet_ids)
    assert [g["GroupId"] for g in endpoint["Groups"]] == [
        network.resources["SecretsManagerEndpointSecurityGroup"]
    ]


def test_the_network_stack_uses_the_endpoints_a_vpc_already_has(aws: Client, given: Given) -> None:
    """A VPC with its own DynamoDB gateway endpoint on the route table and a Secrets Manager
    endpoint with private DNS (AWS refuses a second of either): the stack makes neither, and
    admits the Lambda to the endpoint there is."""
    ec2 = aws("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnet_ids = [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=f"{REGION}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for cidr, zone in (("10.30.0.0/20", "a"), ("10.30.16.0/20", "b"))
    ]
    route_table_id = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    tasks = ec2.create_security_group(GroupName="tasks", Description="t", VpcId=vpc_id)
    endpoint_group = ec2.create_security_group(
        GroupName="secretsmanager-endpoint", Description="existing", VpcId=vpc_id
    )["GroupId"]
    ec2.create_vpc_endpoint(
        VpcId=vpc_id,
        ServiceName=f"com.amazonaws.{REGION}.dynamodb",
        VpcEndpointType="Gateway",
        RouteTableIds=[route_table_id],
    )
    ec2.create_vpc_endpoint(
        VpcId=vpc_id,
        ServiceName=f"com.amazonaws.{REGION}.secretsmanager",
        VpcEndpointType="Interface",
        SubnetIds=subnet_ids,
        SecurityGroupIds=[endpoint_group],
        PrivateDnsEnabled=True,
    )

    network = deploy(
        aws,
        f"lambdamesh-{given.stage}-existing-network",
        "network",
        {
            "VpcId": vpc_id,
            "SubnetIds": ",".join(subnet_ids),
            "RouteTableIds": route_table_id,
            "TasksSecurityGroupId": tasks["GroupId"],
            "TaskSubnetCidrs": "10.30.0.0/20,10.30.16.0/20",
            "CreateDynamoDbEndpoint": "false",
            "SecretsManagerEndpointSecurityGroupId": endpoint_group,
        },
    )

    assert network.status == "CREATE_COMPLETE"
    assert set(network.resources) == {
        "LambdaSecurityGroup",
        "TasksIngressFromLambda",
        "GivenSecretsManagerEndpointIngress",
    }
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    assert len(endpoints["VpcEndpoints"]) == 2  # the VPC's own, and no other
    assert ingress(aws, endpoint_group) == [
        ("tcp", 443, 443, [network.outputs["SecurityGroupIds"]])
    ]


# example-service


def test_example_service_runs_its_task_definition_in_a_cluster_of_its_own(
    aws: Client, stacks: dict[str, Stack]
) -> None:
    hello = stacks["hello"]

    (service,) = aws("ecs").describe_services(
        cluster=hello.outputs["ClusterName"], services=[hello.outputs["ServiceName"]]
    )["services"]

    assert set(hello.resources) == {
        "Cluster",
        "LogGroup",
        "ExecutionRole",
        "TaskDefinition",
        "Service",
    }
    assert hello.outputs["ClusterName"] == hello.resources["Cluster"]
    assert service["serviceArn"] == hello.outputs["ServiceArn"]
    assert service["serviceName"] == "hello"
    assert service["taskDefinition"] == hello.outputs["TaskDefinitionArn"]
    assert service["desiredCount"] == 2


def test_example_service_joins_an_existing_cluster_when_named(
    aws: Client, given: Given, stacks: dict[str, Stack]
) -> None:
    cluster = stacks["hello"].outputs["ClusterName"]

    stack = deploy(
        aws,
        f"lambdamesh-{given.stage}-hello2",
        "example-service",
        {
            "Stage": given.stage,
            "ServiceName": "hello2",
            "ClusterName": cluster,
            "SubnetIds": ",".join(given.subnet_ids),
            "TaskSubnetCidrs": ",".join(TASK_SUBNETS),
            "TasksSecurityGroupId": given.tasks_group_id,
            "LambdaMeshUrl": API_URL,
            "TokenSecretArn": given.token_secret_arn,
            "SidecarImage": SIDECAR_IMAGE,
        },
    )

    assert "Cluster" not in stack.resources
    assert stack.outputs["ClusterName"] == cluster
    services = aws("ecs").list_services(cluster=cluster)["serviceArns"]
    assert stack.outputs["ServiceArn"] in services


def test_example_logs_are_kept_for_the_retention_given(
    aws: Client, given: Given, stacks: dict[str, Stack]
) -> None:
    name = stacks["hello"].resources["LogGroup"]

    groups = aws("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]

    assert name == f"/ecs/lambdamesh-{given.stage}-hello"
    assert [g["retentionInDays"] for g in groups if g["logGroupName"] == name] == [30]


def test_execution_role_reads_only_the_token_secret(
    aws: Client, given: Given, stacks: dict[str, Stack]
) -> None:
    iam = aws("iam")
    role = stacks["hello"].resources["ExecutionRole"]

    document = iam.get_role_policy(RoleName=role, PolicyName="start-tasks")["PolicyDocument"]
    # moto's CloudFormation stores an inline policy as Python's text of it, not as JSON, and
    # leaves a None where an Fn::If gave AWS::NoValue (CloudFormation drops the element).
    document = ast.literal_eval(document) if isinstance(document, str) else document
    statements = {s["Sid"]: s for s in document["Statement"] if s is not None}

    assert statements["ReadTheServiceToken"]["Resource"] == given.token_secret_arn
    assert "DecryptTheServiceToken" not in statements
    assert [s for s in statements.values() if "secretsmanager" in str(s["Action"])] == [
        statements["ReadTheServiceToken"]
    ]


def example_parameters(given: Given) -> dict[str, str]:
    return {
        "Stage": given.stage,
        "SubnetIds": ",".join(given.subnet_ids),
        "TaskSubnetCidrs": ",".join(TASK_SUBNETS),
        "TasksSecurityGroupId": given.tasks_group_id,
        "LambdaMeshUrl": API_URL,
        "TokenSecretArn": given.token_secret_arn,
        "SidecarImage": SIDECAR_IMAGE,
    }


def rendered_task_definition(aws: Client, stack: Stack, parameters: dict[str, str]) -> Any:
    """A deployed example's task definition as CloudFormation passes it to
    RegisterTaskDefinition."""
    role = aws("iam").get_role(RoleName=stack.resources["ExecutionRole"])["Role"]
    rendering = Rendering(
        load_template(INFRA / "example-service.yaml"),
        parameters=parameters,
        references=stack.resources,
        attributes={("ExecutionRole", "Arn"): role["Arn"]},
        stack_name=stack.name,
    )
    return api_input("ecs", "RegisterTaskDefinition", rendering.properties("TaskDefinition"))


@pytest.fixture(scope="module")
def task_definition(aws: Client, given: Given, stacks: dict[str, Stack]) -> dict[str, Any]:
    """The example's task definition, with the template's defaults."""
    rendered: dict[str, Any] = rendered_task_definition(
        aws, stacks["hello"], example_parameters(given)
    )
    return rendered


def containers(definition: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in definition["containerDefinitions"]}


def test_example_task_definition_registers_as_fargate_awsvpc_with_both_containers(
    aws: Client, given: Given, task_definition: dict[str, Any]
) -> None:
    registered = aws("ecs").register_task_definition(**task_definition)["taskDefinition"]

    assert registered["family"] == f"lambdamesh-{given.stage}-hello"
    assert registered["networkMode"] == "awsvpc"
    assert registered["requiresCompatibilities"] == ["FARGATE"]
    assert (registered["cpu"], registered["memory"]) == ("256", "512")
    assert registered["executionRoleArn"].startswith("arn:aws:iam::")
    assert "taskRoleArn" not in registered
    assert set(containers(registered)) == {"app", "lambdamesh-sidecar"}


def test_sidecar_starts_after_the_app_and_stops_first_as_a_non_root_reader(
    task_definition: dict[str, Any],
) -> None:
    sidecar = containers(task_definition)["lambdamesh-sidecar"]

    assert sidecar["dependsOn"] == [{"containerName": "app", "condition": "START"}]
    assert sidecar["essential"] is True
    # An in-flight call, the DRAINING report, the 5 s drain and deregistering.
    assert sidecar["stopTimeout"] >= 20
    assert sidecar["user"] == "65532:65532"
    assert sidecar["readonlyRootFilesystem"] is True
    assert containers(task_definition)["app"]["readonlyRootFilesystem"] is True


def test_sidecar_accepts_the_environment_the_task_definition_gives_it(
    given: Given, task_definition: dict[str, Any]
) -> None:
    sidecar = containers(task_definition)["lambdamesh-sidecar"]
    secrets = {s["name"]: s["valueFrom"] for s in sidecar["secrets"]}
    # ECS injects the secret's value and the metadata endpoint.
    environ = {e["name"]: e["value"] for e in sidecar["environment"]} | {
        "LAMBDAMESH_TOKEN": TOKEN,
        ECS_METADATA_VARIABLE: "http://169.254.170.2/v4/abc",
    }
    task = TaskMetadata(
        task_arn="arn:aws:ecs:us-east-1:123456789012:task/c/0123abcd",
        network_mode="awsvpc",
        ipv4="10.20.0.17",
        availability_zone="us-east-1a",
    )

    settings = sidecar_config.load(environ, lookup_task=lambda uri: task)

    assert secrets == {"LAMBDAMESH_TOKEN": given.token_secret_arn}
    assert (settings.registry_url, settings.service, settings.version) == (API_URL, "hello", "v1")
    assert (settings.host, settings.port, settings.instance_id) == (
        "10.20.0.17",
        APP_PORT,
        "0123abcd",
    )
    assert settings.health_path == "/"
    assert settings.outbound is not None
    assert settings.outbound.allow_private is True
    assert settings.outbound.allowed_networks == TASK_SUBNETS
    # Callers reach the task on the inbound port, where it registers, marked tls.
    assert settings.inbound is not None
    assert settings.inbound.port == settings.registered_port == INBOUND_PORT


def port_mappings(definition: Mapping[str, Any]) -> dict[str, list[tuple[int, str]]]:
    return {
        name: [(m["containerPort"], m["protocol"]) for m in container.get("portMappings", [])]
        for name, container in containers(definition).items()
    }


def test_example_task_maps_only_the_sidecars_inbound_port(
    aws: Client, stacks: dict[str, Stack], task_definition: dict[str, Any]
) -> None:
    registered = aws("ecs").register_task_definition(**task_definition)["taskDefinition"]
    sidecar = containers(task_definition)["lambdamesh-sidecar"]
    environment = {e["name"]: e["value"] for e in sidecar["environment"]}
    # The stack's own, as moto's CloudFormation made it.
    deployed = aws("ecs").describe_task_definition(
        taskDefinition=stacks["hello"].outputs["TaskDefinitionArn"]
    )["taskDefinition"]

    # The app listens on loopback behind the sidecar: nothing outside the task calls it.
    assert port_mappings(task_definition) == {
        "app": [],
        "lambdamesh-sidecar": [(INBOUND_PORT, "tcp")],
    }
    assert port_mappings(registered) == port_mappings(task_definition)
    assert port_mappings(deployed) == port_mappings(task_definition)
    assert containers(deployed)["lambdamesh-sidecar"]["environment"] == sidecar["environment"]
    assert environment["LAMBDAMESH_INBOUND_PORT"] == str(INBOUND_PORT)
    assert environment["LAMBDAMESH_PORT"] == str(APP_PORT)


def test_without_an_inbound_port_the_example_maps_the_apps_port_and_registers_it(
    aws: Client, given: Given
) -> None:
    parameters = example_parameters(given) | {"ServiceName": "plain", "InboundPort": ""}
    stack = deploy(aws, f"lambdamesh-{given.stage}-plain", "example-service", parameters)
    definition = rendered_task_definition(aws, stack, parameters)
    sidecar = containers(definition)["lambdamesh-sidecar"]
    environ = {e["name"]: e["value"] for e in sidecar["environment"]} | {
        "LAMBDAMESH_TOKEN": TOKEN,
        "LAMBDAMESH_HOST": "10.20.0.17",
    }

    settings = sidecar_config.load(environ)

    assert stack.status == "CREATE_COMPLETE"
    aws("ecs").register_task_definition(**definition)
    assert port_mappings(definition) == {"app": [(APP_PORT, "tcp")], "lambdamesh-sidecar": []}
    assert "LAMBDAMESH_INBOUND_PORT" not in environ
    assert settings.inbound is None
    assert settings.registered_port == APP_PORT


def test_the_tasks_admit_the_gateway_on_the_inbound_port_and_not_on_the_apps(
    aws: Client, given: Given, stacks: dict[str, Stack], task_definition: dict[str, Any]
) -> None:
    [(_, low, high, _)] = ingress(aws, given.tasks_group_id)
    [(mapped, _)] = [m for ports in port_mappings(task_definition).values() for m in ports]

    assert low <= mapped <= high
    assert not low <= APP_PORT <= high


def test_lambdamesh_configure_reads_the_deployed_stacks_into_a_stage_that_passes_the_check(
    stacks: dict[str, Stack],
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shutil.copytree(ROOT / ".chalice", tmp_path / ".chalice")
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDFORMATION", moto_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    project = ["--project-dir", str(tmp_path)]

    named = ["--network-stack", stacks["network"].name, "--registry-stack", stacks["registry"].name]
    configured = cli.main(["configure", "--stage", "prod", *project, *named])
    checked = cli.main(["check", "--stage", "prod", *project])

    prod = json.loads((tmp_path / ".chalice" / "config.json").read_text())["stages"]["prod"]
    network = stacks["network"].outputs
    assert (configured, checked) == (0, 0)
    assert prod["subnet_ids"] == network["SubnetIds"].split(",")
    assert prod["security_group_ids"] == [network["SecurityGroupIds"]]
    assert prod["environment_variables"]["LAMBDAMESH_ALLOWED_NETWORKS"] == ",".join(TASK_SUBNETS)
    assert (
        prod["environment_variables"]["LAMBDAMESH_TABLE"] == stacks["registry"].outputs["TableName"]
    )


def test_lambdamesh_configure_names_a_stack_that_does_not_exist(
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shutil.copytree(ROOT / ".chalice", tmp_path / ".chalice")
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDFORMATION", moto_endpoint)

    project = ["--project-dir", str(tmp_path)]
    code = cli.main(["configure", "--stage", "prod", "--network-stack", "no-such-stack", *project])

    assert code == 2
    assert "cannot read stack 'no-such-stack'" in capsys.readouterr().err


# custom-domain
#
# moto's CloudFormation has no AWS::ApiGateway::DomainName nor BasePathMapping: it skips the
# domain and then fails the whole create_stack on the outputs' Fn::GetAtt of it. So the
# stack is replayed as the API calls CloudFormation makes (CreateDomainName,
# CreateBasePathMapping, ChangeResourceRecordSets), from the template's rendering, on moto,
# against an API deployed the way `chalice deploy` leaves one: a REST API with a stage.


@dataclass
class DomainGiven:
    """What the custom-domain stack is given: a deployed API, a certificate, a hosted zone."""

    rest_api_id: str
    certificate_arn: str
    zone_name: str
    hosted_zone_id: str


@dataclass
class CustomDomain:
    domain: dict[str, Any]
    outputs: dict[str, str]


@pytest.fixture(scope="module")
def domain_given(aws: Client, given: Given) -> DomainGiven:
    apigateway = aws("apigateway")
    rest_api_id = apigateway.create_rest_api(
        name=f"lambdamesh-{given.stage}", endpointConfiguration={"types": ["REGIONAL"]}
    )["id"]
    (root,) = apigateway.get_resources(restApiId=rest_api_id)["items"]
    apigateway.put_method(
        restApiId=rest_api_id, resourceId=root["id"], httpMethod="GET", authorizationType="NONE"
    )
    apigateway.put_integration(
        restApiId=rest_api_id, resourceId=root["id"], httpMethod="GET", type="MOCK"
    )
    apigateway.create_deployment(restApiId=rest_api_id, stageName="prod")
    zone_name = f"{given.stage}.example.com"
    certificate_arn = aws("acm").request_certificate(
        DomainName=f"*.{zone_name}", ValidationMethod="DNS"
    )["CertificateArn"]
    zone = aws("route53").create_hosted_zone(Name=zone_name, CallerReference=given.stage)
    return DomainGiven(rest_api_id, certificate_arn, zone_name, zone["HostedZone"]["Id"][12:])


def custom_domain_parameters(domain_given: DomainGiven, name: str, **more: str) -> dict[str, str]:
    return {
        "DomainName": f"{name}.{domain_given.zone_name}",
        "CertificateArn": domain_given.certificate_arn,
        "RestApiId": domain_given.rest_api_id,
        "Stage": "prod",
        **more,
    }


def create_custom_domain(aws: Client, parameters: Mapping[str, str]) -> CustomDomain:
    """CloudFormation's create of infra/custom-domain.yaml, call by call."""
    template = load_template(INFRA / "custom-domain.yaml")
    for name, value in parameters.items():
        pattern = template["Parameters"][name].get("AllowedPattern", ".*")
        assert re.fullmatch(pattern, value), (name, value)
    apigateway = aws("apigateway")
    rendering = Rendering(template, parameters=parameters)

    domain = apigateway.create_domain_name(
        **api_input("apigateway", "CreateDomainName", rendering.properties("ApiDomainName"))
    )
    # The domain's physical id is its name; its attributes are the API's answer.
    rendering.references = {"ApiDomainName": domain["domainName"]}
    rendering.attributes = {
        ("ApiDomainName", "RegionalDomainName"): domain["regionalDomainName"],
        ("ApiDomainName", "RegionalHostedZoneId"): domain["regionalHostedZoneId"],
    }
    apigateway.create_base_path_mapping(
        **api_input(
            "apigateway", "CreateBasePathMapping", rendering.properties("ApiBasePathMapping")
        )
    )
    for record in ("AliasRecord", "Ipv6AliasRecord"):
        if rendering.condition(template["Resources"][record]["Condition"]):
            record_set = rendering.properties(record)
            zone_id = record_set.pop("HostedZoneId")
            change = {"Action": "CREATE", "ResourceRecordSet": record_set}
            aws("route53").change_resource_record_sets(
                **api_input(
                    "route53",
                    "ChangeResourceRecordSets",
                    {"HostedZoneId": zone_id, "ChangeBatch": {"Changes": [change]}},
                )
            )
    outputs = {name: rendering.resolve(o["Value"]) for name, o in template["Outputs"].items()}
    return CustomDomain(domain=domain, outputs=outputs)


def alias_records(aws: Client, domain_given: DomainGiven, name: str) -> dict[str, Any]:
    record_sets = aws("route53").list_resource_record_sets(HostedZoneId=domain_given.hosted_zone_id)
    return {
        r["Type"]: r.get("AliasTarget")
        for r in record_sets["ResourceRecordSets"]
        if r["Name"] == f"{name}.{domain_given.zone_name}."
    }


@pytest.fixture(scope="module")
def mesh_domain(aws: Client, domain_given: DomainGiven) -> CustomDomain:
    parameters = custom_domain_parameters(
        domain_given, "mesh", HostedZoneId=domain_given.hosted_zone_id
    )
    return create_custom_domain(aws, parameters)


def test_motos_cloudformation_has_no_api_gateway_custom_domain_so_its_calls_are_replayed() -> None:
    from moto.cloudformation.parsing import resource_class_from_type

    assert resource_class_from_type("AWS::ApiGateway::DomainName") is None
    assert resource_class_from_type("AWS::ApiGateway::BasePathMapping") is None


def test_custom_domain_is_regional_dual_stack_on_tls_1_2_with_the_certificate(
    aws: Client, domain_given: DomainGiven, mesh_domain: CustomDomain
) -> None:
    name = f"mesh.{domain_given.zone_name}"

    domain = aws("apigateway").get_domain_name(domainName=name)

    assert domain["endpointConfiguration"] == {"types": ["REGIONAL"], "ipAddressType": "dualstack"}
    assert domain["securityPolicy"] == "TLS_1_2"
    assert domain["regionalCertificateArn"] == domain_given.certificate_arn
    assert "certificateArn" not in domain


def test_custom_domain_serves_the_prod_stage_at_its_root(
    aws: Client, domain_given: DomainGiven, mesh_domain: CustomDomain
) -> None:
    name = f"mesh.{domain_given.zone_name}"

    mappings = aws("apigateway").get_base_path_mappings(domainName=name)["items"]

    # "(none)" is API Gateway's name for the empty base path: /api/v1/... on the domain is
    # /prod/api/v1/... on the stage.
    assert mappings == [
        {"basePath": "(none)", "restApiId": domain_given.rest_api_id, "stage": "prod"}
    ]


def test_custom_domain_mapping_needs_the_stage_deployed_first(
    aws: Client, domain_given: DomainGiven
) -> None:
    parameters = custom_domain_parameters(domain_given, "early", Stage="dev")

    with pytest.raises(ClientError) as raised:
        create_custom_domain(aws, parameters)

    assert raised.value.operation_name == "CreateBasePathMapping"


def test_alias_records_point_the_name_at_the_regional_endpoint_over_ipv4_and_ipv6(
    aws: Client, domain_given: DomainGiven, mesh_domain: CustomDomain
) -> None:
    target = {
        "HostedZoneId": mesh_domain.domain["regionalHostedZoneId"],
        "DNSName": mesh_domain.domain["regionalDomainName"],
        "EvaluateTargetHealth": False,
    }

    assert alias_records(aws, domain_given, "mesh") == {"A": target, "AAAA": target}


def test_an_ipv4_custom_domain_gets_an_a_record_only(
    aws: Client, domain_given: DomainGiven
) -> None:
    parameters = custom_domain_parameters(
        domain_given, "mesh4", HostedZoneId=domain_given.hosted_zone_id, IpAddressType="ipv4"
    )

    created = create_custom_domain(aws, parameters)

    assert created.domain["endpointConfiguration"]["ipAddressType"] == "ipv4"
    assert set(alias_records(aws, domain_given, "mesh4")) == {"A"}


def test_a_custom_domain_without_a_hosted_zone_gets_no_record(
    aws: Client, domain_given: DomainGiven
) -> None:
    created = create_custom_domain(aws, custom_domain_parameters(domain_given, "external"))

    assert created.outputs["Url"] == f"https://external.{domain_given.zone_name}"
    assert alias_records(aws, domain_given, "external") == {}


def test_custom_domain_outputs_are_the_regional_endpoint_and_the_stage_less_url(
    domain_given: DomainGiven, mesh_domain: CustomDomain
) -> None:
    assert mesh_domain.outputs == {
        "RegionalDomainName": mesh_domain.domain["regionalDomainName"],
        "RegionalHostedZoneId": mesh_domain.domain["regionalHostedZoneId"],
        "Url": f"https://mesh.{domain_given.zone_name}",
    }
    assert mesh_domain.outputs["RegionalDomainName"].endswith(
        f".execute-api.{REGION}.amazonaws.com"
    )


def test_checkov_has_no_cloudformation_check_for_the_custom_domains_resources(
    checkov: Path,
) -> None:
    listed = subprocess.run(
        [str(checkov), "--list", "--framework", "cloudformation"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout

    assert "AWS::ApiGateway::Stage" in listed
    assert [
        line
        for line in listed.splitlines()
        if "AWS::ApiGateway::DomainName" in line
        or "AWS::ApiGateway::BasePathMapping" in line
        or "AWS::Route53::RecordSet" in line
    ] == []


def test_checkov_finds_nothing_in_the_custom_domain_template(checkov: Path) -> None:
    options = ["--framework", "cloudformation", "--output", "json", "--compact", "--skip-download"]
    completed = subprocess.run(
        [str(checkov), *options, "--file", str(INFRA / "custom-domain.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(completed.stdout)
    # With no check for any of its resources, checkov prints its summary alone.
    summary = report.get("summary", report)

    assert (summary["failed"], summary["parsing_errors"]) == (0, 0)
