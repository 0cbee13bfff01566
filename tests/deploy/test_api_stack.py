"""The API stack (`chalice package --stage prod --merge-template infra/chalice-merge.yaml`) on
moto, between the network stack and the example service.

The order is the deployment's: registry -> signing-key -> network -> api -> task events ->
example service, in an account of this module's own. The API stack's template is the merged
package after the SAM transform, its code the package's zip uploaded to S3 first, as
`aws cloudformation package` does, and its parameters the network stack's outputs; the task
events stack's parameters are the API stack's outputs.

moto's CloudFormation creates the function half of that template and none of its API Gateway
half (the first three limits are pinned by tests below):

- AWS::ApiGateway::RestApi: moto takes the API's name from a `Name` property only and ignores
  `Body`; the template names the API in its Body, as Chalice writes it, so moto's create_stack
  answers 500 (KeyError 'Name'). Given the Body by PutRestApi instead, moto refuses it: it
  reads OpenAPI 3 only, and Chalice writes Swagger 2.0.
- AWS::ApiGateway::Deployment: moto deploys an API only once it has methods, which only the
  Body gives it.
- AWS::ApiGateway::Stage: moto's CloudFormation has no such type.
- AWS::Lambda::Permission (APIHandlerInvokePermission) and the outputs EndpointURL and
  RestAPIId name the REST API, so they go with it.
- AWS::Lambda::Url (APIHandlerUrl, the heartbeat lane): moto's CloudFormation has no such
  type, so the FunctionUrl output, which names it, goes with it. Its public-invoke permission
  names only the function and is created. moto's Lambda API does make function URLs: the
  lane's URL is stood in that way, with the template's properties.
- AWS::Lambda::Alias (APIHandlerAliaslive, published on every deploy for SnapStart): moto's
  CloudFormation skips the type with a warning. With SnapStart off, the default deployed here,
  nothing else names it; the Version it points at is created.
- Rules: moto's CloudFormation does not evaluate them, so the AllowedNetworks rule is not
  exercised.

So the stack deployed is the template less exactly those resources and outputs. The REST API
stands in as moto can make it (CreateRestApi with the Body's title and the template's endpoint
configuration, no methods, no stage), and EndpointURL is the template's own output expression
rendered with that API's id; that URL, stripped of its trailing slash as the docs do, is the
example service's LambdaMeshUrl. Which stages SAM generates (`prod`, no `Stage`) is checked on
the transformed template in test_chalice_package.py; no stage can be created on moto here.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.apigateway.models import RestAPI
from moto.cloudformation.parsing import resource_class_from_type

from lambdamesh.finishing import interpreter_runtime
from tests.deploy import packaged
from tests.deploy.conftest import Client
from tests.deploy.infra_fixtures import REGION, Rendering, load_template
from tests.deploy.packaged import Package
from tests.deploy.test_infra_stacks import (
    INBOUND_PORT,
    INFRA,
    ROOT,
    SIDECAR_IMAGE,
    TASK_SUBNETS,
    TOKEN,
    Stack,
    deploy,
)

# The account this deployment lands in: moto keeps it apart from every other test's resources,
# so the stage's fixed names (table lambdamesh-registry-prod) are free here.
ACCOUNT = "210987654321"
STAGE = "prod"
ARTIFACT_BUCKET = "lambdamesh-artifacts"
# What moto's CloudFormation cannot create, by type; see the module's docstring.
NOT_ON_MOTO = (
    "AWS::ApiGateway::RestApi",
    "AWS::ApiGateway::Deployment",
    "AWS::ApiGateway::Stage",
    "AWS::Lambda::Url",
)


@dataclass
class Deployment:
    stacks: dict[str, Stack]
    api_template: dict[str, Any]
    rest_api: dict[str, Any]
    endpoint_url: str


@pytest.fixture(scope="module")
def aws(moto_endpoint: str) -> Client:
    sts = boto3.client("sts", endpoint_url=moto_endpoint, region_name=REGION)
    role = f"arn:aws:iam::{ACCOUNT}:role/deployer"
    credentials = sts.assume_role(RoleArn=role, RoleSessionName="api-stack")["Credentials"]

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=moto_endpoint,
            region_name=REGION,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )

    return client


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Package:
    return packaged.build(STAGE, tmp_path_factory, merged=True)


def upload(aws: Client, package: Package) -> str:
    """`aws cloudformation package`: the zip on S3 under its MD5, and the CodeUri naming it."""
    data = package.zip.read_bytes()
    key = hashlib.md5(data, usedforsecurity=False).hexdigest()
    s3 = aws("s3")
    s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    s3.put_object(Bucket=ARTIFACT_BUCKET, Key=key, Body=data)
    return f"s3://{ARTIFACT_BUCKET}/{key}"


def api_template(package: Package, code_uri: str) -> dict[str, Any]:
    """The template CloudFormation deploys: the merged package, uploaded, SAM-transformed."""
    sam = packaged.uploaded(package.sam)
    sam["Resources"]["APIHandler"]["Properties"]["CodeUri"] = code_uri
    # No parameter values: the network's ids stay references, resolved by the deployment.
    return packaged.sam_transform(sam, {})


def names(value: Any) -> set[str]:
    """The logical ids a Ref, Fn::GetAtt or Fn::Sub in ``value`` names."""
    if isinstance(value, list):
        return set().union(*map(names, value))
    if not isinstance(value, dict):
        return set()
    found = set().union(*map(names, value.values()))
    if isinstance(value.get("Ref"), str):
        found.add(value["Ref"])
    if "Fn::GetAtt" in value:
        attribute = value["Fn::GetAtt"]
        found.add(attribute.split(".")[0] if isinstance(attribute, str) else attribute[0])
    sub = value.get("Fn::Sub")
    text = sub if isinstance(sub, str) else sub[0] if isinstance(sub, list) else ""
    found |= {match.split(".")[0] for match in re.findall(r"\$\{([^!}][^}]*)\}", text)}
    return found


def on_moto(template: dict[str, Any]) -> dict[str, Any]:
    """The template less what moto cannot create and what names it."""
    resources = template["Resources"]
    dropped = {name for name, r in resources.items() if r["Type"] in NOT_ON_MOTO}
    kept = {n: r for n, r in resources.items() if n not in dropped and not names(r) & dropped}
    outputs = {n: o for n, o in template["Outputs"].items() if not names(o) & dropped}
    return template | {"Resources": kept, "Outputs": outputs}


# `aws cloudformation deploy` sends a template larger than this only through an S3 bucket
# (--s3-bucket): https://docs.aws.amazon.com/cli/latest/reference/cloudformation/deploy/
TEMPLATE_BODY_LIMIT = 51_200


def create_stack(aws: Client, name: str, template: dict[str, Any], parameters: Any) -> Stack:
    """test_infra_stacks.deploy, for a template made here rather than read from infra/, and
    sent as `aws cloudformation deploy --s3-bucket` sends it: uploaded to the artifact bucket
    and named by URL."""
    cloudformation = aws("cloudformation")
    body = json.dumps(template)
    key = f"{name}.template"
    aws("s3").put_object(Bucket=ARTIFACT_BUCKET, Key=key, Body=body.encode())
    cloudformation.create_stack(
        StackName=name,
        TemplateURL=f"https://{ARTIFACT_BUCKET}.s3.amazonaws.com/{key}",
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
        resources={
            s.get("LogicalResourceId", ""): s.get("PhysicalResourceId", "") for s in summaries
        },
    )


def stand_in_rest_api(aws: Client, template: dict[str, Any]) -> dict[str, Any]:
    """The REST API as moto can make it: the Body's title, the template's endpoint type."""
    properties = template["Resources"]["RestAPI"]["Properties"]
    created: dict[str, Any] = aws("apigateway").create_rest_api(
        name=properties["Body"]["info"]["title"],
        endpointConfiguration={"types": properties["EndpointConfiguration"]["Types"]},
    )
    return created


def endpoint_url(template: dict[str, Any], rest_api_id: str) -> str:
    """The template's EndpointURL output, rendered as CloudFormation would for this API."""
    rendering = Rendering(
        template, references={"RestAPI": rest_api_id, "AWS::URLSuffix": "amazonaws.com"}
    )
    url: str = rendering.resolve(template["Outputs"]["EndpointURL"]["Value"])
    return url


