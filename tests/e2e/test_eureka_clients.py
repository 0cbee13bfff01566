"""Eureka clients that lambdamesh did not write, used unchanged against `lambdamesh dev`:
py-eureka-client 0.13.3 in a child Python process (``eureka_py_client.py``) and
eureka-js-client 4.5.0 under the machine's Node.js (``eureka-js/client.js``, installed from
``eureka-js/package-lock.json`` by ``make install``), beside real sidecars, all on loopback.

The clients' intervals are compressed so that the file runs in about a minute:

* both clients renew and fetch the registry every second (``INTERVAL``; 30 s by default in
  both, and in Eureka);
* their own leases last 15 s (``CLIENT_LEASE``; Eureka's default is 90 s, three renewals):
  long enough that a loaded machine stalling a client or the dev server for a few seconds
  does not lapse it, which the file checks never happens;
* the registrations whose lapse the file waits for last 5 s (``LEASE``, the registry's
  shortest), as do the sidecars' (heartbeats every 0.5 s, ``conftest``);
* the registry is read through the dev server's 1 s cache (its default, as deployed).

The instances the Eureka API serves are the registry's own: a sidecar's instance is
discovered and called by a Eureka client, and a Eureka client's instance is listed by the
registry's API and routed to by the gateway.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from lambdamesh.demo_app import serve
from tests.e2e.conftest import Mesh
from tests.e2e.processes import ROOT, Process, http
from tests.helpers import admin_token, service_token

# Seconds; see the module's docstring for what they stand for.
INTERVAL = 1
LEASE = 5
CLIENT_LEASE = 15
# How long a change may take to reach a client: its next fetch, after the dev server's cache.
SETTLE_SECONDS = 15.0
JS_DIR = Path(__file__).parent / "eureka-js"
JS_CLIENT_VERSION = "4.5.0"
PY_CLIENT_VERSION = "0.13.3"
MYOWN = {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"}

needs_node = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="eureka-js-client runs under Node.js, and node or npm is not on PATH",
)

Registry = dict[str, dict[str, str]]
"""app -> {Eureka instance id -> status}"""
VipView = dict[str, set[tuple[str, str, int, str]]]
"""VIP address or app -> {(instance id, host name, port, status)} of its instances"""


# --- the instances' own servers -----------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[Callable[[str, str], int]]:
    """Demo apps in this process, one per instance, kept for the whole module: a port is
    never reused by another instance, which a client that tells instances apart by host and
    port (eureka-js-client) would take for the same one."""
    servers: list[ThreadingHTTPServer] = []

    def start(service: str, instance: str) -> int:
        server = serve("127.0.0.1", 0, service, instance)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return int(server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --- the clients, as child processes taking commands --------------------------------------


class Client:
    """A client process answering JSON commands on stdin with ``reply <n> <json>`` lines."""

    def __init__(self, process: Process, log: Path) -> None:
        self.process = process
        self.log = log
        self._asked = 0

    def ask(self, command: str, **arguments: object) -> Any:
        self._asked += 1
        message = json.dumps({"n": self._asked, "cmd": command, **arguments})
        assert self.process.popen.stdin is not None
        self.process.popen.stdin.write(message + "\n")
        self.process.popen.stdin.flush()
        try:
            line = self.process.wait_for_line(rf"^reply {self._asked} (.*)$").group(1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None
        answer: dict[str, Any] = json.loads(line)
        assert "error" not in answer, f"{self.process.name}: {answer['error']}\n{self.log_tail()}"
        return answer["ok"]

    def log_tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join([f"--- {self.process.name}'s log (tail) ---", *lines[-30:]])


def start_client(mesh: Mesh, name: str, argv: list[str], log: Path) -> Client:
    with log.open("w") as stderr:
        popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    process = Process(name, popen)
    mesh.processes.append(process)
    client = Client(process, log)
    try:
        process.wait_for_line(r"^ready$")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{client.log_tail()}") from None
    return client


def eureka_server(mesh: Mesh, token: str) -> str:
    """py-eureka-client's service URL: the token as the password, percent-encoded (its URL
    rule takes letters, digits and ``-_~!.%`` only)."""
    return f"http://svc:{quote(token, safe='')}@{mesh.url.removeprefix('http://')}/eureka/"


def start_py_client(mesh: Mesh, port: int, tmp_path: Path) -> Client:
    config = {
        "server": eureka_server(mesh, service_token("pyorders")),
        "admin_server": eureka_server(mesh, admin_token()),
        "app": "pyorders",
        "ip": "127.0.0.1",
        "port": port,
        "renewal_interval": INTERVAL,
        "duration": CLIENT_LEASE,
    }
    argv = [sys.executable, "-m", "tests.e2e.eureka_py_client", json.dumps(config)]
    return start_client(mesh, "py-eureka-client", argv, tmp_path / "py-eureka-client.log")


def start_js_client(
    mesh: Mesh, instance_id: str, port: int, use_delta: bool, tmp_path: Path
) -> Client:
    config = {
        "token": service_token("jsorders"),
        "app": "JSORDERS",
        "instanceId": instance_id,
        "port": port,
        "serverPort": int(mesh.url.rsplit(":", 1)[1]),
        "intervalSeconds": INTERVAL,
        "leaseSeconds": CLIENT_LEASE,
        "shouldUseDelta": use_delta,
    }
    argv = ["node", str(JS_DIR / "client.js"), json.dumps(config)]
    return start_client(mesh, instance_id, argv, tmp_path / f"{instance_id}.log")


# --- the server's side ---------------------------------------------------------------------


def basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"svc:{token}".encode()).decode()}


def eureka_read(mesh: Mesh, path: str) -> Any:
    answer = mesh.get(path, headers={"Accept": "application/json", **basic(admin_token())})
    assert answer.status == 200, (path, answer.status, answer.body)
    return answer.json()


def server_instances(mesh: Mesh) -> list[dict[str, Any]]:
    """Every instance of the full registry, as Eureka clients fetch it."""
    document = eureka_read(mesh, "/eureka/apps/")["applications"]
    return [instance for app in document["application"] for instance in app["instance"]]


def server_registry(mesh: Mesh) -> Registry:
    registry: Registry = {}
    for instance in server_instances(mesh):
        registry.setdefault(instance["app"], {})[instance["instanceId"]] = instance["status"]
    return registry


def server_up(mesh: Mesh) -> tuple[VipView, VipView]:
    """The UP instances by VIP address and by app: what eureka-js-client keeps (it filters
    the others out)."""
    by_vip: VipView = {}
    by_app: VipView = {}
    for instance in server_instances(mesh):
        if instance["status"] != "UP":
            continue
        key = (instance["instanceId"], instance["hostName"], instance["port"]["$"], "UP")
        for vip in instance["vipAddress"].split(","):
            by_vip.setdefault(vip, set()).add(key)
        by_app.setdefault(instance["app"], set()).add(key)
    return by_vip, by_app


def native(mesh: Mesh, service: str) -> dict[int, dict[str, Any]]:
    """The registry's own listing of a service's live instances, by port."""
    path = f"/registry/services/{service}/instances"
    answer = mesh.get(path, headers={"Authorization": f"Bearer {admin_token()}"})
    assert answer.status == 200, answer.body
    return {int(i["port"]): i for i in answer.json()["instances"]}


def register(mesh: Mesh, app: str, instance_id: str, port: int, lease: int) -> None:
    """A registration through the Eureka API, with the app's own token, as a client sends it."""
    record = {
        "instanceId": instance_id,
        "hostName": "127.0.0.1",
        "app": app,
        "ipAddr": "127.0.0.1",
        "port": {"$": port, "@enabled": "true"},
        "vipAddress": app.lower(),
        "dataCenterInfo": MYOWN,
        "leaseInfo": {"renewalIntervalInSecs": INTERVAL, "durationInSecs": lease},
        "status": "UP",
    }
    headers = {"Content-Type": "application/json", **basic(service_token(app.lower()))}
    body = json.dumps({"instance": record}).encode()
    answer = http("POST", f"{mesh.url}/eureka/apps/{app}", body, headers)
    assert answer.status == 204, answer.body


