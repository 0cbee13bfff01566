"""The built deployment.zip, alone, answering API Gateway and EventBridge events against moto.

The zip is unpacked and imported by a Python that sees only that directory and the standard
library (tests/deploy/lambda_zip_runner.py), with the prod stage's environment from the
packaged template. Its AWS calls go through a recording proxy in front of moto, and every call
is checked against the IAM policy the template gives the Lambda's role.

The stage's mesh CA is not stored during that run, as on a stage deployed before its operator
made one. A second run stores it and issues a certificate: the zip's ``cryptography`` is built
for the function's arm64, so that run imports the source tree's app.py on this machine's
Python, with the same environment, role and recording.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import secrets
import shutil
import string
import subprocess
import sys
import sysconfig
import threading
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from chalicelib.auth import issue
from chalicelib.keystore import PERMANENT
from lambdamesh.finishing import finish
from lambdamesh.meshca import new_command
from lambdamesh.taskevent import stopped_event
from tests.deploy import packaged
from tests.deploy.infra_fixtures import load_template
from tests.deploy.packaged import REGION, Package

RUNNER = Path(__file__).with_name("lambda_zip_runner.py")
STAGE = "prod"
# The account the zip's calls land in: moto keeps it apart from every other test's resources.
ACCOUNT = "111122223333"
API_HOST = "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
CALLER_IP = "198.51.100.7"
SERVICE = "orders"
INSTANCE = "task-1"
# An instance an ECS task registers, and the task, whose stop event removes it.
TASK_INSTANCE = "task-2"
TASK_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/mesh/0123456789abcdef0123456789abcdef"
# Statements the Lambda service uses with the function's role, not the function's code: no
# recording of the code's calls can show them in use.
USED_BY_THE_LAMBDA_SERVICE = {
    "Logs": "Lambda writes the function's output to CloudWatch Logs with the role",
    "VpcNetworking": "Lambda creates and deletes the function's ENIs in the VPC with the role",
}
# X-Amz-Target prefixes of the JSON protocols the app may speak, and their IAM prefixes.
TARGETS = {"DynamoDB_20120810": "dynamodb", "secretsmanager": "secretsmanager", "AmazonSSM": "ssm"}


# --- a recording proxy in front of moto -------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingProxy:
    """Forwards every request to moto and keeps a copy: exactly what the zip sent."""

    target: str
    calls: list[Call] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        proxy = self

        class Forward(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.calls.append(Call(self.command, self.path, dict(self.headers), body))
                status, headers, answer = proxy.send(self.command, self.path, self.headers, body)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def send(
        self, method: str, path: str, headers: Any, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        target = urlsplit(self.target)
        connection = http.client.HTTPConnection(target.netloc, timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() != "connection"}
            connection.request(method, path, body, headers=sent)
            answer = connection.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            connection.close()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# --- an upstream service on loopback ------------------------------------------------------


class Echo(BaseHTTPRequestHandler):
    """Answers with what it was sent, so the test sees what the gateway forwarded."""

    def do_GET(self) -> None:
        body = json.dumps(
            {"method": self.command, "path": self.path, "headers": dict(self.headers)}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Upstream", "orders-v1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


# --- API Gateway REST proxy events --------------------------------------------------------


def rest_event(
    method: str,
    resource: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> dict[str, Any]:
    """An event as API Gateway's Lambda proxy integration sends it to a REST API whose
    binary media types are */*: every body arrives base64-encoded."""
    sent = {
        "Accept": "application/json",
        "Host": API_HOST,
        "User-Agent": "lambdamesh-sidecar/0.1",
        "X-Amzn-Trace-Id": "Root=1-65a0b0c0-0123456789abcdef01234567",
        "X-Forwarded-For": CALLER_IP,
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
        **(headers or {}),
    }
    raw = None if body is None else json.dumps(body).encode()
    request_id = str(uuid.uuid4())
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": sent,
        "multiValueHeaders": {name: [value] for name, value in sent.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": params or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": "Rk2Y4Fq1joEF8Aw=",
            "requestTime": "01/Jan/2024:12:00:00 +0000",
            "path": f"/{STAGE}{path}",
            "accountId": ACCOUNT,
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": API_HOST.split(".")[0],
            "requestTimeEpoch": 1704110400000,
            "requestId": request_id,
            "identity": {"sourceIp": CALLER_IP, "userAgent": sent["User-Agent"]},
            "domainName": API_HOST,
            "apiId": API_HOST.split(".")[0],
        },
        "body": None if raw is None else base64.b64encode(raw).decode(),
        "isBase64Encoded": raw is not None,
    }


INSTANCES = "/registry/services/{service}/instances"
ONE_INSTANCE = INSTANCES + "/{instance_id}"
HEARTBEAT = ONE_INSTANCE + "/heartbeat"
PROXY = "/api/v1/{service}/{version}/{proxy+}"
CERTIFICATE = "/registry/services/{service}/certificate"


def certificate_request(token: str) -> dict[str, Any]:
    return rest_event(
        "POST",
        CERTIFICATE,
        f"/registry/services/{SERVICE}/certificate",
        params={"service": SERVICE},
        headers={"Authorization": f"Bearer {token}"},
    )


def conversation(token: str, port: int) -> dict[str, dict[str, Any]]:
    """The calls a sidecar and a client make, in order, each named."""
    auth = {"Authorization": f"Bearer {token}"}
    instance_path = f"/registry/services/{SERVICE}/instances/{INSTANCE}"
    ids = {"service": SERVICE, "instance_id": INSTANCE}
    return {
        "health": rest_event("GET", "/health", "/health"),
        "anonymous list": rest_event(
            "GET", INSTANCES, f"/registry/services/{SERVICE}/instances", params={"service": SERVICE}
        ),
        "register": rest_event(
            "PUT",
            ONE_INSTANCE,
            instance_path,
            params=ids,
            headers={**auth, "Content-Type": "application/json"},
            body={"version": "v1", "host": "127.0.0.1", "port": port, "lease_seconds": 60},
        ),
        # The stage names a mesh CA its operator has not stored yet.
        "certificate without a mesh CA": certificate_request(token),
        "heartbeat": rest_event(
            "PUT",
            HEARTBEAT,
            f"{instance_path}/heartbeat",
            params=ids,
            headers={**auth, "Content-Type": "application/json"},
            body={"status": "UP"},
        ),
        "list": rest_event(
            "GET",
            INSTANCES,
            f"/registry/services/{SERVICE}/instances",
            params={"service": SERVICE},
            query={"version": "v1"},
            headers=auth,
        ),
        "services": rest_event("GET", "/registry/services", "/registry/services", headers=auth),
        "proxy": rest_event(
            "GET",
            PROXY,
            f"/api/v1/{SERVICE}/v1/items/42",
            params={"service": SERVICE, "version": "v1", "proxy": "items/42"},
            query={"color": "red"},
            headers={"Accept": "*/*"},
        ),
        "deregister": rest_event("DELETE", ONE_INSTANCE, instance_path, params=ids, headers=auth),
        "list after deregister": rest_event(
            "GET",
            INSTANCES,
            f"/registry/services/{SERVICE}/instances",
            params={"service": SERVICE},
            headers=auth,
        ),
        # The service now has nothing stored: listing services drops it from the catalog.
        "services after deregister": rest_event(
            "GET", "/registry/services", "/registry/services", headers=auth
        ),
        "register by a task": rest_event(
            "PUT",
            ONE_INSTANCE,
            f"/registry/services/{SERVICE}/instances/{TASK_INSTANCE}",
            params={"service": SERVICE, "instance_id": TASK_INSTANCE},
            headers={**auth, "Content-Type": "application/json"},
            body={"version": "v1", "host": "127.0.0.1", "port": port, "task_arn": TASK_ARN},
        ),
        "task stopped": stopped_event(TASK_ARN, last_status="RUNNING"),
        "list after the task stopped": rest_event(
            "GET",
            INSTANCES,
            f"/registry/services/{SERVICE}/instances",
            params={"service": SERVICE},
            headers=auth,
        ),
    }


