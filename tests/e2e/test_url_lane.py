"""`lambdamesh dev --url-port`: a sidecar whose LAMBDAMESH_URL is the function URL lane
registers, heartbeats and leaves through it, and the gateway routes through both lanes."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Mesh
from tests.e2e.processes import Process, eventually, http, spawn
from tests.helpers import SIGNING_KEY, admin_token, bearer


@pytest.fixture(scope="module")
def two_lanes() -> Iterator[Process]:
    process = spawn(
        "lambdamesh-dev-url-lane",
        ["-m", "lambdamesh.cli", "dev", "--port", "0", "--url-port", "0"],
        env={
            "LAMBDAMESH_SIGNING_KEY": SIGNING_KEY,
            "AWS_ENDPOINT_URL_DYNAMODB": "",
            "LAMBDAMESH_EDGE_DEFAULT": "open",
        },
    )
    process.wait_for_line(r"ready on (http://\S+)")
    yield process
    assert process.stop() == 0, process.output


@pytest.fixture
def mesh(two_lanes: Process) -> Iterator[Mesh]:
    created = Mesh(two_lanes.wait_for_line(r"ready on (http://\S+)").group(1))
    yield created
    for process in reversed(created.processes):
        process.stop()


def url_lane(two_lanes: Process) -> str:
    return two_lanes.wait_for_line(r"function URL lane on (http://\S+)").group(1)


def expires_at(mesh: Mesh, service: str) -> float:
    answer = mesh.get(f"/registry/services/{service}/instances", headers=bearer(admin_token()))
    instances = answer.json()["instances"]
    return float(instances[0]["expires_at"]) if instances else 0.0


def test_the_dev_server_announces_a_function_url_lane_on_its_own_port(
    two_lanes: Process, mesh: Mesh
) -> None:
    lane = url_lane(two_lanes)

    assert lane.startswith("http://127.0.0.1:")
    assert lane != mesh.url


def test_a_sidecar_on_the_url_lane_registers_heartbeats_and_is_routed_on_both_lanes(
    two_lanes: Process, mesh: Mesh
) -> None:
    lane = url_lane(two_lanes)
    _, port = mesh.upstream("lane")
    mesh.sidecar("lane", port, "lane-0", LAMBDAMESH_URL=lane)
    eventually(lambda: mesh.live("lane") == {"lane-0"}, 20, "instance never registered")
    first = expires_at(mesh, "lane")
    eventually(lambda: expires_at(mesh, "lane") > first, 20, "no heartbeat arrived")

    through_rest = mesh.get("/api/v1/lane/v1/")
    through_url = http("GET", lane + "/api/v1/lane/v1/")

    assert through_rest.status == 200, through_rest.body
    assert through_url.status == 200, through_url.body
    assert through_rest.headers["X-Served-By"] == f"lane:{port}"
    assert through_url.headers["X-Served-By"] == f"lane:{port}"


def test_sigterm_on_a_url_lane_sidecar_deregisters_its_instance(
    two_lanes: Process, mesh: Mesh
) -> None:
    _, port = mesh.upstream("gone")
    leaving = mesh.sidecar("gone", port, "gone-0", LAMBDAMESH_URL=url_lane(two_lanes))
    eventually(lambda: mesh.live("gone") == {"gone-0"}, 20, "instance never registered")

    leaving.signal(signal.SIGTERM)

    assert leaving.popen.wait(10) == 0, leaving.output
    assert mesh.live("gone") == set()
