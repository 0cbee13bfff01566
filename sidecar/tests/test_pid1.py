"""The sidecar as PID 1 of its own PID namespace, as it runs in its container.

The image's ENTRYPOINT is python itself running the sidecar's module, so in the container the
sidecar is PID 1 and ECS's SIGTERM goes straight to it. The kernel shields a namespace's PID 1:
a signal it has no handler for is dropped rather than acted on, so a PID 1 that relied on
SIGTERM's default action would never stop and would be SIGKILLed after the stop timeout, still
registered. Here ``unshare --pid --fork --mount-proc`` makes a PID namespace, and the signal
goes to the namespace's PID 1 (unshare's child), never to unshare. The sidecar is the one
installed as the image installs it, run by the image's ENTRYPOINT (see test_image.py), with no
source tree on its path, against the fake registry and a fake app on loopback.

Waits are bounded polls, never timing assertions.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sidecar_testkit import (
    FARGATE_TASK_METADATA,
    FakeApp,
    FakeRegistryServer,
    HeldMetadataServer,
    Pid1Process,
    free_port,
    install_like_the_image,
    namespace_pids,
    sidecar_env,
    wait_for,
)

Launch = Callable[[list[str], dict[str, str]], Pid1Process]

INSTANCE_PATH = "/registry/services/orders/instances/"


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The image's ENTRYPOINT, over the packages installed as the image installs them."""
    return install_like_the_image(tmp_path_factory.mktemp("image") / "root")


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    started: list[Pid1Process] = []

    def start(command: list[str], env: dict[str, str]) -> Pid1Process:
        process = Pid1Process(command, env, tmp_path / f"pid1-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def installed_env(registry_url: str, app_port: int) -> dict[str, str]:
    """The sidecar's settings, without the source tree on PYTHONPATH: the installed copy runs."""
    env = sidecar_env(registry_url, app_port)
    del env["PYTHONPATH"]
    return env


def assert_is_pid_1(process: Pid1Process) -> None:
    pids = namespace_pids(process.pid)
    assert len(pids) >= 2, f"not in a PID namespace of its own: NSpid {pids}"
    assert pids[-1] == 1, f"NSpid {pids}"


def test_a_pid_1_without_a_handler_does_not_die_of_sigterm(launch: Launch) -> None:
    """The harness really gives PID 1 its kernel shield: SIGTERM is dropped, not acted on.

    SIGUSR1 (handled) is sent after SIGTERM (not handled). Had SIGTERM been queued, the process
    would die of it; dropped, the process exits 0 from the SIGUSR1 handler.
    """
    program = (
        "import signal, sys\n"
        "def done(signum, frame):\n"
        "    print('SIGUSR1 handled', flush=True)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGUSR1, done)\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    signal.pause()\n"
    )
    process = launch([sys.executable, "-c", program], {"PATH": "/usr/bin:/bin"})
    wait_for(lambda: "ready" in process.output(), what="the handler to be installed")
    assert_is_pid_1(process)

    process.send(signal.SIGTERM)
    process.send(signal.SIGUSR1)

    assert process.wait() == 0
    assert "SIGUSR1 handled" in process.output()


def test_sidecar_as_pid_1_deregisters_and_exits_0_on_sigterm(
    launch: Launch, sidecar: list[str], registry_server: FakeRegistryServer, app: FakeApp
) -> None:
    process = launch(sidecar, installed_env(registry_server.url, app.port))
    wait_for(lambda: len(registry_server.requests("PUT", "/heartbeat")) >= 2, what="heartbeats")
    assert_is_pid_1(process)

    process.send(signal.SIGTERM)

    assert process.wait(timeout=10) == 0
    instance = f"127-0-0-1-{app.port}"
    [register, *_] = registry_server.requests("PUT")
    assert register.path == INSTANCE_PATH + instance
    last = registry_server.requests()[-1]
    assert (last.method, last.path) == ("DELETE", INSTANCE_PATH + instance)
    assert registry_server.instance("orders", instance) is None
    assert "SIGTERM received" in process.output()
    assert "deregistered" in process.output()


def test_sidecar_as_pid_1_exits_0_on_sigterm_while_waiting_for_the_app(
    launch: Launch, sidecar: list[str], registry_server: FakeRegistryServer
) -> None:
    process = launch(sidecar, installed_env(registry_server.url, free_port()))
    wait_for(lambda: "waiting for the app" in process.output(), what="the start-up wait")
    assert_is_pid_1(process)

    process.send(signal.SIGTERM)

    assert process.wait(timeout=10) == 0
    assert registry_server.requests() == []
    assert "stopped before the app was ready" in process.output()


def test_sidecar_as_pid_1_exits_on_sigterm_while_loading_settings_without_registering(
    launch: Launch, sidecar: list[str], registry_server: FakeRegistryServer, app: FakeApp
) -> None:
    """SIGTERM while the ECS metadata endpoint lags: the handler is in place before load().

    The endpoint holds its answer until the signal has been sent, then answers, so the settings
    load and the app is ready: a sidecar that had dropped the signal would register now.
    """
    metadata = HeldMetadataServer(FARGATE_TASK_METADATA)
    try:
        env = installed_env(registry_server.url, app.port)
        env["ECS_CONTAINER_METADATA_URI_V4"] = metadata.uri
        process = launch(sidecar, env)
        wait_for(metadata.arrived, what="the sidecar to ask ECS for its task metadata")
        assert_is_pid_1(process)
        assert registry_server.requests() == []

        process.send(signal.SIGTERM)
        metadata.release()

        assert process.wait(timeout=10) == 0
    finally:
        metadata.close()
    assert registry_server.requests() == []
    assert "never registered; nothing to deregister" in process.output()