# --- the run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    answers: dict[str, dict[str, Any]]
    isolation: dict[str, Any]
    module_files: list[str]
    zip_dir: Path
    calls: list[Call]
    secret_arn: str
    statements: list[dict[str, Any]]
    token: str

    def status(self, name: str) -> int:
        status: int = self.answers[name]["statusCode"]
        return status

    def body(self, name: str) -> bytes:
        return decoded(self.answers[name])

    def json(self, name: str) -> Any:
        return json.loads(self.body(name))


def decoded(answer: dict[str, Any]) -> bytes:
    """A proxy integration answer's body: base64 when the app marked it binary."""
    raw = answer.get("body") or ""
    return base64.b64decode(raw) if answer.get("isBase64Encoded") else raw.encode()


def assumed_role(moto_endpoint: str) -> dict[str, str]:
    """Credentials in an account of the zip's own, as Lambda hands a role's credentials."""
    sts = boto3.client("sts", endpoint_url=moto_endpoint, region_name=REGION)
    role = f"arn:aws:iam::{ACCOUNT}:role/lambdamesh-{STAGE}-api-ApiHandlerRole"
    credentials = sts.assume_role(RoleArn=role, RoleSessionName="lambdamesh-prod")["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["SessionToken"],
    }


def provision(moto_endpoint: str, credentials: dict[str, str], table: str, secret: str) -> Any:
    """What the registry and signing-key stacks would have made (the table with its index
    by-task, as infra/registry-table.yaml declares it); returns the secret."""
    [index] = registry_template_indexes()
    session = boto3.Session(
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials["AWS_SESSION_TOKEN"],
        region_name=REGION,
    )
    session.client("dynamodb", endpoint_url=moto_endpoint).create_table(
        TableName=table,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "task_arn", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    # Like the signing-key stack's GenerateSecretString: 64 characters, no punctuation.
    key = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(64))
    created = session.client("secretsmanager", endpoint_url=moto_endpoint).create_secret(
        Name=secret, SecretString=key
    )
    return key, created["ARN"]