@pytest.fixture(scope="module")
def deployment(aws: Client, package: Package) -> Deployment:
    """lambdamesh-prod-{registry,signing-key,network,api,task-events,hello}, the docs' names
    (this module's account holds nothing else), each fed the last's outputs."""
    ec2 = aws("ec2")
    prefix = f"lambdamesh-{STAGE}"
    vpc_id = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet_ids = [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=f"{REGION}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for cidr, zone in zip(TASK_SUBNETS, "ab", strict=True)
    ]
    route_table_id = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    tasks_group_id = ec2.create_security_group(
        GroupName="hello-tasks", Description="hello tasks", VpcId=vpc_id
    )["GroupId"]
    token_secret_arn = aws("secretsmanager").create_secret(
        Name=f"lambdamesh/{STAGE}/tokens/hello", SecretString=TOKEN
    )["ARN"]

    registry = deploy(aws, f"{prefix}-registry", "registry-table", {"Stage": STAGE})
    signing_key = deploy(aws, f"{prefix}-signing-key", "signing-key", {"Stage": STAGE})
    network = deploy(
        aws,
        f"{prefix}-network",
        "network",
        {
            "VpcId": vpc_id,
            "SubnetIds": ",".join(subnet_ids),
            "RouteTableIds": route_table_id,
            "TasksSecurityGroupId": tasks_group_id,
            "TaskSubnetCidrs": ",".join(TASK_SUBNETS),
            "ServicePortFrom": str(INBOUND_PORT),
            "ServicePortTo": str(INBOUND_PORT),
        },
    )
    template = api_template(package, upload(aws, package))
    api = create_stack(
        aws,
        f"{prefix}-api",
        on_moto(template),
        {
            **{k: network.outputs[k] for k in ("SubnetIds", "SecurityGroupIds", "AllowedNetworks")},
            "ConsoleDomain": "function-url",
        },
    )
    rest_api = stand_in_rest_api(aws, template)
    url = endpoint_url(template, rest_api["id"])
    task_events = deploy(
        aws,
        f"{prefix}-task-events",
        "task-events",
        {
            "Stage": STAGE,
            "FunctionArn": api.outputs["APIHandlerArn"],
            "FunctionRoleName": api.outputs["APIHandlerRoleName"],
        },
    )
    hello = deploy(
        aws,
        f"{prefix}-hello",
        "example-service",
        {
            "Stage": STAGE,
            "SubnetIds": network.outputs["SubnetIds"],
            "TaskSubnetCidrs": network.outputs["AllowedNetworks"],
            "TasksSecurityGroupId": tasks_group_id,
            "LambdaMeshUrl": url.removesuffix("/"),
            "TokenSecretArn": token_secret_arn,
            "SidecarImage": SIDECAR_IMAGE,
        },
    )
    stacks = {
        "registry": registry,
        "signing-key": signing_key,
        "network": network,
        "api": api,
        "task-events": task_events,
        "hello": hello,
    }
    return Deployment(stacks, template, rest_api, url)


