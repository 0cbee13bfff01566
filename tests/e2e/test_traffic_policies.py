"""Traffic policies proven with real processes: `lambdamesh dev`, upstream apps and sidecars on
loopback, policies set through the registry API, signals sent to real sidecars."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.client import HTTPConnection, HTTPException
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import Mesh
from tests.e2e.processes import Process, eventually, http, spawn
from tests.helpers import admin_token, bearer

CACHE_SECONDS = 1.0  # the dev server's LAMBDAMESH_CACHE_SECONDS


class KeepAlive:
    """One keep-alive connection to the gateway: thousands of requests in seconds."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._connection = HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=15)

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        self._connection.request(method, path, body=body or None, headers=headers or {})
        answer = self._connection.getresponse()
        payload = answer.read()
        return answer.status, dict(answer.getheaders()), payload

    def close(self) -> None:
        self._connection.close()


def set_policy(mesh: Mesh, service: str, policy: dict[str, Any]) -> None:
    answer = http(
        "PUT",
        f"{mesh.url}/registry/services/{service}/policy",
        json.dumps(policy).encode(),
        {"Content-Type": "application/json", **bearer(admin_token())},
    )
    assert answer.status in (200, 201), answer.body
    time.sleep(CACHE_SECONDS + 0.2)  # the gateway reads it with the next instance list


def app(mesh: Mesh, service: str, *options: str) -> tuple[Process, int]:
    process = spawn(
        f"app-{service}", ["-m", "lambdamesh.demo_app", "--port", "0", "--name", service, *options]
    )
    mesh.processes.append(process)
    port = int(process.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)").group(1))
    return process, port


def served(client: KeepAlive, path: str, count: int, **headers: str) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(count):
        status, answer_headers, body = client.request("GET", path, headers)
        assert status == 200, body
        seen[answer_headers["X-Served-By"].split(":")[1]] += 1
    return seen


def stats(port: int) -> dict[str, Any]:
    answer = http("GET", f"http://127.0.0.1:{port}/__stats")
    assert answer.status == 200
    return dict(answer.json())


@pytest.fixture
def client(mesh: Mesh) -> Iterator[KeepAlive]:
    connection = KeepAlive(mesh.url)
    yield connection
    connection.close()


def test_a_95_5_split_holds_over_2000_requests_and_the_canary_header_always_wins(
    mesh: Mesh, client: KeepAlive
) -> None:
    _, stable = app(mesh, "split")
    _, canary = app(mesh, "split")
    mesh.sidecar("split", stable, "split-v1", version="v1")
    mesh.sidecar("split", canary, "split-v2", version="v2")
    eventually(lambda: len(mesh.live("split")) == 2, 20, "instances never registered")
    set_policy(
        mesh,
        "split",
        {
            "aliases": {
                "live": {
                    "split": {"v1": 95, "v2": 5},
                    "match": [{"header": "X-Canary", "value": "always", "version": "v2"}],
                }
            }
        },
    )

    split = served(client, "/api/v1/split/live/", 2000)
    tester = served(client, "/api/v1/split/live/", 200, **{"X-Canary": "always"})

    assert split[str(canary)] / 2000 == pytest.approx(0.05, abs=0.02), split
    assert tester == Counter({str(canary): 200})


