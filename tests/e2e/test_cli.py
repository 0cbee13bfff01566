"""The `lambdamesh` command as a user runs it: demo, signals, tokens, bootstrap, help."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import boto3
import pytest

from chalicelib.auth import verify
from tests.e2e.processes import ROOT, eventually, http, spawn
from tests.helpers import SIGNING_KEY


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lambdamesh.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_the_demo_serves_its_printed_curl_lines_and_stops_cleanly(stop_signal: int) -> None:
    demo = spawn("demo", ["-m", "lambdamesh.cli", "dev", "--demo", "--port", "0"])
    try:
        demo.wait_for_line(r"Press Ctrl-C")
        curls = {
            url_of(line).rsplit("/", 1)[-1]: line.strip()
            for line in demo.lines
            if line.strip().startswith("curl ")
        }
        # Run at once, as a user would paste them: the demo printed them once ready.
        answers = {key: run_curl(line) for key, line in curls.items()}
        children = child_pids(demo.popen.pid)
    finally:
        demo.signal(stop_signal)
        code = demo.popen.wait(30)

    assert code == 0, demo.output
    assert "stopped" in demo.output
    assert json.loads(answers["health"]) == {"status": "ok"}
    services = {s["service"]: s["live"] for s in json.loads(answers["services"])["services"]}
    assert services == {"hello": 2, "echo": 2}
    assert len(json.loads(answers["instances"])["instances"]) == 2
    greeted = json.loads(answers["world?lang=en"])
    assert greeted.get("instance") in {"hello-0", "hello-1"}, (greeted, demo.output)
    assert answers["echo"] == "ping"
    assert "404" in answers[""].splitlines()[0] and "service_not_found" in answers[""]
    # hello, reached through the gateway, calls echo through its sidecar's outbound port;
    # and that port answers the same call made directly, as the hello app makes it.
    called = json.loads(answers["7"])
    assert (called["service"], called["via"], called["status"]) == (
        "hello",
        "sidecar outbound port",
        200,
    )
    assert (called["answer"]["service"], called["answer"]["path"]) == ("echo", "/items/7")
    assert json.loads(answers["8"])["service"] == "echo"
    assert len(children) == 8
    eventually(lambda: not any(alive(pid) for pid in children), 10, "demo children left over")


def url_of(line: str) -> str:
    found = re.search(r"'(http://[^']+)'", line)
    assert found is not None, line
    return found.group(1)


def run_curl(line: str) -> str:
    """Runs a printed curl line in a shell, exactly as printed."""
    assert shutil.which("curl"), "the demo prints curl lines; curl is needed to try them"
    result = subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, timeout=30, check=True
    )
    return result.stdout


def child_pids(parent: int) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-P", str(parent)], capture_output=True, text=True, check=False
    ).stdout
    return [int(pid) for pid in found.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_children_stop_when_the_dev_process_is_killed_outright() -> None:
    demo = spawn("demo", ["-m", "lambdamesh.cli", "dev", "--demo", "--port", "0"])
    demo.wait_for_line(r"Press Ctrl-C")
    children = child_pids(demo.popen.pid)
    assert len(children) == 8

    demo.signal(signal.SIGKILL)
    demo.popen.wait(10)

    eventually(lambda: not any(alive(pid) for pid in children), 15, "orphans left running")


def test_token_prints_a_token_for_a_service_and_for_admin() -> None:
    env = {"LAMBDAMESH_SIGNING_KEY": SIGNING_KEY}
    service = run_cli("token", "orders", env=env)
    admin = run_cli("token", "--admin", env=env)

    assert service.returncode == 0 and admin.returncode == 0
    assert verify(SIGNING_KEY.encode(), service.stdout.strip()).scope == "service:orders"
    assert verify(SIGNING_KEY.encode(), admin.stdout.strip()).is_admin


def test_token_without_a_signing_key_fails_with_one_clear_line() -> None:
    result = run_cli("token", "orders", env={"LAMBDAMESH_SIGNING_KEY": ""})

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0
    assert "LAMBDAMESH_SIGNING_KEY" in result.stderr


def test_token_refuses_an_invalid_service_name() -> None:
    result = run_cli("token", "Not_Valid", env={"LAMBDAMESH_SIGNING_KEY": SIGNING_KEY})

    assert result.returncode == 2
    assert "service" in result.stderr


def test_bootstrap_creates_the_table_once(dynamodb_endpoint: str) -> None:
    env = {"AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint, "LAMBDAMESH_TABLE": "bootstrapped"}
    first = run_cli("bootstrap", env=env)
    second = run_cli("bootstrap", env=env)

    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    assert "already exists" in second.stdout
    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    ttl = client.describe_time_to_live(TableName="bootstrapped")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    assert "by-task" not in second.stderr


def test_bootstrap_warns_of_a_table_made_before_the_task_index(dynamodb_endpoint: str) -> None:
    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    keys = [("pk", "HASH"), ("sk", "RANGE")]
    client.create_table(
        TableName="before-the-index",
        KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys],
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in keys],
        BillingMode="PAY_PER_REQUEST",
    )
    env = {"AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint, "LAMBDAMESH_TABLE": "before-the-index"}

    result = run_cli("bootstrap", env=env)

    assert result.returncode == 0, result.stderr
    assert "already exists" in result.stdout
    assert "no by-task index" in result.stderr
    assert "aws dynamodb update-table --table-name before-the-index" in result.stderr


@pytest.mark.parametrize("command", [[], ["dev"], ["token"], ["bootstrap"]])
def test_help_describes_each_command(command: list[str]) -> None:
    result = run_cli(*command, "--help")

    assert result.returncode == 0
    assert "usage: lambdamesh" in result.stdout


def test_dev_uses_a_named_dynamodb_endpoint(dynamodb_endpoint: str) -> None:
    dev = spawn(
        "dev-external",
        ["-m", "lambdamesh.cli", "dev", "--port", "0", "--dynamodb-endpoint", dynamodb_endpoint],
        env={"LAMBDAMESH_TABLE": "external-table"},
    )
    try:
        line = dev.wait_for_line(r"ready on (http://\S+) \(DynamoDB at (\S+)\)")
        assert line.group(2) == dynamodb_endpoint
        assert http("GET", line.group(1) + "/health").status == 200
    finally:
        assert dev.stop() == 0
    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    assert "external-table" in client.list_tables()["TableNames"]


def test_dev_on_a_busy_port_fails_with_one_clear_line() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("dev", "--port", str(port))

    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_on_a_busy_console_port_names_that_port() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("dev", "--port", "0", "--console-port", str(port))

    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--console-port" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_with_an_unreachable_dynamodb_fails_with_one_clear_line() -> None:
    result = run_cli("dev", "--port", "0", "--dynamodb-endpoint", "http://127.0.0.1:9")

    assert result.returncode == 2
    assert "cannot create table" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_refuses_to_listen_beyond_loopback_with_the_published_key() -> None:
    result = run_cli("dev", "--host", "0.0.0.0", "--port", "0", env={"LAMBDAMESH_SIGNING_KEY": ""})

    assert result.returncode == 2
    assert "LAMBDAMESH_SIGNING_KEY" in result.stderr
    assert "Traceback" not in result.stderr