def function(aws: Client, deployment: Deployment) -> dict[str, Any]:
    name = deployment.stacks["api"].resources["APIHandler"]
    configuration: dict[str, Any] = aws("lambda").get_function(FunctionName=name)["Configuration"]
    return configuration


# What moto cannot do, pinned: a moto that learns it fails here, and the module can then
# deploy the whole template.


DEPLOY_COMMAND = re.compile(
    r"^aws cloudformation deploy --stack-name lambdamesh-\$STAGE-api.*?[^\\]$", re.M | re.S
)


def test_the_documented_deploy_sends_the_template_through_the_bucket_it_must(
    package: Package,
) -> None:
    """The packaged template is larger than what `aws cloudformation deploy` sends without a
    bucket, so the deploy guide's command names one (as this module's deployment does)."""
    packaged_template = json.dumps(api_template(package, f"s3://{ARTIFACT_BUCKET}/code"))
    guide = (ROOT / "docs" / "deploy.md").read_text()

    commands = DEPLOY_COMMAND.findall(guide)

    assert len(packaged_template.encode()) > TEMPLATE_BODY_LIMIT
    assert commands  # the first deploy, and the one turning SnapStart on
    for command in commands:
        assert '--s3-bucket "$ARTIFACT_BUCKET"' in command, command
        assert "--template-file out/$STAGE/packaged.yaml" in command, command


