"""The registry table template: valid CloudFormation, and the properties the code relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "registry-table.yaml"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    parsed, matches = decode(str(TEMPLATE))
    assert not matches, matches
    assert parsed is not None
    return dict(parsed)


@pytest.fixture(scope="module")
def table(template: dict[str, Any]) -> dict[str, Any]:
    (resource,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::DynamoDB::Table"]
    return dict(resource)


def policy_actions(template: dict[str, Any]) -> list[str]:
    document = template["Resources"]["RegistryAccessPolicy"]["Properties"]["PolicyDocument"]
    actions: list[str] = []
    for statement in document["Statement"]:
        action = statement["Action"]
        actions.extend([action] if isinstance(action, str) else action)
    return actions


def test_template_passes_cfn_lint_without_errors_or_warnings() -> None:
    config = ManualArgs(regions=["us-east-1", "eu-west-1"], include_checks=["I"])

    matches = lint_file(TEMPLATE, config=config)

    assert [f"{m.rule.id}: {m.message}" for m in matches] == []


def test_table_name_is_a_parameter_with_the_registry_default(template: dict[str, Any]) -> None:
    assert template["Parameters"]["TableName"]["Default"] == "lambdamesh-registry"


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
    }


def test_table_is_on_demand_recoverable_and_encrypted(table: dict[str, Any]) -> None:
    properties = table["Properties"]

    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert properties["SSESpecification"]["SSEEnabled"] is True


def test_table_is_retained_on_delete_and_replacement(table: dict[str, Any]) -> None:
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"


def test_policy_grants_item_access_but_never_scan(template: dict[str, Any]) -> None:
    actions = policy_actions(template)

    assert "dynamodb:Scan" not in actions
    assert not [a for a in actions if "*" in a]
    assert sorted(actions) == sorted(
        [
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:Query",
            "dynamodb:DescribeTable",
        ]
    )


def test_policy_is_scoped_to_the_registry_table_arn(template: dict[str, Any]) -> None:
    document = template["Resources"]["RegistryAccessPolicy"]["Properties"]["PolicyDocument"]

    assert [s["Resource"] for s in document["Statement"]] == [
        {"Fn::GetAtt": ["RegistryTable", "Arn"]}
    ]


def test_outputs_export_table_name_arn_and_policy_arn(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]

    assert set(outputs) == {"TableName", "TableArn", "RegistryAccessPolicyArn"}
    for name, output in outputs.items():
        assert output["Export"]["Name"] == {"Fn::Sub": f"${{AWS::StackName}}-{name}"}
