"""`lambdamesh policy` and `lambdamesh drain` against a running `lambdamesh dev`, as an
operator runs them: the answer on standard output, one line on standard error, exit codes a
script can rely on."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.processes import ROOT, Process, http
from tests.e2e.test_cli import run_cli
from tests.helpers import admin_token, service_token

CANARY = {"aliases": {"live": {"split": {"v1": 95, "v2": 5}}}, "strategy": "random"}


@pytest.fixture
def api(dev_server: Process) -> Iterator[dict[str, str]]:
    url = dev_server.wait_for_line(r"ready on (http://\S+)").group(1)
    yield {"LAMBDAMESH_URL": url, "LAMBDAMESH_TOKEN": admin_token()}
    run_cli(
        "policy", "delete", "orders", env={"LAMBDAMESH_URL": url, "LAMBDAMESH_TOKEN": admin_token()}
    )


def test_set_show_and_delete_a_policy(api: dict[str, str], tmp_path: Path) -> None:
    document = tmp_path / "policy.json"
    document.write_text(json.dumps(CANARY))

    stored = run_cli("policy", "set", "orders", "--file", str(document), env=api)
    shown = run_cli("policy", "show", "orders", env=api)
    deleted = run_cli("policy", "delete", "orders", env=api)
    gone = run_cli("policy", "show", "orders", env=api)

    assert stored.returncode == 0, stored.stderr
    assert json.loads(shown.stdout)["policy"]["aliases"]["live"]["split"] == {"v1": 95, "v2": 5}
    assert deleted.returncode == 0 and "defaults apply" in deleted.stdout
    assert gone.returncode == 3
    assert (
        gone.stderr
        == "lambdamesh: policy_not_found: service 'orders' has no routing policy: defaults apply\n"
    )


def test_the_policy_may_come_from_standard_input_and_url_and_token_from_flags(
    api: dict[str, str],
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lambdamesh.cli",
            "policy",
            "set",
            "orders",
            "--file",
            "-",
            "--url",
            api["LAMBDAMESH_URL"],
            "--token",
            api["LAMBDAMESH_TOKEN"],
        ],
        cwd=ROOT,
        input=json.dumps(CANARY),
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["policy"]["strategy"] == "random"


def test_a_refused_policy_exits_4_with_the_apis_code_in_one_line(
    api: dict[str, str], tmp_path: Path
) -> None:
    document = tmp_path / "policy.json"
    document.write_text(json.dumps({"strategy": "fastest"}))

    refused = run_cli("policy", "set", "orders", "--file", str(document), env=api)
    not_admin = run_cli(
        "policy", "delete", "orders", env={**api, "LAMBDAMESH_TOKEN": service_token("orders")}
    )

    assert refused.returncode == 4
    assert refused.stderr.startswith("lambdamesh: invalid_request: invalid body: strategy")
    assert refused.stderr.count("\n") == 1
    assert not_admin.returncode == 4
    assert not_admin.stderr.startswith("lambdamesh: forbidden: ")


def test_usage_errors_exit_2_and_an_unreachable_registry_exits_5(tmp_path: Path) -> None:
    document = tmp_path / "policy.json"
    document.write_text("{not json")

    no_url = run_cli(
        "policy", "show", "orders", env={"LAMBDAMESH_URL": "", "LAMBDAMESH_TOKEN": "x"}
    )
    bad_file = run_cli(
        "policy",
        "set",
        "orders",
        "--file",
        str(document),
        env={"LAMBDAMESH_URL": "http://127.0.0.1:9", "LAMBDAMESH_TOKEN": "x"},
    )
    unreachable = run_cli(
        "policy",
        "show",
        "orders",
        env={"LAMBDAMESH_URL": "http://127.0.0.1:9", "LAMBDAMESH_TOKEN": "x"},
    )

    assert (no_url.returncode, bad_file.returncode, unreachable.returncode) == (2, 2, 5)
    assert "LAMBDAMESH_URL" in no_url.stderr
    assert "is not JSON" in bad_file.stderr
    assert unreachable.stderr.startswith("lambdamesh: cannot reach http://127.0.0.1:9")


def test_drain_and_lift_an_instance(api: dict[str, str]) -> None:
    registered = http(
        "PUT",
        api["LAMBDAMESH_URL"] + "/registry/services/orders/instances/cli-0",
        json.dumps({"version": "v1", "host": "127.0.0.1", "port": 9, "lease_seconds": 60}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {service_token('orders')}"},
    )
    assert registered.status in (200, 201)

    drained = run_cli("drain", "orders", "cli-0", env=api)
    listed = http(
        "GET",
        api["LAMBDAMESH_URL"] + "/registry/services/orders/instances",
        None,
        {"Authorization": f"Bearer {api['LAMBDAMESH_TOKEN']}"},
    ).json()["instances"]
    lifted = run_cli("drain", "orders", "cli-0", "--lift", env=api)
    again = run_cli("drain", "orders", "cli-0", "--lift", env=api)

    assert drained.returncode == 0 and "out of rotation" in drained.stdout
    assert [i["drained"] for i in listed if i["instance_id"] == "cli-0"] == [True]
    assert lifted.returncode == 0 and "back in rotation" in lifted.stdout
    assert again.returncode == 3
    assert again.stderr.startswith("lambdamesh: instance_not_found: ")


def register_instance(api: dict[str, str], instance: str, version: str = "v1") -> None:
    answer = http(
        "PUT",
        api["LAMBDAMESH_URL"] + f"/registry/services/catalog/instances/{instance}",
        json.dumps(
            {"version": version, "host": "127.0.0.1", "port": 9, "lease_seconds": 60}
        ).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {service_token('catalog')}"},
    )
    assert answer.status in (200, 201), answer.body


def test_services_instances_and_deregister_as_tables_or_json(api: dict[str, str]) -> None:
    register_instance(api, "cat-1", "v1")
    register_instance(api, "cat-2", "v2")
    as_service = {**api, "LAMBDAMESH_TOKEN": service_token("catalog")}

    services = run_cli("services", env=api)
    services_json = run_cli("services", "--json", env=api)
    instances = run_cli("instances", "catalog", "--version", "v2", env=api)
    deregistered = run_cli("deregister", "catalog", "cat-2", env=as_service)
    after = run_cli("instances", "catalog", "--json", env=api)

    assert services.returncode == 0, services.stderr
    header, *rows = services.stdout.splitlines()
    assert header.split()[:3] == ["SERVICE", "LIVE", "STORED"]
    assert any(r.split()[:3] == ["catalog", "2", "2"] for r in rows)
    assert "catalog" in {s["service"] for s in json.loads(services_json.stdout)["services"]}
    [row] = instances.stdout.splitlines()[1:]
    assert row.split()[:6] == ["cat-2", "v2", "127.0.0.1", "9", "-", "UP"]
    assert deregistered.returncode == 0 and "deregistered" in deregistered.stdout
    assert [i["instance_id"] for i in json.loads(after.stdout)["instances"]] == ["cat-1"]


def test_a_bad_token_exits_4_with_one_line(api: dict[str, str]) -> None:
    refused = run_cli("services", env={**api, "LAMBDAMESH_TOKEN": "lm1.nope.nope"})

    assert refused.returncode == 4
    assert refused.stderr.startswith("lambdamesh: unauthorized: ")
    assert refused.stderr.count("\n") == 1


class Recording(BaseHTTPRequestHandler):
    """Records each request's headers; answers with a redirect to ``server.location`` when
    it has one (the registry URL), else a list of services (another origin)."""

    server: RecordingServer

    def do_GET(self) -> None:
        self.server.received.append(dict(self.headers.items()))
        body = b"" if self.server.location else b'{"services": []}'
        self.send_response(self.server.status)
        if self.server.location:
            self.send_header("Location", self.server.location + self.path)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_DELETE = do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


class RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status: int = 200, location: str = "") -> None:
        super().__init__(("127.0.0.1", 0), Recording)
        self.received: list[dict[str, str]] = []
        self.status, self.location = status, location
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_is_never_followed_so_the_token_never_reaches_another_origin(
    status: int,
) -> None:
    elsewhere = RecordingServer()
    registry = RecordingServer(status, elsewhere.url)
    local = {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    try:
        listed = run_cli(
            "services", env={"LAMBDAMESH_URL": registry.url, "LAMBDAMESH_TOKEN": "t0ken", **local}
        )
    finally:
        registry.close()
        elsewhere.close()

    assert [r.get("Authorization") for r in registry.received] == ["Bearer t0ken"]
    assert elsewhere.received == []  # no request, so no Authorization header, ever reached it
    assert listed.returncode == 4
    assert listed.stderr.startswith(
        f"lambdamesh: registry_redirected: the registry URL answered {status}"
    )
    assert f"{elsewhere.url}/registry/services" in listed.stderr
    assert listed.stderr.count("\n") == 1
