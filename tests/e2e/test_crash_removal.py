"""A task killed outright (app and sidecar, SIGKILL: nothing deregisters) leaves rotation on
ECS's stop event, handed to `lambdamesh dev` as EventBridge hands it to the deployed function,
with no failed request meanwhile; without the event it leaves when its lease lapses.

Real processes on loopback: the dev server, demo apps, sidecars; the event goes through
`lambdamesh task-event`, the command, to the dev server's Invoke API.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from tests.e2e.conftest import LEASE_SECONDS, Mesh
from tests.e2e.processes import ROOT, Process, spawn
from tests.helpers import admin_token, bearer

SERVICE = "crashy"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/e2e/{:032x}"
# The dev server's LAMBDAMESH_CACHE_SECONDS: how long a gateway may route on what it read.
CACHE_SECONDS = 1.0
# The goal for the median from the event to leaving rotation.
GOAL_SECONDS = 2.0


class Traffic:
    """GETs through the gateway, one after another, counting who answered and what failed."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.answered: Counter[str] = Counter()
        self.failures: list[str] = []
        self.last_seen: dict[str, float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            answer = self.mesh.get(f"/api/v1/{SERVICE}/v1/ping")
            if answer.status != 200:
                self.failures.append(f"{answer.status} {answer.body[:200]!r}")
                continue
            instance = answer.json()["instance"]
            self.answered[instance] += 1
            self.last_seen[instance] = time.monotonic()

    @contextmanager
    def running(self) -> Iterator[Traffic]:
        self._thread.start()
        try:
            yield self
        finally:
            self._done.set()
            self._thread.join(15)


def start_task(mesh: Mesh, index: int, heartbeat: str = "30", lease: str = "120") -> Process:
    """An app and its sidecar standing for one ECS task; the app names itself after it."""
    port = mesh_upstream(mesh, f"{SERVICE}-{index}")
    mesh.sidecar(
        SERVICE,
        port,
        f"{SERVICE}-{index}",
        LAMBDAMESH_TASK_ARN=TASK_ARN.format(index),
        LAMBDAMESH_HEARTBEAT_SECONDS=heartbeat,
        LAMBDAMESH_LEASE_SECONDS=lease,
    )
    return mesh.processes[-1]


def mesh_upstream(mesh: Mesh, instance: str) -> int:
    process = spawn(
        f"app-{instance}",
        ["-m", "lambdamesh.demo_app", "--port", "0", "--name", SERVICE, "--instance", instance],
    )
    mesh.processes.append(process)
    return int(process.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)").group(1))


def kill_task(mesh: Mesh, index: int) -> None:
    """SIGKILL the task's app and sidecar: nothing deregisters, nothing drains."""
    for process in mesh.processes:
        if process.name in (f"app-{SERVICE}-{index}", f"sidecar-{SERVICE}-{index}"):
            process.popen.send_signal(signal.SIGKILL)
            process.popen.wait(10)


def send_stop_event(url: str, index: int) -> dict[str, object]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lambdamesh.cli",
            "task-event",
            "--url",
            url,
            "--stopped",
            TASK_ARN.format(index),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def routable(mesh: Mesh) -> set[str]:
    """The instances the gateway routes on: the routing view, read through its cache."""
    answer = mesh.get(f"/registry/services/{SERVICE}/routing", headers=bearer(admin_token()))
    assert answer.status == 200, answer.body
    return {i["instance_id"] for i in answer.json()["instances"] if i["live"]}


def wait_until(check: object, timeout: float) -> float:
    """Seconds until ``check()`` held, polling every 20 ms; fails after ``timeout``."""
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - started < timeout, "condition never held"
        time.sleep(0.02)
    return time.monotonic() - started


def test_killed_tasks_leave_rotation_on_their_stop_event_with_no_failed_request(
    mesh: Mesh,
) -> None:
    tasks = 4
    for index in range(tasks):
        start_task(mesh, index)
    everyone = {f"{SERVICE}-{index}" for index in range(tasks)}
    wait_until(lambda: routable(mesh) == everyone, 60)

    removal: list[float] = []
    with Traffic(mesh).running() as traffic:
        wait_until(lambda: set(traffic.answered) == everyone, 30)
        for index in range(tasks - 1):
            kill_task(mesh, index)
            time.sleep(0.5)  # the crash, then ECS's event a moment later
            sent = time.monotonic()
            answer = send_stop_event(mesh.url, index)
            assert answer["outcome"] == "removed", answer
            assert answer["removed"] == [{"service": SERVICE, "instance_id": f"{SERVICE}-{index}"}]
            gone = f"{SERVICE}-{index}"
            removal.append(
                (time.monotonic() - sent) + wait_until(lambda: gone not in routable(mesh), 10)
            )
        survivor = f"{SERVICE}-{tasks - 1}"
        before = traffic.answered[survivor]
        wait_until(lambda: traffic.answered[survivor] > before + 20, 10)

    assert traffic.failures == [], traffic.failures[:5]
    assert routable(mesh) == {survivor}
    # Leaving rotation takes at most the gateway's cache period after the event.
    assert max(removal) <= CACHE_SECONDS + 1.0, removal
    print(f"removal after the event, seconds: {[round(r, 3) for r in removal]}")
    assert statistics.median(removal) <= GOAL_SECONDS


def test_a_killed_task_without_its_event_leaves_when_its_lease_lapses(mesh: Mesh) -> None:
    # Instances of the test above may still be leaving; only these two are watched.
    pair = {f"{SERVICE}-10", f"{SERVICE}-11"}
    start_task(mesh, 10, heartbeat="0.5", lease=LEASE_SECONDS)
    start_task(mesh, 11, heartbeat="0.5", lease=LEASE_SECONDS)
    wait_until(lambda: pair <= routable(mesh), 60)

    with Traffic(mesh).running() as traffic:
        wait_until(lambda: pair <= set(traffic.answered), 30)
        kill_task(mesh, 10)
        waited = wait_until(lambda: f"{SERVICE}-10" not in routable(mesh), 30)

    assert traffic.failures == [], traffic.failures[:5]
    assert waited <= float(LEASE_SECONDS) + CACHE_SECONDS + 1.0
