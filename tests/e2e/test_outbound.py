"""Service-to-service calls through the caller's sidecar, with real processes on loopback:
`lambdamesh dev`, apps, and a sidecar beside each. Service A's app is played by the test
(it calls A's sidecar's outbound port, as the app in A's task would); service B rolls, loses
an instance to SIGKILL, and answers a table of routing cases the gateway answers too."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from http.client import HTTPConnection, HTTPException
from typing import Any

from tests.e2e.conftest import Mesh
from tests.e2e.processes import Process, eventually, http, spawn
from tests.helpers import bearer, service_token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def app(mesh: Mesh, service: str, instance: str, *options: str) -> tuple[Process, int]:
    args = ["-m", "lambdamesh.demo_app", "--port", "0", "--name", service]
    process = spawn(f"app-{instance}", [*args, "--instance", instance, *options])
    mesh.processes.append(process)
    port = int(process.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)").group(1))
    return process, port


def caller(mesh: Mesh, service: str = "orders", refresh_seconds: str = "1") -> int:
    """A task of ``service`` whose sidecar serves the outbound port; returns that port."""
    _, port = app(mesh, service, f"{service}-0")
    outbound = free_port()
    sidecar = mesh.sidecar(
        service,
        port,
        f"{service}-0",
        LAMBDAMESH_OUTBOUND_PORT=str(outbound),
        LAMBDAMESH_OUTBOUND_ALLOW_LOOPBACK="true",
        LAMBDAMESH_OUTBOUND_REFRESH_SECONDS=refresh_seconds,
    )
    sidecar.wait_for_line("outbound port listening")
    return outbound


class Load:
    """Threads calling through the outbound port until stopped, each on one keep-alive
    connection; POSTs carry unique request ids so the upstreams can tell a repeat."""

    def __init__(self, port: int, path: str, gets: int = 2, posts: int = 2) -> None:
        self.port, self.path = port, path
        self.results: Counter[tuple[str, int]] = Counter()
        self.failures: list[str] = []
        self.post_ids: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(m,), daemon=True)
            for m in ["GET"] * gets + ["POST"] * posts
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, method: str) -> None:
        connection = HTTPConnection("127.0.0.1", self.port, timeout=15)
        while not self._stop.is_set():
            rid = uuid.uuid4().hex
            try:
                body = json.dumps({"n": rid}).encode() if method == "POST" else None
                connection.request(method, self.path, body=body, headers={"X-Request-Id": rid})
                answer = connection.getresponse()
                payload = answer.read()
                status = answer.status
            except (OSError, HTTPException) as exc:
                connection.close()
                connection = HTTPConnection("127.0.0.1", self.port, timeout=15)
                status, payload = 0, str(exc).encode()
            with self._lock:
                self.results[(method, status)] += 1
                if method == "POST":
                    self.post_ids.append(rid)
                if status != 200:
                    self.failures.append(f"{method} {status} {payload[:200]!r}")
        connection.close()

    def count(self, method: str) -> int:
        return sum(n for (m, _), n in self.results.items() if m == method)


def stats(port: int) -> dict[str, Any]:
    answer = http("GET", f"http://127.0.0.1:{port}/__stats")
    assert answer.status == 200
    return dict(answer.json())


def test_a_calls_b_through_its_sidecar_while_b_rolls_one_instance_at_a_time(mesh: Mesh) -> None:
    ports: dict[str, int] = {}
    tasks: dict[str, tuple[Process, Process]] = {}
    seen: dict[str, dict[str, Any]] = {}

    def start(name: str) -> None:
        process, port = app(mesh, "inventory", name)
        ports[name] = port
        tasks[name] = (process, mesh.sidecar("inventory", port, name, LAMBDAMESH_DRAIN_SECONDS="2"))

    for n in range(3):
        start(f"old-{n}")
    eventually(lambda: len(mesh.live("inventory")) == 3, 20, "B never registered")
    outbound = caller(mesh)

    with Load(outbound, "/inventory/v1/items/1") as load:
        time.sleep(1.0)
        for n in range(3):
            start(f"new-{n}")
            eventually(lambda: f"new-{n}" in mesh.live("inventory"), 20, "no replacement")
            app_process, sidecar = tasks.pop(f"old-{n}")
            sidecar.signal(signal.SIGTERM)  # ECS stops the sidecar first: it drains, leaves
            assert sidecar.popen.wait(20) == 0, sidecar.output
            time.sleep(0.5)  # calls already sent to it finish
            seen[f"old-{n}"] = stats(ports[f"old-{n}"])
            app_process.signal(signal.SIGTERM)
            assert app_process.popen.wait(10) == 0
        time.sleep(1.0)

    seen.update({name: stats(port) for name, port in ports.items() if name.startswith("new")})
    assert load.count("GET") > 100 and load.count("POST") > 100, load.results
    assert [f for f in load.failures if f.startswith("GET")] == []
    delivered = Counter(rid for answer in seen.values() for rid in answer["post_ids"])
    assert [rid for rid, n in delivered.items() if n > 1] == []
    assert set(delivered) <= set(load.post_ids)
    assert all(seen[f"new-{n}"]["requests"] > 0 for n in range(3)), seen


def test_a_killed_instance_of_b_costs_no_failed_get(mesh: Mesh) -> None:
    apps = {}
    for n in range(2):
        process, port = app(mesh, "stock", f"stock-{n}")
        apps[n] = process
        mesh.sidecar("stock", port, f"stock-{n}")
    eventually(lambda: len(mesh.live("stock")) == 2, 20, "B never registered")
    outbound = caller(mesh, "cart")

    with Load(outbound, "/stock/v1/level", gets=3, posts=0) as load:
        time.sleep(1.0)
        apps[0].signal(signal.SIGKILL)
        time.sleep(3.0)

    assert load.count("GET") > 100, load.results
    assert load.failures == []


# The same routing cases, through the gateway and through a sidecar's outbound port.

CASES: list[tuple[str, str, str, dict[str, str], bytes | None]] = [
    ("plain", "GET", "/catalog/v1/items/1?q=a%20b&q=2", {}, None),
    ("alias split", "GET", "/catalog/live/x", {}, None),
    ("alias match rule", "GET", "/catalog/live/x", {"X-Canary": "1"}, None),
    ("binary body", "POST", "/catalog/v1/echo", {"Content-Type": "image/png"}, bytes(range(256))),
    ("put", "PUT", "/catalog/v2/items/9", {"Content-Type": "application/json"}, b'{"a":1}'),
    ("head", "HEAD", "/catalog/v1/x", {}, None),
    ("request id kept", "GET", "/catalog/v1/rid", {"X-Request-Id": "trace-77"}, None),
    ("hop-by-hop dropped", "GET", "/catalog/v1/hop", {"Proxy-Authorization": "Basic eA=="}, None),
    ("unknown version", "GET", "/catalog/v9/x", {}, None),
    ("alias to nothing", "GET", "/catalog/dark/x", {}, None),
    ("unknown service", "GET", "/nobody/v1/x", {}, None),
    ("invalid name", "GET", "/Catalog_/v1/x", {}, None),
    ("no live instance", "GET", "/dormant/v1/x", {}, None),
    ("503 passed through to a GET", "GET", "/flaky/v1/x", {}, None),
    ("503 passed through to a POST", "POST", "/flaky/v1/x", {}, b"once"),
    ("refused connect", "GET", "/gone/v1/x", {}, None),
    ("forwarded for", "GET", "/catalog/v1/xff", {"X-Forwarded-For": "203.0.113.9"}, None),
]


def outcome(answer: Any, method: str) -> dict[str, Any]:
    """What both lanes must agree on: status, error code, who served it and what it saw."""
    headers = {k.lower(): v for k, v in answer.headers.items()}
    result: dict[str, Any] = {"status": answer.status}
    if "json" in headers.get("content-type", "") and answer.body:
        document = json.loads(answer.body)
        if "error" in document:
            result["error"] = document["error"]["code"]
        else:
            result["instance"] = document.get("instance")
            result["path"] = document.get("path")
            seen = {k.lower(): v for k, v in document.get("headers", {}).items()}
            result["hop-by-hop seen"] = "proxy-authorization" in seen
            rid = seen.get("x-request-id")
            result["request id seen"] = rid if rid == "trace-77" else bool(rid)
            result["forwarded for"] = seen.get("x-forwarded-for")
    elif method != "HEAD":
        result["body"] = answer.body
    if headers.get("x-request-id") == "trace-77":
        result["request id answered"] = "trace-77"
    return result


def start_routing_cases(mesh: Mesh) -> int:
    """The services the table needs; returns the outbound port of a caller's sidecar."""
    for name, version in (("v1-a", "v1"), ("v2-a", "v2")):
        _, port = app(mesh, "catalog", name)
        mesh.sidecar("catalog", port, name, version=version)
    _, flaky = app(mesh, "flaky", "flaky-0", "--status", "503")
    mesh.sidecar("flaky", flaky, "flaky-0")
    dormant = mesh.put(
        "/registry/services/dormant/instances/d-0",
        {"version": "v1", "host": "127.0.0.1", "port": free_port(), "status": "DOWN"},
        token=service_token("dormant"),
    )
    gone = mesh.put(
        "/registry/services/gone/instances/g-0",
        {"version": "v1", "host": "127.0.0.1", "port": free_port(), "lease_seconds": 300},
        token=service_token("gone"),
    )
    assert (dormant.status, gone.status) == (201, 201)
    canary = [{"header": "X-Canary", "value": "1", "version": "v2"}]
    policy = {
        "aliases": {"live": {"split": {"v1": 1}, "match": canary}, "dark": {"split": {"v7": 1}}}
    }
    assert mesh.put("/registry/services/catalog/policy", policy).status in (200, 201)
    eventually(lambda: len(mesh.live("catalog")) == 2, 20, "catalog never registered")
    eventually(lambda: len(mesh.live("flaky")) == 1, 20, "flaky never registered")
    outbound = caller(mesh, "shop")
    time.sleep(1.2)  # both have read the policy and the instances (1 s cache, 1 s refresh)
    return outbound


