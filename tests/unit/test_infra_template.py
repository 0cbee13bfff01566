"""infra/ templates: valid CloudFormation, and the properties the code and the docs rely on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode

from lambdamesh_sidecar import variables as sidecar_variables
from lambdamesh_sidecar.inbound_settings import read_inbound_settings

INFRA = Path(__file__).resolve().parents[2] / "infra"
# Templates whose own tests lint them.
LINTED_ELSEWHERE = {"chalice-merge.yaml"}
LINTED_HERE = sorted(p for p in INFRA.glob("*.yaml") if p.name not in LINTED_ELSEWHERE)


def load(name: str) -> dict[str, Any]:
    parsed, matches = decode(str(INFRA / name))
    assert not matches, matches
    assert parsed is not None
    return dict(parsed)


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


@pytest.fixture(scope="module")
def registry() -> dict[str, Any]:
    return load("registry-table.yaml")


@pytest.fixture(scope="module")
def table(registry: dict[str, Any]) -> dict[str, Any]:
    (resource,) = resources_of_type(registry, "AWS::DynamoDB::Table").values()
    return dict(resource)


@pytest.fixture(scope="module")
def signing_key() -> dict[str, Any]:
    return load("signing-key.yaml")


@pytest.fixture(scope="module")
def network() -> dict[str, Any]:
    return load("network.yaml")


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    return load("example-service.yaml")


def container(service: dict[str, Any], name: str) -> dict[str, Any]:
    task = service["Resources"]["TaskDefinition"]["Properties"]
    (found,) = [c for c in task["ContainerDefinitions"] if c["Name"] == name]
    return dict(found)


@pytest.fixture(scope="module")
def sidecar(service: dict[str, Any]) -> dict[str, Any]:
    return container(service, "lambdamesh-sidecar")


NO_VALUE = {"Ref": "AWS::NoValue"}


def environment(container: dict[str, Any]) -> dict[str, Any]:
    """A container's variables, name to value; one that an Fn::If sets or leaves out
    (AWS::NoValue) is listed with the condition that sets it, as ``(condition, value)``."""
    found: dict[str, Any] = {}
    for item in container["Environment"]:
        if "Fn::If" in item:
            condition, variable, otherwise = item["Fn::If"]
            assert otherwise == NO_VALUE
            found[variable["Name"]] = (condition, variable["Value"])
        else:
            found[item["Name"]] = item["Value"]
    return found


def test_the_infra_templates_are_all_linted_here() -> None:
    assert {p.name for p in LINTED_HERE} >= {
        "registry-table.yaml",
        "signing-key.yaml",
        "network.yaml",
        "example-service.yaml",
        "custom-domain.yaml",
        "task-events.yaml",
    }


@pytest.mark.parametrize("template", LINTED_HERE, ids=lambda p: p.name)
def test_template_passes_cfn_lint_without_any_finding(template: Path) -> None:
    config = ManualArgs(regions=["us-east-1", "eu-west-1"], include_checks=["I"])

    matches = lint_file(template, config=config)

    assert [f"{m.rule.id}: {m.message}" for m in matches] == []


# registry-table.yaml


def test_table_is_named_after_the_stage(registry: dict[str, Any], table: dict[str, Any]) -> None:
    assert "Default" not in registry["Parameters"]["Stage"]
    assert table["Properties"]["TableName"] == {"Fn::Sub": "lambdamesh-registry-${Stage}"}


def test_ttl_is_enabled_on_expires_at(table: dict[str, Any]) -> None:
    assert table["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": "expires_at",
        "Enabled": True,
    }


def test_key_schema_is_string_pk_and_sk(table: dict[str, Any]) -> None:
    properties = table["Properties"]

    assert properties["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert {a["AttributeName"]: a["AttributeType"] for a in properties["AttributeDefinitions"]} == {
        "pk": "S",
        "sk": "S",
        "task_arn": "S",
    }


def test_the_task_index_is_the_one_the_storage_queries_keyed_by_task_arn_keys_only(
    table: dict[str, Any],
) -> None:
    from chalicelib.storage import TASK_INDEX, InstanceItem

    (index,) = table["Properties"]["GlobalSecondaryIndexes"]

    assert index["IndexName"] == TASK_INDEX == "by-task"
    assert index["KeySchema"] == [
        {"AttributeName": InstanceItem.task_arn.attr_name, "KeyType": "HASH"}
    ]
    # Keys only: a heartbeat changes no projected attribute, so it writes nothing to the index.
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_a_provisioned_tables_task_index_has_the_tables_capacity(table: dict[str, Any]) -> None:
    (index,) = table["Properties"]["GlobalSecondaryIndexes"]

    assert index["ProvisionedThroughput"] == table["Properties"]["ProvisionedThroughput"]


def test_table_is_recoverable_and_encrypted(table: dict[str, Any]) -> None:
    properties = table["Properties"]

    assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert properties["SSESpecification"]["SSEEnabled"] is True


def test_table_is_retained_on_delete_and_replacement(table: dict[str, Any]) -> None:
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"


def test_billing_is_on_demand_unless_provisioned_is_chosen(
    registry: dict[str, Any], table: dict[str, Any]
) -> None:
    parameter = registry["Parameters"]["BillingMode"]

    assert parameter["Default"] == "PAY_PER_REQUEST"
    assert parameter["AllowedValues"] == ["PAY_PER_REQUEST", "PROVISIONED"]
    assert registry["Conditions"]["IsProvisioned"] == {
        "Fn::Equals": [{"Ref": "BillingMode"}, "PROVISIONED"]
    }
    assert table["Properties"]["BillingMode"] == {"Ref": "BillingMode"}
    assert table["Properties"]["ProvisionedThroughput"] == {
        "Fn::If": [
            "IsProvisioned",
            {
                "ReadCapacityUnits": {"Ref": "ReadCapacityUnits"},
                "WriteCapacityUnits": {"Ref": "WriteCapacityUnits"},
            },
            {"Ref": "AWS::NoValue"},
        ]
    }


def test_provisioned_capacity_scales_reads_and_writes_between_the_bounds_given(
    registry: dict[str, Any],
) -> None:
    targets = resources_of_type(registry, "AWS::ApplicationAutoScaling::ScalableTarget")

    bounds = {
        t["Properties"]["ScalableDimension"]: (
            t["Properties"]["MinCapacity"],
            t["Properties"]["MaxCapacity"],
        )
        for t in targets.values()
    }

    reads = ({"Ref": "ReadCapacityUnits"}, {"Ref": "MaxReadCapacityUnits"})
    writes = ({"Ref": "WriteCapacityUnits"}, {"Ref": "MaxWriteCapacityUnits"})
    assert bounds == {
        "dynamodb:table:ReadCapacityUnits": reads,
        "dynamodb:table:WriteCapacityUnits": writes,
        "dynamodb:index:ReadCapacityUnits": reads,
        "dynamodb:index:WriteCapacityUnits": writes,
    }
    assert {
        t["Properties"]["ScalableDimension"]: t["Properties"]["ResourceId"]
        for t in targets.values()
    } == {
        "dynamodb:table:ReadCapacityUnits": {"Fn::Sub": "table/${RegistryTable}"},
        "dynamodb:table:WriteCapacityUnits": {"Fn::Sub": "table/${RegistryTable}"},
        "dynamodb:index:ReadCapacityUnits": {"Fn::Sub": "table/${RegistryTable}/index/by-task"},
        "dynamodb:index:WriteCapacityUnits": {"Fn::Sub": "table/${RegistryTable}/index/by-task"},
    }
    assert {t["Condition"] for t in targets.values()} == {"IsProvisioned"}


def test_each_scalable_target_tracks_its_own_utilization(registry: dict[str, Any]) -> None:
    policies = resources_of_type(registry, "AWS::ApplicationAutoScaling::ScalingPolicy")

    tracked = {
        p["Properties"]["ScalingTargetId"]["Ref"]: (
            p["Properties"]["PolicyType"],
            p["Properties"]["TargetTrackingScalingPolicyConfiguration"][
                "PredefinedMetricSpecification"
            ]["PredefinedMetricType"],
        )
        for p in policies.values()
    }

    assert tracked == {
        "ReadScalableTarget": ("TargetTrackingScaling", "DynamoDBReadCapacityUtilization"),
        "WriteScalableTarget": ("TargetTrackingScaling", "DynamoDBWriteCapacityUtilization"),
        "TaskIndexReadScalableTarget": (
            "TargetTrackingScaling",
            "DynamoDBReadCapacityUtilization",
        ),
        "TaskIndexWriteScalableTarget": (
            "TargetTrackingScaling",
            "DynamoDBWriteCapacityUtilization",
        ),
    }
    assert {p["Condition"] for p in policies.values()} == {"IsProvisioned"}


def test_policy_grants_item_access_to_the_table_but_never_scan(registry: dict[str, Any]) -> None:
    document = registry["Resources"]["RegistryAccessPolicy"]["Properties"]["PolicyDocument"]
    granted = [a for s in document["Statement"] for a in actions(s)]

    assert sorted(granted) == sorted(
        [
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:Query",
            "dynamodb:DescribeTable",
            "dynamodb:Query",
        ]
    )
    assert [s["Resource"] for s in document["Statement"]] == [
        {"Fn::GetAtt": ["RegistryTable", "Arn"]},
        {"Fn::Sub": "${RegistryTable.Arn}/index/by-task"},
    ]
    # The index is only read, and only by Query.
    assert actions(document["Statement"][1]) == ["dynamodb:Query"]


def test_registry_outputs_export_table_name_and_arn(registry: dict[str, Any]) -> None:
    outputs = registry["Outputs"]

    assert set(outputs) >= {"TableName", "TableArn"}
    for name, output in outputs.items():
        assert output["Export"]["Name"] == {"Fn::Sub": f"${{AWS::StackName}}-{name}"}


# signing-key.yaml


def test_signing_key_is_64_characters_without_punctuation_so_never_a_comma(
    signing_key: dict[str, Any],
) -> None:
    (secret,) = resources_of_type(signing_key, "AWS::SecretsManager::Secret").values()
    generate = secret["Properties"]["GenerateSecretString"]

    assert generate["PasswordLength"] == 64
    assert generate["ExcludePunctuation"] is True
    assert generate.get("IncludeSpace", False) is False
    assert "SecretStringTemplate" not in generate


def test_signing_key_is_named_per_stage_and_retained(signing_key: dict[str, Any]) -> None:
    (secret,) = resources_of_type(signing_key, "AWS::SecretsManager::Secret").values()

    assert secret["Properties"]["Name"] == {"Fn::Sub": "lambdamesh/${Stage}/signing-key"}
    assert secret["DeletionPolicy"] == "Retain"
    assert secret["UpdateReplacePolicy"] == "Retain"


def test_signing_key_outputs_are_its_arn_and_name(signing_key: dict[str, Any]) -> None:
    assert set(signing_key["Outputs"]) == {"SigningKeySecretArn", "SigningKeySecretName"}


def test_signing_key_template_tells_how_to_rotate(signing_key: dict[str, Any]) -> None:
    assert '"NEW,OLD"' in signing_key["Description"]


# network.yaml


def test_network_outputs_are_exactly_what_lambdamesh_configure_reads(
    network: dict[str, Any],
) -> None:
    outputs = network["Outputs"]

    assert set(outputs) == {"SubnetIds", "SecurityGroupIds", "AllowedNetworks", "VpcId"}
    assert outputs["SubnetIds"]["Value"] == {"Fn::Join": [",", {"Ref": "SubnetIds"}]}
    assert outputs["AllowedNetworks"]["Value"] == {"Fn::Join": [",", {"Ref": "TaskSubnetCidrs"}]}
    assert outputs["SecurityGroupIds"]["Value"] == {
        "Fn::GetAtt": ["LambdaSecurityGroup", "GroupId"]
    }


def test_task_subnet_cidrs_are_a_required_list(network: dict[str, Any]) -> None:
    parameter = network["Parameters"]["TaskSubnetCidrs"]

    assert parameter["Type"] == "CommaDelimitedList"
    assert "Default" not in parameter


def lambda_egress(network: dict[str, Any]) -> list[dict[str, Any]]:
    inline = network["Resources"]["LambdaSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    separate = [
        r["Properties"]
        for r in resources_of_type(network, "AWS::EC2::SecurityGroupEgress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": ["LambdaSecurityGroup", "GroupId"]}
    ]
    return [*inline, *separate]


def test_lambda_egress_goes_only_to_the_tasks_ports_and_to_https(network: dict[str, Any]) -> None:
    rules = lambda_egress(network)
    ports = [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in rules]

    assert ports == [
        ("tcp", {"Ref": "ServicePortFrom"}, {"Ref": "ServicePortTo"}),
        ("tcp", 443, 443),
        ("tcp", 443, 443),
    ]
    assert rules[0]["DestinationSecurityGroupId"] == {"Ref": "TasksSecurityGroupId"}
    assert all(rule["Description"] for rule in rules)


def test_lambda_https_egress_narrows_to_dynamodb_and_the_endpoint_when_given(
    network: dict[str, Any],
) -> None:
    dynamodb, secrets_manager = lambda_egress(network)[1:]

    assert dynamodb["DestinationPrefixListId"]["Fn::If"][:2] == [
        "HasDynamoDbPrefixList",
        {"Ref": "DynamoDbPrefixListId"},
    ]
    assert dynamodb["CidrIp"]["Fn::If"] == [
        "HasDynamoDbPrefixList",
        {"Ref": "AWS::NoValue"},
        "0.0.0.0/0",
    ]
    # The stack's own endpoint's group, or the group of the endpoint the VPC already has.
    assert secrets_manager["DestinationSecurityGroupId"] == {
        "Fn::If": [
            "UsesOwnSecretsManagerEndpoint",
            {"Fn::GetAtt": ["SecretsManagerEndpointSecurityGroup", "GroupId"]},
            {"Ref": "SecretsManagerEndpointSecurityGroupId"},
        ]
    }


def test_tasks_admit_the_lambda_on_the_service_ports(network: dict[str, Any]) -> None:
    rule = resources_of_type(network, "AWS::EC2::SecurityGroupIngress")["TasksIngressFromLambda"]

    assert rule["Properties"] == {
        "Description": rule["Properties"]["Description"],
        "GroupId": {"Ref": "TasksSecurityGroupId"},
        "IpProtocol": "tcp",
        "FromPort": {"Ref": "ServicePortFrom"},
        "ToPort": {"Ref": "ServicePortTo"},
        "SourceSecurityGroupId": {"Fn::GetAtt": ["LambdaSecurityGroup", "GroupId"]},
    }


def test_endpoints_are_a_dynamodb_gateway_and_a_private_secrets_manager_interface(
    network: dict[str, Any],
) -> None:
    endpoints = resources_of_type(network, "AWS::EC2::VPCEndpoint")

    kinds = {
        e["Properties"]["ServiceName"]["Fn::Sub"]: e["Properties"]["VpcEndpointType"]
        for e in endpoints.values()
    }
    interface = endpoints["SecretsManagerEndpoint"]["Properties"]

    assert kinds == {
        "com.amazonaws.${AWS::Region}.dynamodb": "Gateway",
        "com.amazonaws.${AWS::Region}.secretsmanager": "Interface",
    }
    assert endpoints["DynamoDbEndpoint"]["Properties"]["RouteTableIds"] == {"Ref": "RouteTableIds"}
    # Either is left out where the VPC has one already: AWS refuses a second.
    assert endpoints["DynamoDbEndpoint"]["Condition"] == "MakesDynamoDbEndpoint"
    assert endpoints["SecretsManagerEndpoint"]["Condition"] == "UsesOwnSecretsManagerEndpoint"
    assert interface["PrivateDnsEnabled"] is True
    assert interface["SubnetIds"] == {"Ref": "SubnetIds"}


def test_secrets_manager_endpoint_admits_only_https_from_the_lambda_and_the_tasks(
    network: dict[str, Any],
) -> None:
    group = network["Resources"]["SecretsManagerEndpointSecurityGroup"]["Properties"]

    assert [
        (r["IpProtocol"], r["FromPort"], r["ToPort"], r["SourceSecurityGroupId"])
        for r in group["SecurityGroupIngress"]
    ] == [
        ("tcp", 443, 443, {"Fn::GetAtt": ["LambdaSecurityGroup", "GroupId"]}),
        # ECS fetches the tasks' token secret through the task's interface, and private DNS
        # sends every Secrets Manager call of the VPC to this endpoint.
        ("tcp", 443, 443, {"Ref": "TasksSecurityGroupId"}),
    ]


# example-service.yaml


def test_sidecar_variables_are_ones_the_sidecar_reads(sidecar: dict[str, Any]) -> None:
    known = {name for name, _ in sidecar_variables.VARIABLES}
    given = [*environment(sidecar), *(s["Name"] for s in sidecar["Secrets"])]

    assert set(given) <= known
    assert set(given) >= {
        "LAMBDAMESH_URL",
        "LAMBDAMESH_TOKEN",
        "LAMBDAMESH_SERVICE",
        "LAMBDAMESH_VERSION",
        "LAMBDAMESH_PORT",
    }


def test_sidecar_token_comes_from_the_token_secret(sidecar: dict[str, Any]) -> None:
    assert sidecar["Secrets"] == [
        {"Name": "LAMBDAMESH_TOKEN", "ValueFrom": {"Ref": "TokenSecretArn"}}
    ]
    assert "LAMBDAMESH_TOKEN" not in environment(sidecar)


def test_sidecar_registers_the_app_port_and_service(sidecar: dict[str, Any]) -> None:
    variables = environment(sidecar)

    assert variables["LAMBDAMESH_PORT"] == {"Ref": "AppPort"}
    assert variables["LAMBDAMESH_SERVICE"] == {"Ref": "ServiceName"}
    assert variables["LAMBDAMESH_VERSION"] == {"Ref": "ServiceVersion"}
    assert variables["LAMBDAMESH_URL"] == {"Ref": "LambdaMeshUrl"}


def test_the_outbound_port_reaches_private_addresses_in_the_task_subnets_only(
    service: dict[str, Any], sidecar: dict[str, Any], network: dict[str, Any]
) -> None:
    variables = environment(sidecar)
    parameter = service["Parameters"]["TaskSubnetCidrs"]

    assert variables["LAMBDAMESH_OUTBOUND_ALLOW_PRIVATE"] == "true"
    assert variables["LAMBDAMESH_OUTBOUND_ALLOWED_NETWORKS"] == {
        "Fn::Join": [",", {"Ref": "TaskSubnetCidrs"}]
    }
    # Required, and spelled as the network stack's, whose AllowedNetworks output it takes.
    assert "Default" not in parameter
    task_subnets = network["Parameters"]["TaskSubnetCidrs"]
    assert (parameter["Type"], parameter["AllowedPattern"]) == (
        task_subnets["Type"],
        task_subnets["AllowedPattern"],
    )


def test_the_sidecar_serves_the_inbound_port_unless_it_is_empty(
    service: dict[str, Any], sidecar: dict[str, Any]
) -> None:
    parameter = service["Parameters"]["InboundPort"]

    assert service["Conditions"]["ServesInbound"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "InboundPort"}, ""]}]
    }
    assert environment(sidecar)["LAMBDAMESH_INBOUND_PORT"] == (
        "ServesInbound",
        {"Ref": "InboundPort"},
    )
    assert parameter["Default"] == "8443"


def test_only_the_inbound_port_is_mapped_while_it_is_served(
    service: dict[str, Any], sidecar: dict[str, Any]
) -> None:
    app = container(service, "app")

    # Behind the inbound port the app listens on loopback: nothing outside the task calls it.
    assert app["PortMappings"] == {
        "Fn::If": ["ServesInbound", [], [{"ContainerPort": {"Ref": "AppPort"}, "Protocol": "tcp"}]]
    }
    assert sidecar["PortMappings"] == {
        "Fn::If": [
            "ServesInbound",
            [{"ContainerPort": {"Ref": "InboundPort"}, "Protocol": "tcp"}],
            [],
        ]
    }


def test_the_example_inbound_port_is_within_the_network_stacks_default_service_ports(
    service: dict[str, Any], network: dict[str, Any]
) -> None:
    ports = network["Parameters"]

    inbound = int(service["Parameters"]["InboundPort"]["Default"])

    assert ports["ServicePortFrom"]["Default"] <= inbound <= ports["ServicePortTo"]["Default"]


@pytest.mark.parametrize(
    ("value", "port"),
    [("", None), ("1", 1), ("443", 443), ("8443", 8443), ("65535", 65535)],
)
def test_the_inbound_port_parameter_takes_what_the_sidecar_takes(
    service: dict[str, Any], value: str, port: int | None
) -> None:
    pattern = service["Parameters"]["InboundPort"]["AllowedPattern"]

    settings = read_inbound_settings({"LAMBDAMESH_INBOUND_PORT": value})

    assert re.fullmatch(pattern, value)
    assert (settings and settings.port) == port


@pytest.mark.parametrize("value", ["0", "65536", "99999", "-1", "8443a", "https"])
def test_the_inbound_port_parameter_refuses_what_is_no_port(
    service: dict[str, Any], value: str
) -> None:
    pattern = service["Parameters"]["InboundPort"]["AllowedPattern"]

    assert re.fullmatch(pattern, value) is None


def test_a_rule_refuses_an_inbound_port_that_is_the_apps_or_the_outbound_port(
    service: dict[str, Any],
) -> None:
    rule = service["Rules"]["InboundPortIsItsOwn"]

    assert rule["RuleCondition"] == service["Conditions"]["ServesInbound"]
    assert [a["Assert"] for a in rule["Assertions"]] == [
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "InboundPort"}, {"Ref": other}]}]}
        for other in ("AppPort", "OutboundPort")
    ]


def test_sidecar_stops_before_the_app_with_time_to_deregister(sidecar: dict[str, Any]) -> None:
    assert sidecar["DependsOn"] == [{"ContainerName": "app", "Condition": "START"}]
    # An in-flight call (5 s), the DRAINING report (5 s), the drain (LAMBDAMESH_DRAIN_SECONDS,
    # by default) and deregistering (5 s).
    assert sidecar["StopTimeout"] >= 5 + 5 + sidecar_variables.DEFAULT_DRAIN_SECONDS + 5


def test_sidecar_runs_as_non_root_on_a_read_only_filesystem(sidecar: dict[str, Any]) -> None:
    assert sidecar["User"] == "65532:65532"
    assert sidecar["ReadonlyRootFilesystem"] is True


def test_task_is_fargate_awsvpc_without_a_task_role(service: dict[str, Any]) -> None:
    task = service["Resources"]["TaskDefinition"]["Properties"]

    assert task["NetworkMode"] == "awsvpc"
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert "TaskRoleArn" not in task
    assert all(c["ReadonlyRootFilesystem"] is True for c in task["ContainerDefinitions"])


def test_execution_role_reads_only_the_token_secret(service: dict[str, Any]) -> None:
    policies = service["Resources"]["ExecutionRole"]["Properties"]["Policies"]
    statements = [s for p in policies for s in p["PolicyDocument"]["Statement"]]
    readers = [s for s in statements if "Sid" in s and "secretsmanager" in str(s["Action"])]

    assert readers == [
        {
            "Sid": "ReadTheServiceToken",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": {"Ref": "TokenSecretArn"},
        }
    ]


def test_logs_go_to_the_stacks_log_group_with_a_retention(service: dict[str, Any]) -> None:
    task = service["Resources"]["TaskDefinition"]["Properties"]
    groups = {
        c["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]
        for c in task["ContainerDefinitions"]
    }

    assert groups == {"LogGroup"}
    assert service["Resources"]["LogGroup"]["Properties"]["RetentionInDays"] == {
        "Ref": "LogRetentionDays"
    }


def test_a_cluster_is_created_only_when_none_is_named(service: dict[str, Any]) -> None:
    assert service["Parameters"]["ClusterName"]["Default"] == ""
    assert service["Conditions"]["CreateCluster"] == {"Fn::Equals": [{"Ref": "ClusterName"}, ""]}
    assert service["Resources"]["Cluster"]["Condition"] == "CreateCluster"


def test_example_defaults_serve_hello_v1_over_http_on_port_80(service: dict[str, Any]) -> None:
    parameters = service["Parameters"]

    assert (parameters["ServiceName"]["Default"], parameters["ServiceVersion"]["Default"]) == (
        "hello",
        "v1",
    )
    assert parameters["AppPort"]["Default"] == 80
    assert parameters["AppImage"]["Default"].startswith("public.ecr.aws/")


def test_example_outputs_name_the_cluster_service_and_task_definition(
    service: dict[str, Any],
) -> None:
    assert set(service["Outputs"]) == {
        "ClusterName",
        "ServiceArn",
        "ServiceName",
        "TaskDefinitionArn",
    }


# custom-domain.yaml


@pytest.fixture(scope="module")
def custom_domain() -> dict[str, Any]:
    return load("custom-domain.yaml")


def test_custom_domain_is_regional_on_tls_1_2_with_the_certificate_given(
    custom_domain: dict[str, Any],
) -> None:
    (domain,) = resources_of_type(custom_domain, "AWS::ApiGateway::DomainName").values()

    assert domain["Properties"] == {
        "DomainName": {"Ref": "DomainName"},
        "RegionalCertificateArn": {"Ref": "CertificateArn"},
        "EndpointConfiguration": {"Types": ["REGIONAL"], "IpAddressType": {"Ref": "IpAddressType"}},
        "SecurityPolicy": "TLS_1_2",
    }


def test_custom_domain_maps_the_stage_at_its_root_so_urls_lose_the_stage_segment(
    custom_domain: dict[str, Any],
) -> None:
    (mapping,) = resources_of_type(custom_domain, "AWS::ApiGateway::BasePathMapping").values()

    assert mapping["Properties"] == {
        "DomainName": {"Ref": "ApiDomainName"},
        "RestApiId": {"Ref": "RestApiId"},
        "Stage": {"Ref": "Stage"},
    }


def test_alias_records_exist_only_with_a_hosted_zone_and_aaaa_only_when_dual_stack(
    custom_domain: dict[str, Any],
) -> None:
    records = resources_of_type(custom_domain, "AWS::Route53::RecordSet")

    assert custom_domain["Parameters"]["HostedZoneId"]["Default"] == ""
    assert custom_domain["Parameters"]["IpAddressType"]["Default"] == "dualstack"
    assert custom_domain["Conditions"] == {
        "HasHostedZone": {"Fn::Not": [{"Fn::Equals": [{"Ref": "HostedZoneId"}, ""]}]},
        "IsDualStack": {"Fn::Equals": [{"Ref": "IpAddressType"}, "dualstack"]},
        "HasIpv6Record": {
            "Fn::And": [{"Condition": "HasHostedZone"}, {"Condition": "IsDualStack"}]
        },
    }
    assert {r["Properties"]["Type"]: r["Condition"] for r in records.values()} == {
        "A": "HasHostedZone",
        "AAAA": "HasIpv6Record",
    }


def test_alias_records_name_the_domain_and_point_at_its_regional_endpoint(
    custom_domain: dict[str, Any],
) -> None:
    records = resources_of_type(custom_domain, "AWS::Route53::RecordSet").values()

    assert all(r["Properties"]["Name"] == {"Ref": "DomainName"} for r in records)
    assert all(r["Properties"]["HostedZoneId"] == {"Ref": "HostedZoneId"} for r in records)
    assert [r["Properties"]["AliasTarget"] for r in records] == 2 * [
        {
            "DNSName": {"Fn::GetAtt": ["ApiDomainName", "RegionalDomainName"]},
            "HostedZoneId": {"Fn::GetAtt": ["ApiDomainName", "RegionalHostedZoneId"]},
            "EvaluateTargetHealth": False,
        }
    ]


def test_custom_domain_outputs_are_the_regional_endpoint_and_the_stage_less_url(
    custom_domain: dict[str, Any],
) -> None:
    outputs = custom_domain["Outputs"]

    assert {name: output["Value"] for name, output in outputs.items()} == {
        "RegionalDomainName": {"Fn::GetAtt": ["ApiDomainName", "RegionalDomainName"]},
        "RegionalHostedZoneId": {"Fn::GetAtt": ["ApiDomainName", "RegionalHostedZoneId"]},
        "Url": {"Fn::Sub": "https://${DomainName}"},
    }


@pytest.mark.parametrize(
    ("parameter", "value", "accepted"),
    [
        ("DomainName", "mesh.example.com", True),
        ("DomainName", "api.eu.mesh-1.example.co.uk", True),
        ("DomainName", "Mesh.Example.com", False),
        ("DomainName", "mesh.example.com.", False),
        ("DomainName", "https://mesh.example.com", False),
        (
            "CertificateArn",
            "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789",
            True,
        ),
        ("CertificateArn", "arn:aws:iam::123456789012:server-certificate/mesh", False),
        ("RestApiId", "a1b2c3d4e5", True),
        ("RestApiId", "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com", False),
        ("Stage", "prod", True),
        ("Stage", "/prod", False),
        ("HostedZoneId", "", True),
        ("HostedZoneId", "Z0123456789ABCDEFGHIJ", True),
        ("HostedZoneId", "/hostedzone/Z0123456789ABCDEFGHIJ", False),
    ],
)
def test_custom_domain_parameters_accept_what_aws_names_and_refuse_the_rest(
    custom_domain: dict[str, Any], parameter: str, value: str, accepted: bool
) -> None:
    pattern = custom_domain["Parameters"][parameter]["AllowedPattern"]

    # CloudFormation matches AllowedPattern against the whole value.
    assert (re.fullmatch(pattern, value) is not None) is accepted


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("function-url", True),
        ("console.mesh.example.com", True),
        ("https://console.mesh.example.com", False),
        ("console.mesh.example.com/dashboard", False),
        ("Console.Example.com", False),
    ],
)
def test_the_console_domain_parameter_takes_what_the_app_takes(value: str, accepted: bool) -> None:
    from chalicelib.console import parse_console_domain

    pattern = load("chalice-merge.yaml")["Parameters"]["ConsoleDomain"]["AllowedPattern"]

    assert bool(re.fullmatch(pattern, value)) is accepted
    if accepted:
        assert parse_console_domain(value) == value