def cancel(mesh: Mesh, app: str, instance_id: str) -> None:
    url = f"{mesh.url}/eureka/apps/{app}/{quote(instance_id, safe='')}"
    answer = http("DELETE", url, headers=basic(service_token(app.lower())))
    assert answer.status == 200, answer.body


def eureka_status(mesh: Mesh, app: str, eureka_id: str) -> tuple[str, str]:
    """An instance's status and overridden status, read through the Eureka API by its id
    (percent-encoded, as py-eureka-client sends it)."""
    path = f"/eureka/apps/{app}/{quote(eureka_id, safe='')}"
    shown = eureka_read(mesh, path)["instance"]
    assert shown["instanceId"] == eureka_id
    return shown["status"], shown["overriddenStatus"]


def override(mesh: Mesh, app: str, instance_id: str, lift: bool = False) -> None:
    """The operator's drain, Eureka's OUT_OF_SERVICE override, or its lifting, sent with an
    admin token as the Basic password."""
    url = f"{mesh.url}/eureka/apps/{app}/{quote(instance_id, safe='')}/status"
    if lift:
        answer = http("DELETE", url, headers=basic(admin_token()))
    else:
        answer = http("PUT", f"{url}?value=OUT_OF_SERVICE", headers=basic(admin_token()))
    assert answer.status == 200, answer.body