def test_the_gateway_and_the_sidecar_route_every_case_alike(mesh: Mesh) -> None:
    outbound = start_routing_cases(mesh)
    answers = {}
    for name, method, path, headers, body in CASES:
        gateway = outcome(http(method, f"{mesh.url}/api/v1{path}", body, headers), method)
        sidecar = outcome(http(method, f"http://127.0.0.1:{outbound}{path}", body, headers), method)
        answers[name] = (gateway, sidecar)

    assert {name: pair for name, pair in answers.items() if pair[0] != pair[1]} == {}
    by_case = {name: pair[0] for name, pair in answers.items()}
    assert by_case["plain"]["path"] == "/items/1?q=a%20b&q=2"
    assert by_case["alias split"]["instance"] == "v1-a"
    assert by_case["alias match rule"]["instance"] == "v2-a"
    assert by_case["binary body"]["body"] == bytes(range(256))
    assert by_case["request id kept"]["request id seen"] == "trace-77"
    assert by_case["request id kept"]["request id answered"] == "trace-77"
    assert by_case["hop-by-hop dropped"]["hop-by-hop seen"] is False
    assert by_case["unknown version"]["error"] == "version_not_found"
    assert by_case["alias to nothing"]["error"] == "version_not_found"
    assert by_case["unknown service"]["error"] == "service_not_found"
    assert by_case["invalid name"]["error"] == "invalid_name"
    assert by_case["no live instance"]["error"] == "no_live_instance"
    assert by_case["503 passed through to a POST"]["instance"] == "flaky-0"
    assert by_case["refused connect"] == {"status": 502, "error": "upstream_unreachable"}
    # The caller's chain kept, the address the proxy saw appended: the local gateway's client
    # and the calling task are both on loopback.
    assert by_case["plain"]["forwarded for"] == "127.0.0.1"
    assert by_case["forwarded for"]["forwarded for"] == "203.0.113.9, 127.0.0.1"


