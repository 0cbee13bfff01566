"""`lambdamesh task-event` against Lambda's Invoke API as `lambdamesh dev` serves it
(``lambdamesh.invocations``) on a loopback listener, in front of the app and moto."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import app as application
from lambdamesh import cli
from lambdamesh.events import HttpRequest
from lambdamesh.invocations import Invocations
from lambdamesh.invokers import Answer
from lambdamesh.localgateway import LocalGatewayServer
from lambdamesh.projectconfig import patched_environ
from lambdamesh.testclient import TestClient as Client
from tests.functional.conftest import body_json, serve_in_background
from tests.helpers import admin_token, bearer
from tests.samples import FOLDER, STOPPED, load

TASK = load(STOPPED)["detail"]["taskArn"]
OTHER_TASK = (
    "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/fedcba9876543210fedcba9876543210"
)

Serve = Callable[[Callable[[HttpRequest], Answer]], str]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Loopback listeners answering with ``invoke``, stopped after the test; each one's URL."""
    started: list[LocalGatewayServer] = []

    def start(invoke: Callable[[HttpRequest], Answer]) -> str:
        server = LocalGatewayServer(("127.0.0.1", 0), invoke)
        serve_in_background(server)
        started.append(server)
        return server.url

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def no_gateway(request: HttpRequest) -> Answer:
    return Answer(404, [("Content-Type", "application/json")], b'{"message": "Not Found"}')


@pytest.fixture
def dev(serve: Serve) -> str:
    """The app's Invoke API, as `lambdamesh dev` adds it to its gateway port."""
    return serve(Invocations(application.app, no_gateway, timeout_seconds=30.0))


def register(client: Client, instance_id: str, task_arn: str) -> None:
    response = client.http.put(
        f"/registry/services/orders/instances/{instance_id}",
        headers={"Content-Type": "application/json", **bearer(admin_token())},
        body=json.dumps({"version": "v1", "host": "127.0.0.1", "port": 8080, "task_arn": task_arn}),
    )
    assert response.status_code == 201


def listed(client: Client) -> list[str]:
    response = client.http.get("/registry/services/orders/instances", headers=bearer(admin_token()))
    return sorted(i["instance_id"] for i in body_json(response)["instances"])


def said(capsys: pytest.CaptureFixture[str]) -> str:
    """The command's own message on stderr (the listeners log their requests there too)."""
    [line] = [x for x in capsys.readouterr().err.splitlines() if x.startswith("lambdamesh: ")]
    return line


def run(environment: dict[str, str], *args: str) -> int:
    with patched_environ(environment):
        return cli.main(["task-event", *args])


def test_stopped_removes_the_tasks_instances_and_prints_which(
    client: Client, environment: dict[str, str], dev: str, capsys: pytest.CaptureFixture[str]
) -> None:
    register(client, "a", TASK)
    register(client, "b", OTHER_TASK)
    capsys.readouterr()

    assert run(environment, "--stopped", TASK, "--url", dev) == 0

    answer = json.loads(capsys.readouterr().out)
    assert answer["outcome"] == "removed"
    assert answer["removed"] == [{"service": "orders", "instance_id": "a"}]
    assert listed(client) == ["b"]


def test_an_event_file_is_handed_on_as_it_is(
    client: Client, environment: dict[str, str], dev: str, capsys: pytest.CaptureFixture[str]
) -> None:
    register(client, "a", TASK)
    capsys.readouterr()

    assert run(environment, str(FOLDER / STOPPED), "--url", dev) == 0

    answer = json.loads(capsys.readouterr().out)
    assert (answer["outcome"], answer["stop_code"]) == ("removed", "EssentialContainerExited")
    assert listed(client) == []


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_an_unreachable_dev_server_exits_5_naming_it(
    environment: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = closed_port_url()

    assert run(environment, "--stopped", TASK, "--url", url) == 5

    err = capsys.readouterr().err
    assert err.startswith(f"lambdamesh: cannot reach {url}: ")
    assert len(err.splitlines()) == 1


def test_a_failing_function_exits_5_with_its_message(
    environment: dict[str, str], serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(event: Any, context: Any) -> Any:
        raise RuntimeError("the registry could not write; try again shortly")

    url = serve(Invocations(failing, no_gateway, timeout_seconds=30.0))

    assert run(environment, "--stopped", TASK, "--url", url) == 5

    assert said(capsys) == (
        "lambdamesh: the function failed: the registry could not write; try again shortly"
    )


def test_a_refusal_exits_5_with_the_reason_the_server_gave(
    environment: dict[str, str], serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    def refusing(request: HttpRequest) -> Answer:
        body = {"Type": "User", "message": "only loopback clients may invoke"}
        return Answer(403, [("Content-Type", "application/json")], json.dumps(body).encode())

    url = serve(refusing)

    assert run(environment, "--stopped", TASK, "--url", url) == 5

    assert said(capsys) == (
        f"lambdamesh: {url} refused the event: HTTP 403 (only loopback clients may invoke)"
    )


def test_a_server_that_is_not_the_invoke_api_exits_5_not_with_a_traceback(
    environment: dict[str, str], serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(lambda request: Answer(200, [("Content-Type", "text/html")], b"<html>hi</html>"))

    assert run(environment, "--stopped", TASK, "--url", url) == 5

    assert said(capsys).startswith(f"lambdamesh: {url} answered, but not as")