def test_motos_cloudformation_names_a_rest_api_only_from_a_name_property(
    deployment: Deployment,
) -> None:
    rest_api = deployment.api_template["Resources"]["RestAPI"]

    assert "Name" not in rest_api["Properties"]
    assert rest_api["Properties"]["Body"]["info"]["title"] == "lambdamesh"
    with pytest.raises(KeyError, match="Name"):
        RestAPI.create_from_cloudformation_json("RestAPI", rest_api, ACCOUNT, REGION)


def test_motos_cloudformation_has_no_api_gateway_stage() -> None:
    assert resource_class_from_type("AWS::ApiGateway::Stage") is None


def test_moto_refuses_the_swagger_body_so_the_api_has_no_method_to_deploy(
    aws: Client, deployment: Deployment
) -> None:
    apigateway = aws("apigateway")
    body = deployment.api_template["Resources"]["RestAPI"]["Properties"]["Body"]
    rest_api_id = deployment.rest_api["id"]

    with pytest.raises(ClientError, match=r"Only OpenAPI 3\.x\.x are currently supported"):
        apigateway.put_rest_api(restApiId=rest_api_id, mode="overwrite", body=json.dumps(body))
    with pytest.raises(ClientError, match="doesn't contain any methods"):
        apigateway.create_deployment(restApiId=rest_api_id, stageName=STAGE)
    assert body["swagger"] == "2.0"
    assert apigateway.get_stages(restApiId=rest_api_id)["item"] == []


# The API stack


def test_every_stack_reaches_create_complete(deployment: Deployment) -> None:
    stacks = deployment.stacks

    assert {name: stack.status for name, stack in stacks.items()} == dict.fromkeys(
        stacks, "CREATE_COMPLETE"
    )


def test_api_stack_holds_the_function_half_of_the_template_and_nothing_else(
    deployment: Deployment,
) -> None:
    resources = deployment.api_template["Resources"]
    api = deployment.stacks["api"]

    assert sorted(r["Type"] for name, r in resources.items() if name not in api.resources) == [
        "AWS::ApiGateway::Deployment",
        "AWS::ApiGateway::RestApi",
        "AWS::ApiGateway::Stage",
        "AWS::Lambda::Alias",
        "AWS::Lambda::Permission",
        "AWS::Lambda::Url",
    ]
    [version] = [n for n, r in resources.items() if r["Type"] == "AWS::Lambda::Version"]
    # moto lists the Alias it skipped as a resource with no logical id.
    assert set(api.resources) - {""} == {
        "ApiHandlerRole",
        "APIHandler",
        "APIHandlerUrlPermission",
        "APIHandlerUrlInvokePermission",
        "APIHandlerLogGroup",
        version,
    }
    name = api.resources["APIHandler"]
    assert api.outputs == {
        "APIHandlerName": name,
        "APIHandlerArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
        "APIHandlerRoleName": api.resources["ApiHandlerRole"],
    }


def test_the_functions_log_group_is_the_stacks_with_its_retention_and_the_roles_grant(
    aws: Client, deployment: Deployment
) -> None:
    """The function logs to a group the stack makes first, named after the stack, with a
    retention; its name falls under the role's Logs grant for the stage's groups."""
    api = deployment.stacks["api"]
    properties = deployment.api_template["Resources"]["APIHandler"]["Properties"]
    policy = json.loads((ROOT / ".chalice" / "policy-prod.json").read_text())
    [logs] = [statement for statement in policy["Statement"] if statement["Sid"] == "Logs"]

    [group] = aws("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{api.name}")[
        "logGroups"
    ]

    assert properties["LoggingConfig"]["LogGroup"] == {"Ref": "APIHandlerLogGroup"}
    assert group["logGroupName"] == f"/aws/lambda/{api.name}" == api.resources["APIHandlerLogGroup"]
    assert group["retentionInDays"] == 30
    arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group['logGroupName']}:log-stream:x"
    # IAM's "*" matches any characters, as fnmatch's does.
    assert fnmatch.fnmatchcase(arn, logs["Resource"])


def test_function_runs_the_uploaded_package_with_the_stage_role(
    aws: Client, deployment: Deployment, package: Package
) -> None:
    configuration = function(aws, deployment)
    role = deployment.stacks["api"].resources["ApiHandlerRole"]
    digest = base64.b64encode(hashlib.sha256(package.zip.read_bytes()).digest()).decode()

    assert configuration["CodeSha256"] == digest
    assert configuration["Role"] == f"arn:aws:iam::{ACCOUNT}:role/{role}"
    # The runtime Chalice named after the Python that packaged it: this venv's, one of the
    # runtimes lambdamesh check accepts when the venv was made by `make install`.
    assert (configuration["Runtime"], configuration["Handler"]) == (
        interpreter_runtime(),
        "app.app",
    )