def registry_template_indexes() -> list[dict[str, Any]]:
    template = load_template(packaged.ROOT / "infra" / "registry-table.yaml")
    indexes: list[dict[str, Any]] = template["Resources"]["RegistryTable"]["Properties"][
        "GlobalSecondaryIndexes"
    ]
    return indexes


def lambda_environment(
    package: Package, zip_dir: Path, endpoint: str, credentials: dict[str, str], home: Path
) -> dict[str, str]:
    """The function's variables from the template and what the Lambda runtime itself sets."""
    return {
        **package.function_environment(),
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_LAMBDA_FUNCTION_NAME": f"lambdamesh-{STAGE}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}",
        "LAMBDA_TASK_ROOT": str(zip_dir),
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "TZ": ":UTC",
        **credentials,
    }


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Package:
    return packaged.build(STAGE, tmp_path_factory)


@pytest.fixture(scope="module")
def zip_dir(package: Package, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deployment.zip finished by `lambdamesh finish-package`, as the docs deploy it, and
    unpacked alone, as Lambda unpacks it into /var/task."""
    work = tmp_path_factory.mktemp("lambda-zip")
    out = work / "out"
    shutil.copytree(package.out, out)
    finish(out)
    task = work / "task"
    with zipfile.ZipFile(out / "deployment.zip") as archive:
        archive.extractall(task)
    return task


# Loopback allowed, and only loopback: the test's upstream listens on 127.0.0.1.
LOOPBACK_ONLY = {
    "LAMBDAMESH_ALLOW_LOOPBACK": "true",
    "LAMBDAMESH_ALLOWED_NETWORKS": "127.0.0.0/8",
    "LAMBDAMESH_EDGE_DEFAULT": "open",
}


def invoke(
    zip_dir: Path,
    events: dict[str, dict[str, Any]],
    environment: dict[str, str],
    work: Path,
    isolated: bool = True,
) -> dict[str, Any]:
    """Hand ``events`` to the handler in ``zip_dir`` in one fresh interpreter; its results
    file. ``isolated``: the standard library and that directory only, as on Lambda."""
    (work / "events.json").write_text(json.dumps(list(events.values())))
    isolation = ["-I", "-S"] if isolated else []
    result = subprocess.run(
        [sys.executable, *isolation, str(RUNNER), str(zip_dir), "events.json", "results.json"],
        cwd=work,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(f"the zip failed to run:\n{result.stderr[-4000:]}")
    results: dict[str, Any] = json.loads((work / "results.json").read_text())
    results["answers"] = dict(zip(events, results["answers"], strict=True))
    return results


@pytest.fixture(scope="module")
def run(
    package: Package,
    zip_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    moto_endpoint: str,
    upstream: int,
) -> Iterator[Run]:
    environment = package.function_environment()
    credentials = assumed_role(moto_endpoint)
    key, secret_arn = provision(
        moto_endpoint,
        credentials,
        environment["LAMBDAMESH_TABLE"],
        environment["LAMBDAMESH_SIGNING_KEY_SECRET"],
    )
    token = issue(key.encode(), service=SERVICE)
    events = conversation(token, upstream)
    work = tmp_path_factory.mktemp("lambda-zip-run")
    proxy = RecordingProxy(moto_endpoint)
    endpoint = proxy.start()
    try:
        env = lambda_environment(package, zip_dir, endpoint, credentials, work) | LOOPBACK_ONLY
        results = invoke(zip_dir, events, env, work)
    finally:
        proxy.stop()
    yield Run(
        answers=results["answers"],
        isolation=results["isolation"],
        module_files=results["module_files"],
        zip_dir=zip_dir,
        calls=list(proxy.calls),
        secret_arn=secret_arn,
        statements=role_statements(package),
        token=token,
    )


def role_statements(package: Package) -> list[dict[str, Any]]:
    [role] = package.resources("AWS::IAM::Role").values()
    statements: list[dict[str, Any]] = role["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]
    return statements


@dataclass(frozen=True)
class Issuing:
    answer: dict[str, Any]
    calls: list[Call]
    mesh_ca: str
    mesh_ca_arn: str


@pytest.fixture(scope="module")
def issuing(
    run: Run, package: Package, tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str
) -> Iterator[Issuing]:
    """After the zip's run, the operator stores the mesh CA as docs/deploy.md says
    (`lambdamesh mesh-ca new` into the secret the stage names), and a service asks for its
    certificate."""
    made = io.StringIO()
    assert new_command(365, None, made) == 0
    credentials = assumed_role(moto_endpoint)
    secrets_manager = boto3.client(
        "secretsmanager",
        endpoint_url=moto_endpoint,
        region_name=REGION,
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials["AWS_SESSION_TOKEN"],
    )
    name = package.function_environment()["LAMBDAMESH_MESH_CA_SECRET"]
    arn = secrets_manager.create_secret(Name=name, SecretString=made.getvalue())["ARN"]
    work = tmp_path_factory.mktemp("certificate-run")
    proxy = RecordingProxy(moto_endpoint)
    try:
        env = lambda_environment(package, packaged.ROOT, proxy.start(), credentials, work)
        events = {"certificate": certificate_request(run.token)}
        answers = invoke(packaged.ROOT, events, env | LOOPBACK_ONLY, work, isolated=False)
    finally:
        proxy.stop()
    yield Issuing(answers["answers"]["certificate"], list(proxy.calls), made.getvalue(), arn)


# --- what the zip answered ----------------------------------------------------------------


def test_the_zip_runs_without_site_packages_on_its_own_bundled_chalice_runtime(run: Run) -> None:
    facts = run.isolation

    assert facts["site_imported"] is False
    assert not [p for p in facts["path"] if "site-packages" in p or "dist-packages" in p]
    assert facts["chalice"] == {"file": str(run.zip_dir / "chalice" / "__init__.py")}
    for absent in ("moto", "pytest", "lambdamesh"):
        assert facts[absent] == {"error": "ModuleNotFoundError"}


def test_every_module_the_zip_imported_came_from_the_zip_or_the_standard_library(
    run: Run,
) -> None:
    stdlib = (sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib"))
    allowed = (str(run.zip_dir) + "/", *stdlib, str(RUNNER))

    assert [f for f in run.module_files if not f.startswith(allowed)] == []
    assert str(run.zip_dir / "botocore" / "__init__.py") in run.module_files
    assert str(run.zip_dir / "pynamodb" / "__init__.py") in run.module_files


def test_health_answers_ok_once_the_table_answers(run: Run) -> None:
    assert run.status("health") == 200
    assert run.json("health") == {"status": "ok"}


def test_a_registry_read_without_a_token_is_refused(run: Run) -> None:
    assert run.status("anonymous list") == 401
    assert run.json("anonymous list")["error"]["code"] == "unauthorized"


def test_a_service_token_registers_its_instance(run: Run, upstream: int) -> None:
    stored = run.json("register")

    assert run.status("register") == 201
    assert {k: stored[k] for k in ("service", "instance_id", "version", "host", "port")} == {
        "service": SERVICE,
        "instance_id": INSTANCE,
        "version": "v1",
        "host": "127.0.0.1",
        "port": upstream,
    }
    assert stored["status"] == "UP"
    assert stored["live"] is True
    assert stored["lease_seconds"] == 60
    assert abs(stored["expires_at"] - stored["registered_at"] - 60) < 0.01


def test_a_heartbeat_renews_the_lease(run: Run) -> None:
    renewed = run.json("heartbeat")

    assert run.status("heartbeat") == 200
    assert renewed["instance_id"] == INSTANCE
    assert renewed["live"] is True
    assert renewed["updated_at"] >= run.json("register")["updated_at"]


def test_the_instance_is_listed_for_its_version(run: Run, upstream: int) -> None:
    listed = run.json("list")

    assert run.status("list") == 200
    assert listed["service"] == SERVICE
    assert [(i["instance_id"], i["port"], i["live"]) for i in listed["instances"]] == [
        (INSTANCE, upstream, True)
    ]


def test_the_service_is_listed_with_its_live_instance(run: Run) -> None:
    assert run.status("services") == 200
    assert run.json("services") == {
        "services": [
            {
                "service": SERVICE,
                "live": 1,
                "total": 1,
                "versions": {"v1": {"live": 1, "total": 1}},
                # No exposure document: the stage's default, open in this run.
                "exposure": {
                    "declared": False,
                    "exposed": True,
                    "versions": None,
                    "auth": ["none"],
                },
            }
        ]
    }


def test_the_gateway_forwards_to_the_registered_instance(run: Run) -> None:
    answer = run.answers["proxy"]
    seen = run.json("proxy")

    assert run.status("proxy") == 200
    assert answer["headers"]["X-Upstream"] == "orders-v1"
    assert seen["method"] == "GET"
    assert seen["path"] == "/items/42?color=red"
    assert seen["headers"]["X-Forwarded-For"].endswith(CALLER_IP)


def test_deregistering_removes_the_instance(run: Run) -> None:
    assert run.status("deregister") == 204
    assert run.body("deregister") == b""
    assert run.status("list after deregister") == 200
    assert run.json("list after deregister")["instances"] == []
    assert run.status("services after deregister") == 200
    assert run.json("services after deregister") == {"services": []}


def test_a_stop_event_removes_the_instances_its_task_registered(run: Run) -> None:
    removed = run.answers["task stopped"]

    assert run.status("register by a task") == 201
    assert run.json("register by a task")["task_arn"] == TASK_ARN
    assert removed["outcome"] == "removed"
    assert removed["removed"] == [{"service": SERVICE, "instance_id": TASK_INSTANCE}]
    assert run.json("list after the task stopped")["instances"] == []


def test_until_the_mesh_ca_is_stored_only_certificates_are_refused(run: Run) -> None:
    refused = run.json("certificate without a mesh CA")["error"]

    assert run.status("certificate without a mesh CA") == 500
    assert (refused["code"], refused["message"]) == (
        "config_error",
        "the mesh CA is not available: server misconfiguration",
    )
    # The calls after it were answered as ever.
    assert [run.status(name) for name in ("heartbeat", "list", "proxy", "deregister")] == [
        200,
        200,
        200,
        204,
    ]


def test_a_certificate_is_issued_from_the_mesh_ca_stored_in_the_stage_secret(
    issuing: Issuing,
) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    issued = json.loads(decoded(issuing.answer))
    certificate = x509.load_pem_x509_certificate(issued["certificate"].encode())
    [authority] = x509.load_pem_x509_certificates(issued["trust_bundle"].encode())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value

    assert issuing.answer["statusCode"] == 200
    assert issued["identity"] == f"spiffe://lambdamesh/{STAGE}/{SERVICE}"
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [issued["identity"]]
    certificate.verify_directly_issued_by(authority)
    # The CA the operator stored: its certificate, never its key, in the answer.
    assert authority.public_bytes(Encoding.PEM).decode() in issuing.mesh_ca
    assert "PRIVATE KEY" not in issued["trust_bundle"]


def test_the_zip_as_packaged_without_allowed_networks_routes_nothing_and_says_why(
    package: Package, zip_dir: Path, tmp_path: Path, moto_endpoint: str
) -> None:
    # The prod stage allows private upstreams; its networks come only from the merge template.
    assert "LAMBDAMESH_ALLOWED_NETWORKS" not in package.function_environment()
    events = {
        "health": rest_event("GET", "/health", "/health"),
        "proxy": rest_event(
            "GET",
            PROXY,
            f"/api/v1/{SERVICE}/v1/items/42",
            params={"service": SERVICE, "version": "v1", "proxy": "items/42"},
        ),
    }
    proxy = RecordingProxy(moto_endpoint)
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    try:
        environment = lambda_environment(package, zip_dir, proxy.start(), credentials, tmp_path)
        answers = invoke(zip_dir, events, environment, tmp_path)["answers"]
    finally:
        proxy.stop()
    health = json.loads(decoded(answers["health"]))
    refused = answers["proxy"]

    assert answers["health"]["statusCode"] == 503
    assert health["status"] == "misconfigured"
    assert "LAMBDAMESH_ALLOWED_NETWORKS" in health["reason"]
    assert refused["statusCode"] == 500
    assert json.loads(decoded(refused))["error"]["code"] == "gateway_misconfigured"
    # The key is read while the function initialises; DynamoDB is never asked.
    targets = [call.headers.get("X-Amz-Target") for call in proxy.calls]
    assert targets == ["secretsmanager.GetSecretValue"]


# --- what the zip asked of AWS ------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    action: str
    resource: str


def credential_scope(call: Call) -> tuple[str, str]:
    """(region, service) from the SigV4 Authorization header."""
    found = re.search(
        r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request", call.headers["Authorization"]
    )
    assert found, f"unsigned call: {call.method} {call.path}"
    return found.group(1), found.group(2)


def iam_request(call: Call, secret_arns: dict[str, str]) -> Request:
    """The IAM action and resource ARN a recorded call is authorized against."""
    region, service = credential_scope(call)
    target = call.headers.get("X-Amz-Target", "")
    api, _, operation = target.partition(".")
    if TARGETS.get(api) != service:
        raise AssertionError(f"a call this test cannot map: {call.method} {call.path} {target}")
    body = json.loads(call.body or b"{}")
    prefix = TARGETS[api]
    if prefix == "dynamodb":
        resource = f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{body['TableName']}"
        # A Query of an index is authorized against the index's ARN.
        if "IndexName" in body:
            resource += f"/index/{body['IndexName']}"
    elif prefix == "secretsmanager":
        # IAM matches the secret's full ARN, random suffix included, whatever the call named.
        # A secret that does not exist has none: its name's ARN, without the suffix, stands in.
        secret = body["SecretId"]
        resource = secret_arns.get(secret) or (
            secret if secret.startswith("arn:") else missing_secret_arn(region, secret)
        )
    else:
        resource = f"arn:aws:ssm:{region}:{ACCOUNT}:parameter{body['Name']}"
    return Request(f"{prefix}:{operation}", resource)


def iam_pattern(pattern: str) -> re.Pattern[str]:
    """IAM's wildcards: * is any run of characters, ? exactly one."""
    return re.compile(".*".join(".".join(map(re.escape, p.split("?"))) for p in pattern.split("*")))


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def allows(statement: dict[str, Any], request: Request) -> bool:
    return (
        statement["Effect"] == "Allow"
        and any(iam_pattern(a).fullmatch(request.action) for a in as_list(statement["Action"]))
        and any(iam_pattern(r).fullmatch(request.resource) for r in as_list(statement["Resource"]))
    )


def missing_secret_arn(region: str, name: str) -> str:
    return f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{name}"


def recorded(calls: list[Call], *secret_arns: str) -> list[Request]:
    """The IAM requests of ``calls``, which named the secrets of ``secret_arns`` by name or
    by ARN."""
    arns = {arn.rsplit(":", 1)[1].rsplit("-", 1)[0]: arn for arn in secret_arns}
    arns |= {arn: arn for arn in secret_arns}
    return [iam_request(call, arns) for call in calls]


def mesh_ca_before_it_is_stored() -> Request:
    name = f"lambdamesh/{STAGE}/mesh-ca"
    return Request("secretsmanager:GetSecretValue", missing_secret_arn(REGION, name))


def test_the_zip_made_only_the_aws_calls_the_registry_and_its_secrets_need(
    run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = recorded(run.calls, run.secret_arn)
    with capsys.disabled():
        print("\nAWS calls made by deployment.zip, in order:")
        for request in requests:
            print(f"  {request.action} {request.resource}")

    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/lambdamesh-registry-{STAGE}"
    mesh_ca = mesh_ca_before_it_is_stored()
    assert {r.resource for r in requests} == {
        table,
        f"{table}/index/by-task",
        run.secret_arn,
        mesh_ca.resource,
    }
    # The stop event's lookup is the index's only use.
    assert [r.action for r in requests if r.resource.endswith("/index/by-task")] == [
        "dynamodb:Query"
    ]
    # The key is read once and kept: the warm invocations after the first did not ask again.
    assert [r.action for r in requests if r.resource == run.secret_arn] == [
        "secretsmanager:GetSecretValue"
    ]
    # The mesh CA only by the certificate route, once.
    assert [r for r in requests if r.resource == mesh_ca.resource] == [mesh_ca]


def test_the_lambda_role_allows_every_call_the_zip_made_but_the_read_of_a_missing_secret(
    run: Run,
) -> None:
    requests = recorded(run.calls, run.secret_arn)

    refused = [r for r in requests if not any(allows(s, r) for s in run.statements)]

    # The grant names the mesh CA's ARN with its six random characters, which a secret not
    # yet stored has not: AWS may answer AccessDeniedException where moto answers
    # ResourceNotFoundException. The key store reads both as the same misconfiguration, so
    # the function answers as test_until_the_mesh_ca_is_stored_only_certificates_are_refused
    # shows.
    assert refused == [mesh_ca_before_it_is_stored()]
    assert {"AccessDeniedException", "ResourceNotFoundException"} <= PERMANENT


def test_the_lambda_role_allows_every_call_the_certificate_route_made(
    run: Run, issuing: Issuing
) -> None:
    requests = recorded(issuing.calls, run.secret_arn, issuing.mesh_ca_arn)

    refused = [r for r in requests if not any(allows(s, r) for s in run.statements)]

    assert refused == []
    assert Request("secretsmanager:GetSecretValue", issuing.mesh_ca_arn) in requests


def test_the_lambda_role_grants_nothing_the_function_did_not_use(
    run: Run, issuing: Issuing
) -> None:
    requests = [
        *recorded(run.calls, run.secret_arn),
        *recorded(issuing.calls, run.secret_arn, issuing.mesh_ca_arn),
    ]
    by_sid = {s["Sid"]: s for s in run.statements}
    assert set(USED_BY_THE_LAMBDA_SERVICE) <= set(by_sid)

    unused = [
        (sid, action)
        for sid, statement in by_sid.items()
        if sid not in USED_BY_THE_LAMBDA_SERVICE
        for action in as_list(statement["Action"])
        if not any(r.action == action and allows(statement, r) for r in requests)
    ]

    assert unused == []