def test_consistent_hashing_keeps_a_key_on_one_instance_and_moves_a_fifth_when_one_leaves(
    mesh: Mesh, client: KeepAlive
) -> None:
    sidecars = {}
    for n in range(5):
        _, port = app(mesh, "sticky")
        sidecars[str(port)] = mesh.sidecar("sticky", port, f"sticky-{n}")
    eventually(lambda: len(mesh.live("sticky")) == 5, 20, "instances never registered")
    set_policy(mesh, "sticky", {"strategy": "consistent_hash", "hash_on": {"header": "X-User"}})

    one_key = served(client, "/api/v1/sticky/v1/", 500, **{"X-User": "ana"})
    keys = [f"user-{n}" for n in range(400)]
    before = {
        key: next(iter(served(client, "/api/v1/sticky/v1/", 1, **{"X-User": key}))) for key in keys
    }
    leaving = next(iter(one_key))
    sidecars[leaving].signal(signal.SIGTERM)
    assert sidecars[leaving].popen.wait(15) == 0
    time.sleep(CACHE_SECONDS + 0.2)
    after = {
        key: next(iter(served(client, "/api/v1/sticky/v1/", 1, **{"X-User": key}))) for key in keys
    }

    moved = [key for key in keys if before[key] != after[key]]
    assert len(one_key) == 1
    assert len(moved) / len(keys) == pytest.approx(1 / 5, abs=0.08)
    assert {before[key] for key in moved} == {leaving}  # only the leaver's keys moved
    assert leaving not in after.values()


def test_a_rolling_restart_under_load_fails_no_request_and_delivers_no_post_twice(
    mesh: Mesh,
) -> None:
    drain = {"LAMBDAMESH_DRAIN_SECONDS": "2"}
    old = []
    ports = []
    for n in range(3):
        application, port = app(mesh, "roll")
        old.append((application, mesh.sidecar("roll", port, f"roll-old-{n}", **drain)))
        ports.append(port)
    eventually(lambda: len(mesh.live("roll")) == 3, 20, "instances never registered")
    failures: list[str] = []
    sent_posts: list[str] = []
    stop = threading.Event()

    def load(method: str) -> None:
        client = KeepAlive(mesh.url)
        while not stop.is_set():
            request_id = uuid.uuid4().hex
            try:
                status, _, body = client.request(
                    method, "/api/v1/roll/v1/orders", {"X-Request-Id": request_id}, b"{}"
                )
            except (OSError, HTTPException) as exc:
                failures.append(f"{method}: {exc!r}")
                client = KeepAlive(mesh.url)
                continue
            if method == "POST":
                sent_posts.append(request_id)
            if status != 200:
                failures.append(f"{method} {status}: {body[:200]!r}")
        client.close()

    workers = [threading.Thread(target=load, args=(m,)) for m in ("GET", "GET", "POST", "POST")]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1)
        for n, (application, sidecar) in enumerate(old):
            _, port = app(mesh, "roll")
            ports.append(port)
            mesh.sidecar("roll", port, f"roll-new-{n}", **drain)
            eventually(lambda: f"roll-new-{n}" in mesh.live("roll"), 20, "never registered")
            sidecar.signal(signal.SIGTERM)
            assert sidecar.popen.wait(20) == 0, sidecar.output
            application.signal(signal.SIGTERM)
            assert application.popen.wait(10) == 0
        time.sleep(1)
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)

    delivered = Counter(post_id for port in ports[3:] for post_id in stats(port)["post_ids"])
    assert failures == []
    assert len(sent_posts) > 50
    assert max(delivered.values(), default=1) == 1


def test_an_instance_answering_500_is_ejected_after_n_answers_and_comes_back(
    mesh: Mesh, client: KeepAlive
) -> None:
    _, failing = app(mesh, "flaky", "--status", "500")
    mesh.sidecar("flaky", failing, "flaky-bad")
    for n in range(2):
        _, port = app(mesh, "flaky")
        mesh.sidecar("flaky", port, f"flaky-{n}")
    eventually(lambda: len(mesh.live("flaky")) == 3, 20, "instances never registered")
    set_policy(
        mesh,
        "flaky",
        {
            "outlier_detection": {
                "consecutive_failures": 3,
                "base_ejection_seconds": 2,
                "failure_statuses": "all_5xx",
            }
        },
    )

    first = [client.request("POST", "/api/v1/flaky/v1/x")[0] for _ in range(30)]
    time.sleep(2.2)  # the ejection ends
    later = [client.request("POST", "/api/v1/flaky/v1/x")[0] for _ in range(30)]

    assert first.count(500) == 3
    assert first[-15:].count(500) == 0
    assert later.count(500) == 3  # back, and ejected again after three more