def test_function_sits_in_the_network_stacks_subnets_and_security_group(
    aws: Client, deployment: Deployment
) -> None:
    network = deployment.stacks["network"].outputs

    vpc = function(aws, deployment)["VpcConfig"]

    # moto reports a fixed VpcId of its own, not the subnets' VPC: only the ids given are kept.
    assert vpc["SubnetIds"] == network["SubnetIds"].split(",")
    assert vpc["SecurityGroupIds"] == network["SecurityGroupIds"].split(",")


def test_function_environment_names_the_stage_table_secret_and_allowed_networks(
    aws: Client, deployment: Deployment
) -> None:
    stacks = deployment.stacks

    variables = function(aws, deployment)["Environment"]["Variables"]

    assert variables["LAMBDAMESH_ALLOWED_NETWORKS"] == stacks["network"].outputs["AllowedNetworks"]
    assert variables["LAMBDAMESH_ALLOWED_NETWORKS"] == ",".join(TASK_SUBNETS)
    assert variables["LAMBDAMESH_TABLE"] == "lambdamesh-registry-prod"
    assert variables["LAMBDAMESH_TABLE"] == stacks["registry"].outputs["TableName"]
    assert variables["LAMBDAMESH_SIGNING_KEY_SECRET"] == "lambdamesh/prod/signing-key"
    assert (
        variables["LAMBDAMESH_SIGNING_KEY_SECRET"]
        == stacks["signing-key"].outputs["SigningKeySecretName"]
    )
    assert variables["LAMBDAMESH_ALLOW_PRIVATE"] == "true"
    # The dashboard on the function URL's own origin, as the parameter asked.
    assert variables["LAMBDAMESH_CONSOLE_DOMAIN"] == "function-url"


def test_endpoint_url_is_the_prod_stage_of_the_regional_api(
    aws: Client, deployment: Deployment
) -> None:
    rest_api_id = deployment.rest_api["id"]

    described = aws("apigateway").get_rest_api(restApiId=rest_api_id)

    assert described["endpointConfiguration"]["types"] == ["REGIONAL"]
    assert deployment.endpoint_url == (
        f"https://{rest_api_id}.execute-api.{REGION}.amazonaws.com/prod/"
    )
    # The template's RestAPIId output is the same reference.
    assert deployment.api_template["Outputs"]["RestAPIId"]["Value"] == {"Ref": "RestAPI"}


# The example service, fed the API stack's URL


def test_sidecar_gets_the_endpoint_url_without_its_trailing_slash(
    aws: Client, deployment: Deployment
) -> None:
    hello = deployment.stacks["hello"]
    url = deployment.endpoint_url.removesuffix("/")
    allowed = load_template(INFRA / "example-service.yaml")["Parameters"]["LambdaMeshUrl"]

    definition = aws("ecs").describe_task_definition(
        taskDefinition=hello.outputs["TaskDefinitionArn"]
    )["taskDefinition"]

    sidecar = {c["name"]: c for c in definition["containerDefinitions"]}["lambdamesh-sidecar"]
    environment = {e["name"]: e["value"] for e in sidecar["environment"]}
    # CloudFormation checks the pattern; moto does not.
    assert re.fullmatch(allowed["AllowedPattern"], url)
    assert environment["LAMBDAMESH_URL"] == url
    assert url.endswith(".amazonaws.com/prod")


# ECS's stop events, wired to the API stack's function and role by its outputs


def test_stop_events_invoke_the_api_stacks_function_for_the_rule_only(
    aws: Client, deployment: Deployment
) -> None:
    api, task_events = deployment.stacks["api"], deployment.stacks["task-events"]
    rule = task_events.resources["TaskStoppedRule"]

    (target,) = aws("events").list_targets_by_rule(Rule=rule)["Targets"]
    policy = json.loads(
        aws("lambda").get_policy(FunctionName=api.outputs["APIHandlerName"])["Policy"]
    )

    assert target["Arn"] == api.outputs["APIHandlerArn"]
    [events] = [s for s in policy["Statement"] if s["Principal"] != "*"]
    assert events["Principal"] == {"Service": "events.amazonaws.com"}
    assert events["Action"] == "lambda:InvokeFunction"
    assert events["Condition"] == {"ArnLike": {"AWS:SourceArn": task_events.outputs["RuleArn"]}}