def gateway_answers(mesh: Mesh, service: str, count: int) -> list[str]:
    """Which instance answered each of ``count`` calls through the gateway to ``service``."""
    found = []
    for _ in range(count):
        answer = mesh.get(f"/api/v1/{service}/v1/hello")
        found.append(answer.json()["instance"] if answer.status == 200 else str(answer.status))
    return found


def settle(check: Callable[[], str | None], what: str, timeout: float = SETTLE_SECONDS) -> None:
    """Polls ``check``, which returns None once it holds and else what still differs."""
    deadline = time.monotonic() + timeout
    while (difference := check()) is not None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}, after {timeout} s: {difference}")
        time.sleep(0.1)


class Follow:
    """Waits out a change: first until the registry shows it (read through the dev server's
    cache, as the clients read it), then until the clients agree with the registry. Waiting
    for the registry first keeps a check from passing on the state before the change."""

    def __init__(self, mesh: Mesh, clients_agree: Callable[[], str | None]) -> None:
        self.mesh = mesh
        self.clients_agree = clients_agree

    def __call__(
        self, what: str, shown: Callable[[Registry], bool], timeout: float = SETTLE_SECONDS
    ) -> None:
        settle(
            lambda: None if shown(found := server_registry(self.mesh)) else str(found),
            f"the registry shows {what}",
            timeout,
        )
        settle(self.clients_agree, f"the clients follow {what}")


def has(app: str, instance_id: str, status: str = "UP") -> Callable[[Registry], bool]:
    return lambda registry: registry.get(app, {}).get(instance_id) == status


def lacks(app: str, instance_id: str) -> Callable[[Registry], bool]:
    return lambda registry: instance_id not in registry.get(app, {})


# --- py-eureka-client ----------------------------------------------------------------------


def py_registry(view: dict[str, Any]) -> Registry:
    """The py client's cache; it keeps an app whose last instance left, with none."""
    return {
        app: {i["instanceId"]: i["status"] for i in instances}
        for app, instances in view["apps"].items()
        if instances
    }


def py_matches_server(mesh: Mesh, client: Client) -> Callable[[], str | None]:
    def check() -> str | None:
        server, cached = server_registry(mesh), py_registry(client.ask("view"))
        return None if cached == server else f"client {cached} != server {server}"

    return check


