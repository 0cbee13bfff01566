"""DynamoDB going away in the middle of traffic and coming back, with real processes.

`lambdamesh dev` reaches moto's server through a TCP proxy that the test cuts and restores.
While DynamoDB is gone, routing goes on from the last instance lists, registry writes answer
503 with Retry-After, /health answers 503, and the sidecars keep their tasks running. After it
comes back, the sidecars register again by themselves, and an instance that stopped meanwhile
does not come back.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Mesh
from tests.e2e.processes import Process, eventually, spawn
from tests.e2e.tcpproxy import TcpProxy
from tests.helpers import SIGNING_KEY, admin_token, bearer


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[TcpProxy]:
    from lambdamesh.devserver import EmbeddedDynamoDB

    server = EmbeddedDynamoDB()
    url = server.start()
    host, port = url.removeprefix("http://").split(":")
    proxy = TcpProxy((host, int(port)))
    proxy.start()
    yield proxy
    proxy.cut()
    server.stop()


@pytest.fixture(scope="module")
def dev_behind_proxy(dynamodb: TcpProxy) -> Iterator[Process]:
    process = spawn(
        "lambdamesh-dev-faults",
        ["-m", "lambdamesh.cli", "dev", "--port", "0", "--dynamodb-endpoint", dynamodb.url],
        env={
            "LAMBDAMESH_SIGNING_KEY": SIGNING_KEY,
            "LAMBDAMESH_STALE_SECONDS": "60",
            "LAMBDAMESH_EDGE_DEFAULT": "open",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        },
    )
    process.wait_for_line(r"ready on (http://\S+)")
    yield process
    assert process.stop() == 0, process.output


@pytest.fixture
def faulty_mesh(dev_behind_proxy: Process) -> Iterator[Mesh]:
    url = dev_behind_proxy.wait_for_line(r"ready on (http://\S+)").group(1)
    created = Mesh(url)
    yield created
    for process in reversed(created.processes):
        process.stop()


def routes(mesh: Mesh) -> bool:
    """True when the gateway routed to an instance of the service."""
    return mesh.get("/api/v1/steady/v1/").status == 200


def test_an_outage_keeps_routing_refuses_writes_and_heals_without_resurrections(
    faulty_mesh: Mesh, dynamodb: TcpProxy
) -> None:
    mesh = faulty_mesh
    _, survivor, _ = mesh.instance("steady", "steady-0")
    app, leaver, _ = mesh.instance("steady", "steady-1")
    eventually(lambda: mesh.live("steady") == {"steady-0", "steady-1"}, 20, "never registered")
    eventually(lambda: routes(mesh), 10, "never routed")

    dynamodb.cut()

    routed = mesh.get("/api/v1/steady/v1/")
    assert routed.status == 200, routed.body
    write = mesh.put(
        "/registry/services/steady/instances/steady-9",
        {"version": "v1", "host": "127.0.0.1", "port": 9},
    )
    assert write.status == 503, write.body
    assert write.headers["Retry-After"]
    assert write.json()["error"]["code"] == "registry_unavailable"
    assert mesh.get("/health").status == 503
    listed = mesh.get("/registry/services/steady/instances", headers=bearer(admin_token()))
    assert listed.status == 503
    leaver.stop()
    app.stop()
    # Outlast every lease: the stale lists still check expiry, so routing ends with them.
    eventually(lambda: mesh.get("/api/v1/steady/v1/").status == 503, 20, "leases never ran out")
    survivor_log = len(survivor.lines)

    dynamodb.start()

    eventually(lambda: "steady-0" in mesh.live("steady"), 60, "the survivor never came back")
    assert survivor.popen.poll() is None, "the sidecar gave up during the outage"
    assert any("503" in line or "unavailable" in line for line in survivor.lines[:survivor_log])
    assert mesh.live("steady") == {"steady-0"}
    eventually(lambda: routes(mesh), 10, "routing never recovered")
