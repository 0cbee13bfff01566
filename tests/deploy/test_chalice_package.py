"""What `chalice package` builds for each stage, and with infra/chalice-merge.yaml merged in.

Each variant is packaged once (tests/deploy/packaged.py), turned into plain CloudFormation by
the SAM transform, and linted by cfn-lint and checkov as the tools they are.
"""

from __future__ import annotations

import json
import re
import subprocess
import zipfile
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy import packaged
from tests.deploy.packaged import MERGE_TEMPLATE, NETWORK_OUTPUTS, REGION, ROOT, Package

# The `dev` and `local` extras, by the top-level names they import as.
NOT_IN_LAMBDA = (
    "moto",
    "pytest",
    "cfnlint",
    "cfn_lint",
    "ruff",
    "mypy",
    "flask",
    "werkzeug",
    "samtranslator",
    "hadolint",
    "lambdamesh",
)
# Chalice ships its runtime (the Chalice app class) in the zip, and nothing else of itself.
CHALICE_RUNTIME = {"chalice/__init__.py", "chalice/app.py"}
# AWS's limits for a zip deployment package.
MAX_ZIP_UPLOAD = 50 * 1024 * 1024
MAX_UNZIPPED = 250 * 1024 * 1024


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Package:
    return packaged.build("dev", tmp_path_factory)


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Package:
    return packaged.build("prod", tmp_path_factory)


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> Package:
    return packaged.build("prod", tmp_path_factory, merged=True)


@pytest.fixture(params=["dev", "prod", "prod-merged"])
def variant(request: pytest.FixtureRequest) -> Package:
    name = {"dev": "dev", "prod": "prod", "prod-merged": "merged"}[request.param]
    built: Package = request.getfixturevalue(name)
    return built


def api_definition(package: Package) -> dict[str, Any]:
    [api] = [r for r in package.sam["Resources"].values() if r["Type"] == "AWS::Serverless::Api"]
    definition: dict[str, Any] = api["Properties"]["DefinitionBody"]
    return definition


def zip_names(package: Package) -> list[str]:
    with zipfile.ZipFile(package.zip) as archive:
        return archive.namelist()


def requirements() -> list[Requirement]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def runtime_distributions() -> set[str]:
    """requirements.txt and everything it depends on, as installed for this Python."""
    seen: set[str] = set()
    todo = requirements()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo += [Requirement(r) for r in distribution(name).requires or []]
    return seen


def bundled_distributions(package: Package) -> dict[str, str]:
    """Name -> version of every distribution whose metadata is in the zip."""
    found: dict[str, str] = {}
    with zipfile.ZipFile(package.zip) as archive:
        for name in archive.namelist():
            if re.fullmatch(r"[^/]+\.dist-info/METADATA", name):
                headers = archive.read(name).decode().split("\n\n", 1)[0].splitlines()
                fields = dict(line.split(": ", 1) for line in headers if ": " in line)
                found[canonicalize_name(fields["Name"])] = fields["Version"]
    return found