def test_py_eureka_client_registers_renews_is_routed_discovers_is_drained_and_deregisters(
    mesh: Mesh, upstream: Callable[[str, str], int], tmp_path: Path
) -> None:
    assert importlib.metadata.version("py-eureka-client") == PY_CLIENT_VERSION
    orders_port = upstream("orders", "orders-1")
    orders_1 = mesh.sidecar("orders", orders_port, "orders-1")
    settle(lambda: None if orders_port in native(mesh, "orders") else "absent", "orders-1 joins")
    py_port = upstream("pyorders", "pyorders-py")
    eureka_id = f"127.0.0.1:pyorders:{py_port}"  # py-eureka-client's default instance id

    client = start_py_client(mesh, py_port, tmp_path)

    # Registered: the registry lists it, with the lease the client asked for; Eureka shows UP.
    first = native(mesh, "pyorders")[py_port]
    assert (first["host"], first["status"], first["lease_seconds"]) == (
        "127.0.0.1",
        "UP",
        CLIENT_LEASE,
    )
    assert eureka_status(mesh, "PYORDERS", eureka_id) == ("UP", "UNKNOWN")

    # Routed to by the gateway.
    settle(
        lambda: None if gateway_answers(mesh, "pyorders", 1) == ["pyorders-py"] else "not routed",
        "the gateway routes to the py client's instance",
    )

    # It discovers the sidecar's instance and calls it with its own API.
    follow = Follow(mesh, py_matches_server(mesh, client))
    follow(
        "both instances", lambda r: has("ORDERS", "orders-1")(r) and has("PYORDERS", eureka_id)(r)
    )
    assert (
        client.ask("walk", app="ORDERS", path="/hello") == f"http://127.0.0.1:{orders_port}/hello"
    )
    called = client.ask("call", app="ORDERS", path="/hello")
    assert (called["service"], called["instance"], called["path"]) == (
        "orders",
        "orders-1",
        "/hello",
    )

    # The operator's drain, sent with py-eureka-client's own status_update and an admin token,
    # takes it out of the gateway's rotation (another instance stays in it); the client's
    # renews go on and do not undo it; deleting the override brings it back.
    other_port = upstream("pyorders", "pyorders-other")
    register(mesh, "PYORDERS", "pyorders-other", other_port, lease=60)
    settle(
        lambda: None if "pyorders-other" in gateway_answers(mesh, "pyorders", 10) else "not routed",
        "the gateway routes to the other instance",
    )
    assert client.ask("drain", app="PYORDERS", instance_id=eureka_id) == {"status_before": "UP"}
    assert native(mesh, "pyorders")[py_port]["drained"] is True
    settle(
        lambda: (
            None
            if (shown := eureka_status(mesh, "PYORDERS", eureka_id))
            == ("OUT_OF_SERVICE", "OUT_OF_SERVICE")
            else str(shown)
        ),
        "Eureka shows the drained instance OUT_OF_SERVICE (after the dev server's cache)",
    )
    settle(
        lambda: (
            None
            if set(answered := gateway_answers(mesh, "pyorders", 20)) == {"pyorders-other"}
            else str(answered)
        ),
        "the drained instance leaves the gateway's rotation",
    )
    drained_expiry = native(mesh, "pyorders")[py_port]["expires_at"]
    settle(
        lambda: (
            None
            if native(mesh, "pyorders")[py_port]["expires_at"] >= drained_expiry + 2 * INTERVAL
            else "not renewed"
        ),
        "the drained client renews",
    )
    assert native(mesh, "pyorders")[py_port]["drained"] is True
    assert set(gateway_answers(mesh, "pyorders", 20)) == {"pyorders-other"}
    follow("the drain", has("PYORDERS", eureka_id, "OUT_OF_SERVICE"))
    assert client.ask("undrain", app="PYORDERS", instance_id=eureka_id) == {
        "status_before": "OUT_OF_SERVICE"
    }
    settle(
        lambda: None if "pyorders-py" in gateway_answers(mesh, "pyorders", 10) else "not routed",
        "the instance is back in the gateway's rotation",
    )

    # Instances come and go; the client follows through deltas alone (the full registry's
    # hash matches its cache after each), and its cache ends equal to the registry. Churn
    # stays within the apps it knows: py-eureka-client 0.13.3 drops a delta's entries of an
    # app it has not cached, then fetches the full registry on the hash mismatch.
    before = client.ask("view")
    assert before["full"] == 1, before
    follow("the drain lifted", has("PYORDERS", eureka_id))
    cancel(mesh, "PYORDERS", "pyorders-other")
    follow("a cancel", lacks("PYORDERS", "pyorders-other"))
    register(mesh, "PYORDERS", "pyorders-extra", upstream("pyorders", "pyorders-extra"), 60)
    follow("a registration", has("PYORDERS", "pyorders-extra"))
    orders_2 = mesh.sidecar("orders", upstream("orders", "orders-2"), "orders-2")
    follow("a sidecar's registration", has("ORDERS", "orders-2"))
    register(mesh, "PYORDERS", "pyorders-lapsing", upstream("pyorders", "pyorders-lapsing"), LEASE)
    follow("a registration whose lease will lapse", has("PYORDERS", "pyorders-lapsing"))
    cancel(mesh, "PYORDERS", "pyorders-extra")
    follow("another cancel", lacks("PYORDERS", "pyorders-extra"))
    orders_2.stop()
    follow("a sidecar's departure", lacks("ORDERS", "orders-2"))
    follow("a lapsed lease", lacks("PYORDERS", "pyorders-lapsing"), SETTLE_SECONDS + LEASE)
    after = client.ask("view")
    assert after["errors"] == [], after["errors"]
    assert after["full"] == 1, "the py client fetched the full registry again: hash mismatch"
    assert after["delta"] > before["delta"]

    # Its renews kept it registered past a whole lease, and it never had to register again.
    settle(
        lambda: (
            None
            if native(mesh, "pyorders")[py_port]["expires_at"] >= first["expires_at"] + CLIENT_LEASE
            else "lease not extended"
        ),
        "the py client's lease outlives a whole duration",
        timeout=2 * CLIENT_LEASE,
    )
    assert native(mesh, "pyorders")[py_port]["registered_at"] == first["registered_at"]

    # stop() deregisters: the registry no longer lists it, the gateway no longer routes to it.
    assert client.ask("stop") == {"stopped": True}
    assert client.process.popen.wait(10) == 0
    assert py_port not in native(mesh, "pyorders")
    settle(
        lambda: None if gateway_answers(mesh, "pyorders", 1) != ["pyorders-py"] else "still routed",
        "the gateway stops routing to the stopped client",
    )
    orders_1.stop()