def test_the_api_stacks_role_may_send_failed_stop_events_to_the_queue(
    aws: Client, deployment: Deployment
) -> None:
    role = deployment.stacks["api"].outputs["APIHandlerRoleName"]
    queue_arn = deployment.stacks["task-events"].outputs["DeadLetterQueueArn"]
    name = f"lambdamesh-{STAGE}-task-events-failures"

    document = aws("iam").get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]

    assert document["Statement"] == [
        {
            "Sid": "SendFailedTaskEvents",
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
        }
    ]


# The heartbeat lane: the function URL


@pytest.fixture(scope="module")
def function_url(aws: Client, deployment: Deployment) -> dict[str, Any]:
    """APIHandlerUrl as moto can make it: CreateFunctionUrlConfig with the template's properties."""
    properties = dict(deployment.api_template["Resources"]["APIHandlerUrl"]["Properties"])
    # SnapStart is off (the default): the unqualified function.
    assert properties.pop("TargetFunctionArn") == {
        "Fn::If": [
            "SnapStartOn",
            {"Ref": "APIHandlerAliaslive"},
            {"Fn::GetAtt": ["APIHandler", "Arn"]},
        ]
    }
    name = deployment.stacks["api"].resources["APIHandler"]
    created: dict[str, Any] = aws("lambda").create_function_url_config(
        FunctionName=name, **properties
    )
    return created


def test_motos_cloudformation_has_no_lambda_function_url() -> None:
    assert resource_class_from_type("AWS::Lambda::Url") is None


def test_function_url_permission_lets_anyone_invoke_the_url_and_nothing_else(
    aws: Client, deployment: Deployment
) -> None:
    name = deployment.stacks["api"].resources["APIHandler"]

    policy = json.loads(aws("lambda").get_policy(FunctionName=name)["Policy"])

    # moto keeps the template's properties as the statement and adds Effect, Resource and Sid;
    # AWS would write FunctionUrlAuthType as a Condition on lambda:FunctionUrlAuthType, and
    # InvokedViaFunctionUrl as one on lambda:InvokedViaFunctionUrl. (The only other statement
    # is the task events stack's, for EventBridge.)
    public = [statement for statement in policy["Statement"] if statement["Principal"] == "*"]
    statements = sorted(public, key=lambda statement: statement["Action"])
    for statement in statements:
        assert statement.pop("Sid")
    common = {
        "FunctionName": name,
        "Principal": "*",
        "Effect": "Allow",
        "Resource": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
    }
    assert statements == [
        {"Action": "lambda:InvokeFunction", "InvokedViaFunctionUrl": True, **common},
        {"Action": "lambda:InvokeFunctionUrl", "FunctionUrlAuthType": "NONE", **common},
    ]


def test_function_url_serves_the_function_without_iam_auth_or_cors(
    aws: Client, deployment: Deployment, function_url: dict[str, Any]
) -> None:
    name = deployment.stacks["api"].resources["APIHandler"]

    described = aws("lambda").get_function_url_config(FunctionName=name)

    assert described["FunctionUrl"] == function_url["FunctionUrl"]
    assert described["FunctionArn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    assert (described["AuthType"], described["InvokeMode"]) == ("NONE", "Buffered")
    assert "Cors" not in described


def test_function_url_is_a_lambdamesh_url_the_example_service_accepts(
    function_url: dict[str, Any],
) -> None:
    allowed = load_template(INFRA / "example-service.yaml")["Parameters"]["LambdaMeshUrl"]
    url = function_url["FunctionUrl"]

    # moto's URL has no trailing slash; AWS's FunctionUrl attribute ends with one, which the
    # docs strip (and the sidecar ignores).
    assert re.fullmatch(rf"https://[0-9a-f]{{32}}\.lambda-url\.{REGION}\.on\.aws", url)
    assert re.fullmatch(allowed["AllowedPattern"], url)
    assert re.fullmatch(allowed["AllowedPattern"], f"{url}/")