def role_statements(package: Package) -> list[dict[str, Any]]:
    [role] = package.resources("AWS::IAM::Role").values()
    statements: list[dict[str, Any]] = role["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]
    return statements


def test_the_deployed_api_has_the_greedy_gateway_route_for_every_method(prod: Package) -> None:
    paths = api_definition(prod)["paths"]

    for route in ("/api/v1/{service}/{version}/{proxy+}", "/api/v1/{service}/{version}"):
        assert set(paths[route]) >= {"get", "head", "post", "put", "patch", "delete", "options"}


def test_every_body_reaches_the_lambda_as_bytes(prod: Package) -> None:
    assert api_definition(prod)["x-amazon-apigateway-binary-media-types"] == ["*/*"]


def test_the_lambda_package_holds_no_development_tools(prod: Package) -> None:
    names = zip_names(prod)
    top = {name.split("/", 1)[0].lower() for name in names}

    assert {"app.py", "chalicelib", "pynamodb", "aws_lambda_powertools", "urllib3"} <= top
    # The routing decisions the gateway shares with the sidecar come in through vendor/.
    assert "lambdamesh_routing" in top
    assert not {t for t in top - {"lambdamesh_routing"} if t.startswith(NOT_IN_LAMBDA)}
    assert "lambdamesh_sidecar" not in top
    assert {n for n in names if n.split("/")[0].startswith("chalice-")} == set()
    assert {n for n in names if n.startswith("chalice/")} == CHALICE_RUNTIME


def test_the_lambda_package_holds_only_the_runtime_requirements_and_their_dependencies(
    prod: Package,
) -> None:
    assert set(bundled_distributions(prod)) <= runtime_distributions()


def test_the_lambda_package_bundles_boto3_and_botocore_at_the_pinned_versions(
    prod: Package,
) -> None:
    pinned = {str(canonicalize_name(r.name)): str(r.specifier) for r in requirements()}
    bundled = bundled_distributions(prod)

    for name in ("boto3", "botocore"):
        assert pinned[name] == f"=={bundled[name]}"
    with zipfile.ZipFile(prod.zip) as archive:
        botocore_init = archive.read("botocore/__init__.py").decode()
    assert f"__version__ = '{bundled['botocore']}'" in botocore_init


def test_the_lambda_package_fits_aws_size_limits(
    prod: Package, capsys: pytest.CaptureFixture[str]
) -> None:
    packed, unpacked = prod.zip_sizes()
    with capsys.disabled():
        print(
            f"\ndeployment.zip: {packed:,} bytes ({packed / 2**20:.1f} MiB) compressed, "
            f"{unpacked:,} bytes ({unpacked / 2**20:.1f} MiB) unpacked"
        )

    assert packed < MAX_ZIP_UPLOAD
    assert unpacked < MAX_UNZIPPED


@pytest.mark.parametrize("stage", packaged.STAGES)
def test_the_lambda_role_may_use_its_stage_table_and_secret_but_never_scan(
    stage: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    statements = role_statements(packaged.build(stage, tmp_path_factory))
    actions = {action for statement in statements for action in statement["Action"]}
    resources = {statement["Sid"]: statement["Resource"] for statement in statements}

    assert {"dynamodb:Query", "dynamodb:UpdateItem", "secretsmanager:GetSecretValue"} <= actions
    assert "dynamodb:Scan" not in actions
    assert not any(action.endswith("*") for action in actions)
    assert resources["Registry"] == f"arn:*:dynamodb:*:*:table/lambdamesh-registry-{stage}"
    # The task index, for stop events, is only queried.
    assert resources["RegistryTaskIndex"] == (
        f"arn:*:dynamodb:*:*:table/lambdamesh-registry-{stage}/index/by-task"
    )
    [index] = [statement for statement in statements if statement["Sid"] == "RegistryTaskIndex"]
    assert index["Action"] == ["dynamodb:Query"]
    # AWS appends "-" and six random characters to a secret's name in its ARN.
    assert resources["SigningKey"] == (
        f"arn:*:secretsmanager:*:*:secret:lambdamesh/{stage}/signing-key-??????"
    )
    # The stage's own log groups only: chalice deploy's function lambdamesh-<stage>, and the
    # package route's, named after its stack lambdamesh-<stage>-api.
    assert resources["Logs"] == f"arn:*:logs:*:*:log-group:/aws/lambda/lambdamesh-{stage}*"
    # What AWS's AWSLambdaVPCAccessExecutionRole grants for attaching to a VPC, as of its v3.
    assert set(resources) >= {"VpcNetworking"}
    [vpc] = [statement for statement in statements if statement["Sid"] == "VpcNetworking"]
    assert set(vpc["Action"]) == {
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    }


@pytest.mark.parametrize("stage", packaged.STAGES)
def test_the_lambda_role_may_read_the_mesh_ca_secret_its_stage_names_and_no_other(
    stage: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    package = packaged.build(stage, tmp_path_factory)
    statements = role_statements(package)
    name = package.function_environment()["LAMBDAMESH_MESH_CA_SECRET"]

    [mesh_ca] = [statement for statement in statements if statement["Sid"] == "MeshCA"]

    assert name == f"lambdamesh/{stage}/mesh-ca"
    assert mesh_ca["Action"] == ["secretsmanager:GetSecretValue"]
    # The name's ARN, whose six random characters "??????" matches, and nothing longer: the
    # grant can be written before the operator has stored the CA.
    assert mesh_ca["Resource"] == f"arn:*:secretsmanager:*:*:secret:{name}-??????"


def test_each_template_is_valid_cloudformation_after_the_sam_transform(variant: Package) -> None:
    from cfnlint.api import lint

    findings = lint(json.dumps(variant.cloudformation), regions=[REGION])

    assert [str(finding) for finding in findings] == []


def test_the_api_is_regional_and_its_stage_resource_is_named_after_the_chalice_stage(
    variant: Package,
) -> None:
    [api] = variant.resources("AWS::ApiGateway::RestApi").values()
    stages = variant.resources("AWS::ApiGateway::Stage").values()

    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert [s["Properties"]["StageName"] for s in stages] == [variant.stage]


def test_only_the_merge_template_stops_sam_adding_an_api_stage_named_stage(
    prod: Package, merged: Package
) -> None:
    def deployment_stages(package: Package) -> list[Any]:
        deployments = package.resources("AWS::ApiGateway::Deployment").values()
        return [d["Properties"].get("StageName") for d in deployments]

    assert deployment_stages(prod) == ["Stage"]
    assert deployment_stages(merged) == [None]


def test_the_merge_template_amends_chalice_resources_and_adds_only_the_function_url(
    prod: Package,
) -> None:
    merge = packaged.load_yaml_template(MERGE_TEMPLATE.read_text())
    generated = prod.sam["Resources"]

    # An amendment never restates a type; an addition is typed and named apart from Chalice's.
    amended = {name for name, resource in merge["Resources"].items() if "Type" not in resource}
    added = {name: r["Type"] for name, r in merge["Resources"].items() if name not in amended}
    assert amended <= set(generated)
    assert added == {
        "APIHandlerUrl": "AWS::Lambda::Url",
        "APIHandlerUrlPermission": "AWS::Lambda::Permission",
        "APIHandlerUrlInvokePermission": "AWS::Lambda::Permission",
        "APIHandlerLogGroup": "AWS::Logs::LogGroup",
    }
    assert not set(added) & set(generated)


def test_the_merged_function_runs_in_the_network_stacks_subnets_with_its_networks(
    merged: Package, prod: Package
) -> None:
    [function] = merged.resources("AWS::Lambda::Function").values()
    properties = function["Properties"]
    parameters = merged.cloudformation["Parameters"]

    assert parameters["SubnetIds"]["Type"] == "List<AWS::EC2::Subnet::Id>"
    assert parameters["SecurityGroupIds"]["Type"] == "List<AWS::EC2::SecurityGroup::Id>"
    assert parameters["AllowedNetworks"]["Type"] == "CommaDelimitedList"
    assert properties["VpcConfig"] == {
        "SubnetIds": {"Ref": "SubnetIds"},
        "SecurityGroupIds": {"Ref": "SecurityGroupIds"},
    }
    variables = properties["Environment"]["Variables"]
    assert variables.pop("LAMBDAMESH_ALLOWED_NETWORKS") == {
        "Fn::Join": [",", {"Ref": "AllowedNetworks"}]
    }
    assert parameters["ConsoleDomain"]["Default"] == ""
    assert variables.pop("LAMBDAMESH_CONSOLE_DOMAIN") == {"Ref": "ConsoleDomain"}
    assert variables == prod.function_environment()


def evaluate_rule(expression: Any, parameters: dict[str, list[str]]) -> Any:
    """The few rule functions the merge template uses, as CloudFormation documents them."""
    if not isinstance(expression, dict):
        return expression
    [(function, argument)] = expression.items()
    if function == "Ref":
        return parameters[argument]
    values = [evaluate_rule(a, parameters) for a in argument]
    if function == "Fn::Not":
        return not values[0]
    if function == "Fn::EachMemberEquals":
        return all(member == values[1] for member in values[0])
    raise AssertionError(f"no evaluator for {function}")


def test_a_deploy_without_allowed_networks_is_refused_by_a_rule_with_a_one_line_reason(
    merged: Package,
) -> None:
    [rule] = merged.cloudformation["Rules"].values()
    [assertion] = rule["Assertions"]

    assert "\n" not in assertion["AssertDescription"]
    assert "AllowedNetworks" in assertion["AssertDescription"]
    # An empty CommaDelimitedList reaches rules as one empty member.
    assert evaluate_rule(assertion["Assert"], {"AllowedNetworks": [""]}) is False
    allowed = {"AllowedNetworks": NETWORK_OUTPUTS["AllowedNetworks"]}
    assert evaluate_rule(assertion["Assert"], allowed) is True


def run_checkov(checkov: Path, *files: Path) -> list[dict[str, Any]]:
    command = [str(checkov), "--framework", "cloudformation", "--skip-download", "--compact"]
    for file in files:
        command += ["-f", str(file)]
    result = subprocess.run(
        [*command, "-o", "json"], capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode in (0, 1), result.stderr
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def test_checkov_passes_the_merged_template_with_every_skip_inline_and_explained(
    merged: Package, checkov: Path, tmp_path: Path
) -> None:
    transformed = tmp_path / "api.template.json"
    transformed.write_text(json.dumps(merged.cloudformation))

    [report] = run_checkov(checkov, transformed, MERGE_TEMPLATE)
    results = report["results"]

    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    merge = packaged.load_yaml_template(MERGE_TEMPLATE.read_text())["Resources"]
    declared = {
        (name, skip["id"])
        for name, resource in merge.items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }

    def source(generated: str) -> str:
        """The merge template's resource that a transformed resource came from."""
        return str(max((name for name in merge if generated.startswith(name)), key=len))

    skipped = results["skipped_checks"]
    applied = {(source(c["resource"].split(".", 1)[1]), c["check_id"]) for c in skipped}
    # Every skip is used (a stale one would hide a future finding) and says why.
    assert applied == declared
    assert all(len(c["check_result"]["suppress_comment"]) > 40 for c in skipped)


API_GATEWAY_METHODS = {"get", "head", "post", "put", "patch", "delete", "options"}


def test_every_resource_has_every_method_so_api_gateway_never_answers_403_for_a_route(
    prod: Package,
) -> None:
    paths = api_definition(prod)["paths"]

    assert {"/", "/{proxy+}"} <= set(paths)
    assert {path: set(methods) >= API_GATEWAY_METHODS for path, methods in paths.items()} == {
        path: True for path in paths
    }


def test_every_resource_and_its_parents_are_declared_with_at_most_one_variable_child(
    prod: Package,
) -> None:
    # API Gateway refuses two variable siblings, and creates undeclared parents without
    # methods (which it would answer itself).
    paths = set(api_definition(prod)["paths"]) - {"/"}
    split = [path.rsplit("/", 1) for path in paths]
    parents = {parent or "/" for parent, _ in split}
    with_variable = [parent or "/" for parent, segment in split if segment.startswith("{")]

    assert parents <= paths | {"/"}
    assert sorted(with_variable) == sorted(set(with_variable))


def test_every_variant_runs_on_arm64(variant: Package) -> None:
    [function] = variant.resources("AWS::Lambda::Function").values()

    assert function["Properties"]["Architectures"] == ["arm64"]


# ELF header fields: the class byte (2: 64-bit) and the machine (183: AArch64, little-endian).
ELF_MAGIC = b"\x7fELF"
EM_AARCH64 = 183


def test_every_compiled_module_in_the_zip_is_built_for_the_functions_arm64(
    prod: Package,
) -> None:
    """cryptography (for JWT) brings compiled code: chalice must have bundled the Linux
    aarch64 wheels the function runs, never the x86_64 ones of the machine that packaged it."""
    with zipfile.ZipFile(prod.zip) as archive:
        native = [
            n for n in archive.namelist() if n.endswith((".so", ".pyd", ".dylib")) or ".so." in n
        ]
        headers = {name: archive.read(name)[:20] for name in native}

    assert any("cryptography" in name for name in native)
    for name, head in headers.items():
        assert head[:4] == ELF_MAGIC, name
        assert head[4] == 2, name
        assert int.from_bytes(head[18:20], "little") == EM_AARCH64, name


# The heartbeat lane: a function URL on the same function


def test_the_merged_package_gives_the_function_a_url_checked_by_its_hmac_tokens_only(
    merged: Package,
) -> None:
    [(name, url)] = merged.resources("AWS::Lambda::Url").items()

    assert name == "APIHandlerUrl"
    # No Cors, no InvokeMode (BUFFERED, what the app's answers need); the alias only with
    # SnapStart, named by reference so that CloudFormation makes the URL after it (a string
    # qualifier would let the URL be created before the alias exists).
    assert url["Properties"] == {
        "TargetFunctionArn": {
            "Fn::If": [
                "SnapStartOn",
                {"Ref": "APIHandlerAliaslive"},
                {"Fn::GetAtt": ["APIHandler", "Arn"]},
            ]
        },
        "AuthType": "NONE",
    }
    assert merged.cloudformation["Resources"]["APIHandler"]["Type"] == "AWS::Lambda::Function"


def test_anyone_may_invoke_the_function_url_and_nothing_else_of_the_function(
    merged: Package, prod: Package
) -> None:
    permissions = merged.resources("AWS::Lambda::Permission")

    target = {"Fn::If": ["SnapStartOn", {"Ref": "APIHandlerAliaslive"}, {"Ref": "APIHandler"}]}
    # Both, since October 2025: InvokeFunctionUrl on a URL of AuthType NONE, and
    # InvokeFunction only through a function URL (the lambda:InvokedViaFunctionUrl condition).
    assert permissions.pop("APIHandlerUrlPermission")["Properties"] == {
        "Action": "lambda:InvokeFunctionUrl",
        "FunctionName": target,
        "FunctionUrlAuthType": "NONE",
        "Principal": "*",
    }
    assert permissions.pop("APIHandlerUrlInvokePermission")["Properties"] == {
        "Action": "lambda:InvokeFunction",
        "FunctionName": target,
        "InvokedViaFunctionUrl": True,
        "Principal": "*",
    }
    # Every other permission is Chalice's own, unchanged (API Gateway's invoke).
    assert permissions == prod.resources("AWS::Lambda::Permission")


def test_the_merged_package_outputs_the_function_url_beside_the_endpoint_url(
    merged: Package, prod: Package
) -> None:
    outputs = dict(merged.cloudformation["Outputs"])

    assert outputs.pop("FunctionUrl")["Value"] == {"Fn::GetAtt": ["APIHandlerUrl", "FunctionUrl"]}
    # For infra/task-events.yaml's FunctionRoleName.
    assert outputs.pop("APIHandlerRoleName")["Value"] == {"Ref": "ApiHandlerRole"}
    assert outputs == prod.cloudformation["Outputs"]
    assert "FunctionUrl" not in prod.cloudformation["Outputs"]


def test_the_role_named_in_the_output_is_the_functions_execution_role(merged: Package) -> None:
    [(name, _)] = merged.resources("AWS::IAM::Role").items()
    [function] = merged.resources("AWS::Lambda::Function").values()

    assert function["Properties"]["Role"] == {"Fn::GetAtt": [name, "Arn"]}
    assert merged.cloudformation["Outputs"]["APIHandlerRoleName"]["Value"] == {"Ref": name}


def test_the_merged_function_logs_json_at_info_and_lambdas_own_records_at_warn(
    merged: Package,
) -> None:
    """INFO, because the app's EMF metrics are printed with no level, which Lambda counts as
    INFO; Lambda's START/END/REPORT records of successful invocations only on request."""
    [function] = merged.resources("AWS::Lambda::Function").values()
    parameter = merged.cloudformation["Parameters"]["SystemLogLevel"]

    assert function["Properties"]["LoggingConfig"] == {
        "LogGroup": {"Ref": "APIHandlerLogGroup"},
        "LogFormat": "JSON",
        "ApplicationLogLevel": "INFO",
        "SystemLogLevel": {"Ref": "SystemLogLevel"},
    }
    assert (parameter["Default"], parameter["AllowedValues"]) == ("WARN", ["DEBUG", "INFO", "WARN"])
    # Powertools takes Lambda's level (AWS_LAMBDA_LOG_LEVEL) first; the stage's own agrees.
    assert merged.function_environment()["POWERTOOLS_LOG_LEVEL"] == "INFO"


# SnapStart, for the function URL lane


def test_every_deploy_publishes_a_version_under_the_alias_live(merged: Package) -> None:
    [(name, alias)] = merged.resources("AWS::Lambda::Alias").items()
    [version] = merged.resources("AWS::Lambda::Version")

    assert name == "APIHandlerAliaslive"
    assert alias["Properties"]["Name"] == "live"
    assert alias["Properties"]["FunctionVersion"] == {"Fn::GetAtt": [version, "Version"]}


def test_a_change_of_configuration_alone_publishes_a_version_for_the_alias(
    merged: Package,
) -> None:
    """Without AutoPublishAliasAllProperties, SAM publishes a version only when the code
    changes: a new parameter or environment variable would leave the alias, and the function
    URL with SnapStart on, on the old configuration."""
    sam = merged.sam["Resources"]["APIHandler"]["Properties"]
    [version] = merged.resources("AWS::Lambda::Version").values()

    assert sam["AutoPublishAliasAllProperties"] is True
    # SAM names the version after a hash of the whole function, configuration included.
    assert version["DeletionPolicy"] == "Retain"


def test_snapstart_follows_its_parameter_and_is_off_by_default(merged: Package) -> None:
    function = merged.cloudformation["Resources"]["APIHandler"]["Properties"]
    parameter = merged.cloudformation["Parameters"]["SnapStart"]

    assert function["SnapStart"] == {"ApplyOn": {"Ref": "SnapStart"}}
    assert parameter["Default"] == "None"
    assert parameter["AllowedValues"] == ["None", "PublishedVersions"]
    assert merged.cloudformation["Conditions"]["SnapStartOn"] == {
        "Fn::Equals": [{"Ref": "SnapStart"}, "PublishedVersions"]
    }
