"""The sidecar as ECS runs it: a real process, a real registry fake and a real app listener.

Waits are bounded polls (a few seconds at most), never timing assertions.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from sidecar_testkit import (
    FARGATE_TASK_METADATA,
    TOKEN,
    FakeApp,
    FakeMetadataServer,
    FakeRegistryServer,
    SidecarProcess,
    free_port,
    sidecar_env,
    wait_for,
)

from lambdamesh_sidecar import __version__

INSTANCE_PATH = "/registry/services/orders/instances/"


class Launch(Protocol):
    def __call__(self, env: dict[str, str], *args: str) -> SidecarProcess: ...


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    started: list[SidecarProcess] = []

    def start(env: dict[str, str], *args: str) -> SidecarProcess:
        process = SidecarProcess(env, tmp_path / f"sidecar-{len(started)}.log", *args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def instance_id(app: FakeApp) -> str:
    return f"127-0-0-1-{app.port}"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_registers_heartbeats_and_deregisters_on_signal(
    launch: Launch, registry_server: FakeRegistryServer, app: FakeApp, signum: signal.Signals
) -> None:
    sidecar = launch(sidecar_env(registry_server.url, app.port))

    wait_for(lambda: len(registry_server.requests("PUT", "/heartbeat")) >= 2, what="heartbeats")
    sidecar.send(signum)

    assert sidecar.wait(timeout=5) == 0
    register = registry_server.requests("PUT")[0]
    assert register.path == INSTANCE_PATH + instance_id(app)
    assert register.body == {
        "version": "v1",
        "host": "127.0.0.1",
        "port": app.port,
        "lease_seconds": 5,
        "status": "UP",
    }
    assert register.headers["Authorization"] == f"Bearer {TOKEN}"
    assert registry_server.requests()[-1].method == "DELETE"
    assert registry_server.instance("orders", instance_id(app)) is None
    log = sidecar.stderr()
    assert f"{signum.name} received" in log
    assert "deregistered" in log
    assert TOKEN not in log


def test_registers_again_when_a_heartbeat_gets_404(
    launch: Launch, registry_server: FakeRegistryServer, app: FakeApp
) -> None:
    sidecar = launch(sidecar_env(registry_server.url, app.port))
    wait_for(lambda: registry_server.instance("orders", instance_id(app)) is not None)

    registry_server.forget("orders", instance_id(app))

    wait_for(
        lambda: len(registry_server.requests("PUT", instance_id(app))) >= 2, what="re-register"
    )
    wait_for(lambda: "re-registered" in sidecar.stderr(), what="the re-registration log line")
    assert registry_server.instance("orders", instance_id(app)) is not None


def test_keeps_running_while_the_registry_is_down_then_registers(
    launch: Launch, app: FakeApp, tmp_path: Path
) -> None:
    port = free_port()
    sidecar = launch(sidecar_env(f"http://127.0.0.1:{port}", app.port))
    wait_for(lambda: "registry unreachable" in sidecar.stderr(), what="the outage to be logged")
    assert sidecar.process.poll() is None

    server = FakeRegistryServer(port=port)
    try:
        wait_for(lambda: server.instance("orders", instance_id(app)) is not None, timeout=8)
        wait_for(lambda: "registry reachable again" in sidecar.stderr())
        sidecar.send(signal.SIGTERM)
        assert sidecar.wait() == 0
    finally:
        server.close()


def test_waits_for_the_app_and_stops_cleanly_before_it_is_ready(
    launch: Launch, registry_server: FakeRegistryServer
) -> None:
    sidecar = launch(sidecar_env(registry_server.url, free_port()))
    wait_for(lambda: "waiting for the app" in sidecar.stderr())

    sidecar.send(signal.SIGTERM)

    assert sidecar.wait() == 0
    assert registry_server.requests() == []


def test_derives_its_identity_from_ecs_task_metadata(
    launch: Launch, registry_server: FakeRegistryServer, app: FakeApp
) -> None:
    document = {
        **FARGATE_TASK_METADATA,
        "Containers": [{"Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["127.0.0.1"]}]}],
    }
    metadata = FakeMetadataServer(document)
    try:
        env = sidecar_env(registry_server.url, app.port, ECS_CONTAINER_METADATA_URI_V4=metadata.uri)
        del env["LAMBDAMESH_HOST"]
        sidecar = launch(env)
        task_id = "0123456789abcdef0123456789abcdef"
        wait_for(lambda: registry_server.instance("orders", task_id) is not None)
        registered = registry_server.instance("orders", task_id)
        assert registered is not None
        assert registered["zone"] == "us-east-1a"
        sidecar.send(signal.SIGTERM)
        assert sidecar.wait() == 0
    finally:
        metadata.close()


def test_second_signal_exits_at_once_while_shutdown_is_stuck(
    launch: Launch, registry_server: FakeRegistryServer, app: FakeApp
) -> None:
    env = sidecar_env(registry_server.url, app.port, LAMBDAMESH_REQUEST_TIMEOUT_SECONDS="10")
    sidecar = launch(env)
    wait_for(lambda: registry_server.instance("orders", instance_id(app)) is not None)
    registry_server.state.delay = 10.0
    sidecar.send(signal.SIGTERM)
    wait_for(lambda: "SIGTERM received" in sidecar.stderr())

    sidecar.send(signal.SIGTERM)

    assert sidecar.wait() == 128 + signal.SIGTERM
    assert "SIGTERM again" in sidecar.stderr()


def test_missing_variable_exits_2_with_one_line_naming_it(launch: Launch) -> None:
    env = sidecar_env("http://127.0.0.1:1", 8080)
    del env["LAMBDAMESH_SERVICE"]

    sidecar = launch(env)

    assert sidecar.wait() == 2
    assert sidecar.stderr() == "lambdamesh-sidecar: LAMBDAMESH_SERVICE is required\n"


def test_invalid_port_exits_2_quoting_the_value(launch: Launch) -> None:
    sidecar = launch({**sidecar_env("http://127.0.0.1:1", 8080), "LAMBDAMESH_PORT": "abc"})

    assert sidecar.wait() == 2
    assert sidecar.stderr() == (
        "lambdamesh-sidecar: LAMBDAMESH_PORT must be an integer in 1..65535, got 'abc'\n"
    )


def test_help_lists_the_settings_and_exits_0(launch: Launch) -> None:
    sidecar = launch(sidecar_env("http://127.0.0.1:1", 8080), "--help")

    assert sidecar.wait() == 0
    assert sidecar.process.stdout is not None
    usage = sidecar.process.stdout.read().decode()
    assert "LAMBDAMESH_URL" in usage
    assert "LAMBDAMESH_HEARTBEAT_SECONDS" in usage


def test_version_prints_the_version(launch: Launch) -> None:
    sidecar = launch({"PATH": "", "PYTHONPATH": sidecar_env("", 1)["PYTHONPATH"]}, "--version")

    assert sidecar.wait() == 0
    assert sidecar.process.stdout is not None
    assert sidecar.process.stdout.read().decode().strip() == f"lambdamesh-sidecar {__version__}"
