"""What `chalice package` builds: the deployed API and the Lambda's own dependencies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOT_IN_LAMBDA = ("moto", "pytest", "cfnlint", "ruff", "mypy", "boto3", "flask", "werkzeug")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("package") / "out"
    chalice = Path(sys.executable).parent / "chalice"
    subprocess.run(
        [str(chalice), "package", "--stage", "prod", str(out)],
        cwd=ROOT,
        env={**os.environ, "AWS_DEFAULT_REGION": "eu-west-1"},
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def api_definition(package: Path) -> dict[str, Any]:
    template = json.loads((package / "sam.json").read_text())
    [api] = [r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Api"]
    definition: dict[str, Any] = api["Properties"]["DefinitionBody"]
    return definition


def test_the_deployed_api_has_the_greedy_gateway_route_for_every_method(package: Path) -> None:
    paths = api_definition(package)["paths"]

    for route in ("/api/v1/{service}/{version}/{proxy+}", "/api/v1/{service}/{version}"):
        assert set(paths[route]) >= {"get", "head", "post", "put", "patch", "delete", "options"}


def test_every_body_reaches_the_lambda_as_bytes(package: Path) -> None:
    assert api_definition(package)["x-amazon-apigateway-binary-media-types"] == ["*/*"]


def test_the_lambda_package_holds_no_development_tools(package: Path) -> None:
    with zipfile.ZipFile(package / "deployment.zip") as archive:
        top = {name.split("/", 1)[0].lower() for name in archive.namelist()}

    assert {"app.py", "chalicelib", "pynamodb", "aws_lambda_powertools", "urllib3"} <= top
    assert not {t for t in top if t.startswith(NOT_IN_LAMBDA)}
    assert "lambdamesh" not in top
    assert "lambdamesh_sidecar" not in top


def test_the_lambda_role_may_use_the_registry_table_but_never_scan_it(package: Path) -> None:
    template = json.loads((package / "sam.json").read_text())
    [role] = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    actions = {action for statement in statements for action in statement["Action"]}

    assert {"dynamodb:Query", "dynamodb:UpdateItem", "ssm:GetParameter"} <= actions
    assert "dynamodb:Scan" not in actions
    assert not any(action.endswith("*") for action in actions)
