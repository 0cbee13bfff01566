"""The whole path on real processes: sidecars register, the gateway routes, signals end it."""

from __future__ import annotations

import signal
import time
from collections import Counter

from tests.e2e.conftest import LEASE_SECONDS, Mesh
from tests.e2e.processes import eventually, http

CACHE_SECONDS = 1.0
BINARY = bytes(range(256)) * 16


def served_by(mesh: Mesh, path: str, count: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(count):
        answer = mesh.get(path)
        assert answer.status == 200, answer.body
        seen[answer.headers["X-Served-By"]] += 1
    return seen


def test_traffic_is_spread_over_three_instances(mesh: Mesh) -> None:
    ports = [mesh.instance("spread", f"spread-{i}")[2] for i in range(3)]
    eventually(lambda: len(mesh.live("spread")) == 3, 20, "three instances never registered")
    time.sleep(CACHE_SECONDS)

    seen = served_by(mesh, "/api/v1/spread/v1/", 30)

    assert set(seen) == {f"spread:{port}" for port in ports}
    assert all(count >= 5 for count in seen.values()), seen


def test_a_deep_path_with_a_query_and_a_binary_body_arrives_intact(mesh: Mesh) -> None:
    mesh.instance("files", "files-0")
    eventually(lambda: mesh.live("files") == {"files-0"}, 20, "instance never registered")

    echoed = http(
        "POST",
        mesh.url + "/api/v1/files/v1/a/b/c/d/e/echo?x=1&x=2&y=%20z",
        BINARY,
        {"Content-Type": "application/octet-stream"},
    )
    described = mesh.get("/api/v1/files/v1/one/two/three/four/five/six?x=1&x=2&y=%20z")

    assert echoed.status == 200
    assert echoed.body == BINARY
    assert echoed.headers["Content-Type"] == "application/octet-stream"
    assert described.json()["path"] == "/one/two/three/four/five/six?x=1&x=2&y=%20z"


def test_sigterm_on_a_sidecar_takes_its_instance_out_of_rotation(mesh: Mesh) -> None:
    _, leaving, leaving_port = mesh.instance("term", "term-0")
    _, _, staying_port = mesh.instance("term", "term-1")
    eventually(lambda: len(mesh.live("term")) == 2, 20, "instances never registered")

    leaving.signal(signal.SIGTERM)
    assert leaving.popen.wait(10) == 0, leaving.output
    assert "term-0" not in mesh.live("term")
    time.sleep(CACHE_SECONDS + 0.5)

    # Its app still runs, so only the registry can keep traffic away from it.
    seen = served_by(mesh, "/api/v1/term/v1/", 20)
    assert seen == {f"term:{staying_port}": 20}, (seen, leaving_port)


def test_a_killed_task_leaves_rotation_within_its_lease_and_no_get_fails(mesh: Mesh) -> None:
    dead_app, dead_sidecar, _ = mesh.instance("kill", "kill-0")
    _, _, survivor_port = mesh.instance("kill", "kill-1")
    eventually(lambda: len(mesh.live("kill")) == 2, 20, "instances never registered")
    time.sleep(CACHE_SECONDS)

    dead_sidecar.signal(signal.SIGKILL)
    dead_app.signal(signal.SIGKILL)
    deadline = time.monotonic() + float(LEASE_SECONDS) + 2 * CACHE_SECONDS
    failures = []
    while time.monotonic() < deadline:
        answer = mesh.get("/api/v1/kill/v1/")
        if answer.status != 200:
            failures.append((answer.status, answer.body))
        time.sleep(0.05)

    assert failures == []
    assert mesh.live("kill") == {"kill-1"}
    assert served_by(mesh, "/api/v1/kill/v1/", 5) == {f"kill:{survivor_port}": 5}


def test_a_sidecar_paused_past_its_lease_registers_again_by_itself(mesh: Mesh) -> None:
    _, sidecar, _ = mesh.instance("pause", "pause-0")
    eventually(lambda: mesh.live("pause") == {"pause-0"}, 20, "instance never registered")

    sidecar.signal(signal.SIGSTOP)
    try:
        eventually(lambda: mesh.live("pause") == set(), 15, "lease never lapsed")
    finally:
        sidecar.signal(signal.SIGCONT)

    eventually(lambda: mesh.live("pause") == {"pause-0"}, 10, "sidecar never registered again")
    eventually(lambda: mesh.get("/api/v1/pause/v1/").status == 200, 5, "never routable again")