# --- eureka-js-client ----------------------------------------------------------------------


def js_views(client: Client, vips: set[str], apps: set[str]) -> tuple[VipView, VipView]:
    """The client's view through its public getters, for the names asked, dropping empty ones."""
    view = client.ask("view", vips=sorted(vips), apps=sorted(apps))
    assert view["problems"] == [], view["problems"]

    def keyed(found: dict[str, list[dict[str, Any]]]) -> VipView:
        return {
            name: {(i["instanceId"], i["hostName"], i["port"], i["status"]) for i in instances}
            for name, instances in found.items()
            if instances
        }

    return keyed(view["byVip"]), keyed(view["byApp"])


def up_only(view: VipView) -> VipView:
    """A view's UP instances, dropping names left with none."""
    return {name: up for name, keys in view.items() if (up := {k for k in keys if k[3] == "UP"})}


class JsWatch:
    """Compares two eureka-js-clients' views with the registry: the one fetching the full
    registry by VIP and by app, the one applying deltas by VIP only. eureka-js-client 4.5.0
    applies a delta's MODIFIED and DELETED entries to its by-app cache at index 0 (it passes
    the VIP list where the index belongs), so that cache can lose or repeat an app's other
    instances whatever the server sends; the by-VIP cache, filled from the same entries,
    shows what the server sent. The by-app differences seen while the by-VIP view was right
    are kept, once each, and printed at the end. The same version applies a MODIFIED entry
    without its UP filter: an instance that goes OUT_OF_SERVICE stays in the delta client's
    caches with that status, so its views are compared by their UP instances, those an
    application that reads the status would call."""

    def __init__(self, mesh: Mesh, full: Client, delta: Client) -> None:
        self.mesh, self.full, self.delta = mesh, full, delta
        self.names: tuple[set[str], set[str]] = (set(), set())
        self.by_app_differences: list[str] = []

    def check(self) -> str | None:
        by_vip, by_app = server_up(self.mesh)
        self.names[0].update(by_vip)
        self.names[1].update(by_app)
        full_vip, full_app = js_views(self.full, *self.names)
        delta_vip, delta_app = map(up_only, js_views(self.delta, *self.names))
        difference = f"by app {delta_app} != {by_app}"
        if (
            delta_vip == by_vip
            and delta_app != by_app
            and difference not in self.by_app_differences
        ):
            self.by_app_differences.append(difference)
        differences = [
            f"{name}: client {seen} != server {wanted}"
            for name, seen, wanted in [
                ("full fetches, by VIP", full_vip, by_vip),
                ("full fetches, by app", full_app, by_app),
                ("deltas, by VIP", delta_vip, by_vip),
            ]
            if seen != wanted
        ]
        return "; ".join(differences) or None