def test_with_most_instances_failing_panic_mode_routes_over_all_of_them(
    mesh: Mesh, client: KeepAlive
) -> None:
    ports = []
    for n, options in enumerate([("--status", "500"), ("--status", "500"), ()]):
        _, port = app(mesh, "panicky", *options)
        mesh.sidecar("panicky", port, f"panicky-{n}")
        ports.append(port)
    eventually(lambda: len(mesh.live("panicky")) == 3, 20, "instances never registered")
    set_policy(
        mesh,
        "panicky",
        {
            "outlier_detection": {
                "consecutive_failures": 1,
                "base_ejection_seconds": 60,
                "max_ejected_percent": 100,
                "failure_statuses": "all_5xx",
            },
            "panic_threshold_percent": 50,
        },
    )

    statuses = [client.request("POST", "/api/v1/panicky/v1/x")[0] for _ in range(60)]

    # Both failing instances are ejected after one 500 each: one usable of three is under
    # half, so every live instance is offered again rather than piling all on the last one.
    assert statuses[-30:].count(500) >= 10
    assert statuses[-30:].count(200) >= 5


def test_a_slow_upstream_gets_a_504_within_its_per_try_timeout(
    mesh: Mesh, client: KeepAlive
) -> None:
    _, port = app(mesh, "slow", "--delay", "5")
    mesh.sidecar("slow", port, "slow-0")
    eventually(lambda: mesh.live("slow") == {"slow-0"}, 20, "instance never registered")
    set_policy(mesh, "slow", {"timeouts": {"per_try_seconds": 1, "total_seconds": 3}})

    started = time.monotonic()
    status, _, body = client.request("GET", "/api/v1/slow/v1/x")
    elapsed = time.monotonic() - started

    assert status == 504, body
    assert json.loads(body)["error"]["code"] == "upstream_timeout"
    assert elapsed < 3.0  # the 1 s per-try timeout and a margin, not the upstream's 5 s


def test_the_retry_budget_caps_the_extra_load_on_a_failing_service(
    mesh: Mesh, client: KeepAlive
) -> None:
    ports = []
    for n in range(2):
        _, port = app(mesh, "busy", "--status", "503")
        mesh.sidecar("busy", port, f"busy-{n}")
        ports.append(port)
    eventually(lambda: len(mesh.live("busy")) == 2, 20, "instances never registered")
    set_policy(
        mesh,
        "busy",
        {
            "retries": {"max_attempts": 3, "budget_percent": 20, "backoff_base_ms": 1},
            "outlier_detection": {"max_ejected_percent": 0},
        },
    )

    statuses = [client.request("GET", "/api/v1/busy/v1/x")[0] for _ in range(300)]
    received = sum(stats(port)["requests"] for port in ports)

    assert set(statuses) == {503}
    # Without the budget: 600 (every GET tried on both). With it: 20 % more, plus what a
    # quiet service may bank.
    assert 300 < received <= 300 * 1.2 + 10


def test_an_operator_drain_holds_against_heartbeats_until_lifted(
    mesh: Mesh, client: KeepAlive
) -> None:
    _, drained = app(mesh, "held")
    _, other = app(mesh, "held")
    mesh.sidecar("held", drained, "held-0")
    mesh.sidecar("held", other, "held-1")
    eventually(lambda: len(mesh.live("held")) == 2, 20, "instances never registered")
    path = f"{mesh.url}/registry/services/held/instances/held-0/drain"

    assert http("PUT", path, None, bearer(admin_token())).status == 200
    time.sleep(CACHE_SECONDS + 2.0)  # several heartbeats (every 0.5 s) of an UP instance
    while_drained = served(client, "/api/v1/held/v1/", 40)
    assert http("DELETE", path, None, bearer(admin_token())).status == 204
    time.sleep(CACHE_SECONDS + 0.2)
    lifted = served(client, "/api/v1/held/v1/", 40)

    assert while_drained == Counter({str(other): 40})
    assert set(lifted) == {str(drained), str(other)}