def test_the_sidecar_reads_views_with_any_token_and_an_unchanged_view_costs_a_304(
    mesh: Mesh,
) -> None:
    _, port = app(mesh, "ledger", "ledger-0")
    mesh.sidecar("ledger", port, "ledger-0")
    eventually(lambda: len(mesh.live("ledger")) == 1, 20, "never registered")
    first = http(
        "GET", f"{mesh.url}/registry/services/ledger/routing", headers=bearer(service_token("x"))
    )
    time.sleep(1.5)  # heartbeats land meanwhile
    again = http(
        "GET",
        f"{mesh.url}/registry/services/ledger/routing",
        headers={"If-None-Match": first.headers["ETag"], **bearer(service_token("x"))},
    )

    assert (first.status, again.status, again.body) == (200, 304, b"")


def served_by(port: int, path: str) -> str:
    """The instance that answered, or the error code."""
    answer = http("GET", f"http://127.0.0.1:{port}{path}")
    document = json.loads(answer.body)
    return str(document["error"]["code"] if "error" in document else document["instance"])


def test_what_registers_after_the_caller_read_its_view_is_routable_before_the_next_refresh(
    mesh: Mesh,
) -> None:
    _, port = app(mesh, "atlas", "atlas-v1")
    mesh.sidecar("atlas", port, "atlas-v1")
    eventually(lambda: len(mesh.live("atlas")) == 1, 20, "atlas never registered")
    outbound = caller(mesh, "maps", refresh_seconds="300")  # no refresh during the test
    assert served_by(outbound, "/atlas/v1/x") == "atlas-v1"
    assert served_by(outbound, "/atlas/v2/x") == "version_not_found"
    assert served_by(outbound, "/later/v1/x") == "service_not_found"

    for service, version in (("atlas", "v2"), ("later", "v1")):
        _, port = app(mesh, service, f"{service}-{version}")
        mesh.sidecar(service, port, f"{service}-{version}", version=version)

    # Bounded waits, far below the refresh period: only a view read again on a miss serves.
    eventually(lambda: served_by(outbound, "/atlas/v2/x") == "atlas-v2", 15, "v2 not routed")
    eventually(lambda: served_by(outbound, "/later/v1/x") == "later-v1", 15, "later not routed")
    assert served_by(outbound, "/atlas/v1/x") == "atlas-v1"