@needs_node
def test_eureka_js_clients_register_are_routed_call_a_sidecar_are_drained_and_follow_the_registry(
    mesh: Mesh, upstream: Callable[[str, str], int], tmp_path: Path
) -> None:
    installed = JS_DIR / "node_modules" / "eureka-js-client" / "package.json"
    if not installed.exists():
        pytest.fail(f"{installed} is missing: `make install` runs npm ci in {JS_DIR}")
    assert json.loads(installed.read_text())["version"] == JS_CLIENT_VERSION

    orders_port = upstream("orders", "orders-1")
    orders_1 = mesh.sidecar("orders", orders_port, "orders-1")
    py_port = upstream("pyorders", "pyorders-py")
    py_id = f"127.0.0.1:pyorders:{py_port}"
    py = start_py_client(mesh, py_port, tmp_path)
    full_port = upstream("jsorders", "jsorders-full")
    delta_port = upstream("jsorders", "jsorders-delta")
    full = start_js_client(mesh, "jsorders-full", full_port, use_delta=False, tmp_path=tmp_path)
    delta = start_js_client(mesh, "jsorders-delta", delta_port, use_delta=True, tmp_path=tmp_path)

    # Registered (the client starts heartbeats only after a 204): listed, UP.
    first = native(mesh, "jsorders")
    assert {first[full_port]["status"], first[delta_port]["status"]} == {"UP"}
    both = {"jsorders-full": "UP", "jsorders-delta": "UP"}
    settle(
        lambda: None if (shown := server_registry(mesh).get("JSORDERS")) == both else str(shown),
        "Eureka shows both UP (after the dev server's cache)",
    )

    # Routed to by the gateway: both instances' own servers answer through it.
    settle(
        lambda: (
            None
            if set(answered := gateway_answers(mesh, "jsorders", 10)) == set(both)
            else str(answered)
        ),
        "the gateway routes to both js clients' instances",
    )

    # Both discover the sidecar's and the py client's instances, and each other.
    watch = JsWatch(mesh, full, delta)
    follow = Follow(mesh, watch.check)
    follow(
        "the sidecar's and the py client's instances",
        lambda r: has("ORDERS", "orders-1")(r) and has("PYORDERS", py_id)(r),
    )
    for client in (full, delta):
        by_vip, _ = js_views(client, {"orders", "pyorders", "jsorders"}, set())
        assert set(by_vip) == {"orders", "pyorders", "jsorders"}, by_vip

    # Each calls the sidecar's instance, picked from its own cache (by app, by VIP), at the
    # address and port the registry lists for it.
    for client, pick in [(full, {"app": "ORDERS"}), (delta, {"vip": "orders"})]:
        called = client.ask("call", path="/hello", **pick)
        assert called["instance"]["instanceId"] == "orders-1", called
        assert called["url"] == f"http://127.0.0.1:{orders_port}/hello", called
        answer = called["body"]
        assert (called["status"], answer["service"], answer["instance"], answer["path"]) == (
            200,
            "orders",
            "orders-1",
            "/hello",
        )

    # The operator's drain of the delta client's instance (the OUT_OF_SERVICE override, an
    # admin token's) takes it out of the gateway's rotation and out of the other clients' UP
    # views: the full client's getters and py-eureka-client's up_instances.
    everyone = Follow(mesh, lambda: watch.check() or py_matches_server(mesh, py)())
    override(mesh, "JSORDERS", "jsorders-delta")
    assert native(mesh, "jsorders")[delta_port]["drained"] is True
    settle(
        lambda: (
            None
            if set(answered := gateway_answers(mesh, "jsorders", 20)) == {"jsorders-full"}
            else str(answered)
        ),
        "the drained instance leaves the gateway's rotation",
    )
    everyone("the drain", has("JSORDERS", "jsorders-delta", "OUT_OF_SERVICE"))
    assert py.ask("view")["up"]["JSORDERS"] == ["jsorders-full"]
    # The delta client learned it from the delta's MODIFIED entry, which it caches unfiltered.
    assert js_views(delta, {"jsorders"}, set())[0]["jsorders"] == {
        ("jsorders-full", "localhost", full_port, "UP"),
        ("jsorders-delta", "localhost", delta_port, "OUT_OF_SERVICE"),
    }

    # Its own heartbeats go on, renewing its lease, and do not undo the drain.
    drained_expiry = native(mesh, "jsorders")[delta_port]["expires_at"]
    settle(
        lambda: (
            None
            if native(mesh, "jsorders")[delta_port]["expires_at"] >= drained_expiry + 2 * INTERVAL
            else "not renewed"
        ),
        "the drained js client heartbeats",
    )
    assert native(mesh, "jsorders")[delta_port]["drained"] is True
    assert eureka_status(mesh, "JSORDERS", "jsorders-delta") == (
        "OUT_OF_SERVICE",
        "OUT_OF_SERVICE",
    )
    assert set(gateway_answers(mesh, "jsorders", 20)) == {"jsorders-full"}
    assert watch.check() is None

    # Lifting the drain brings it back in both places.
    override(mesh, "JSORDERS", "jsorders-delta", lift=True)
    assert native(mesh, "jsorders")[delta_port]["drained"] is False
    settle(
        lambda: None if "jsorders-delta" in gateway_answers(mesh, "jsorders", 10) else "not routed",
        "the instance is back in the gateway's rotation",
    )
    everyone("the drain lifted", has("JSORDERS", "jsorders-delta"))
    assert py.ask("view")["up"]["JSORDERS"] == ["jsorders-delta", "jsorders-full"]

    # Instances come and go; after each change both views converge to the registry's.
    register(mesh, "INVENTORY", "inventory-1", upstream("inventory", "inventory-1"), 60)
    follow("a new app's registration", has("INVENTORY", "inventory-1"))
    inventory_2 = upstream("inventory", "inventory-2")
    register(mesh, "INVENTORY", "inventory-2", inventory_2, 60)
    follow("its second registration", has("INVENTORY", "inventory-2"))
    orders_2 = mesh.sidecar("orders", upstream("orders", "orders-2"), "orders-2")
    follow("a sidecar's registration", has("ORDERS", "orders-2"))
    cancel(mesh, "INVENTORY", "inventory-2")
    follow("a cancel of an app's second instance", lacks("INVENTORY", "inventory-2"))
    orders_1.popen.send_signal(signal.SIGKILL)
    follow("a killed sidecar's lease lapsing", lacks("ORDERS", "orders-1"), SETTLE_SECONDS + LEASE)
    register(mesh, "INVENTORY", "inventory-2", inventory_2, 60)
    follow("a cancelled instance registering again", has("INVENTORY", "inventory-2"))
    assert py.ask("stop") == {"stopped": True}
    follow("a py client's stop", lacks("PYORDERS", py_id))
    orders_2.stop()
    follow("a sidecar's departure", lacks("ORDERS", "orders-2"))
    cancel(mesh, "INVENTORY", "inventory-1")
    cancel(mesh, "INVENTORY", "inventory-2")
    follow("an app's last cancels", lambda r: "INVENTORY" not in r)

    # Heartbeats kept both registered past a whole lease, without registering again.
    for port in (full_port, delta_port):
        settle(
            lambda: (
                None
                if native(mesh, "jsorders")[port]["expires_at"]
                >= first[port]["expires_at"] + CLIENT_LEASE
                else "lease not extended"
            ),
            "the js client's lease outlives a whole duration",
            timeout=2 * CLIENT_LEASE,
        )
        assert native(mesh, "jsorders")[port]["registered_at"] == first[port]["registered_at"]
    counts = {
        name: c.ask("view", vips=[], apps=[])["counts"]
        for name, c in [("full", full), ("delta", delta)]
    }
    assert counts["full"]["registered"] == counts["delta"]["registered"] == 1, counts
    assert counts["full"]["fullFetches"] > 1, counts
    assert counts["delta"]["fullFetches"] == 1, counts

    # stop() deregisters (the client counts only a 200 as done).
    for client in (full, delta):
        assert client.ask("stop")["counts"]["deregistered"] == 1
        assert client.process.popen.wait(10) == 0
    assert native(mesh, "jsorders") == {}
    print(f"delta client's by-app cache differed from the registry: {watch.by_app_differences}")
