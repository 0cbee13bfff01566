"""End-to-end tier: `lambdamesh dev` with its moto server, upstream apps and sidecars, all
real processes on loopback, stopped with real signals."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.e2e.processes import Answer, Process, http, spawn
from tests.helpers import SIGNING_KEY, admin_token, bearer, service_token

HEARTBEAT_SECONDS = "0.5"
LEASE_SECONDS = "5"


@dataclass
class Mesh:
    url: str
    processes: list[Process] = field(default_factory=list)

    def get(self, path: str, **kwargs: object) -> Answer:
        return http("GET", self.url + path, **kwargs)  # type: ignore[arg-type]

    def upstream(self, name: str) -> tuple[Process, int]:
        process = spawn(f"app-{name}", ["-m", "lambdamesh.demo_app", "--port", "0", "--name", name])
        self.processes.append(process)
        port = int(process.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        return process, port

    def sidecar(
        self, service: str, port: int, instance_id: str, version: str = "v1", **env: str
    ) -> Process:
        settings = {
            "LAMBDAMESH_URL": self.url,
            "LAMBDAMESH_TOKEN": service_token(service),
            "LAMBDAMESH_SERVICE": service,
            "LAMBDAMESH_VERSION": version,
            "LAMBDAMESH_HOST": "127.0.0.1",
            "LAMBDAMESH_PORT": str(port),
            "LAMBDAMESH_INSTANCE_ID": instance_id,
            "LAMBDAMESH_HEARTBEAT_SECONDS": HEARTBEAT_SECONDS,
            "LAMBDAMESH_LEASE_SECONDS": LEASE_SECONDS,
            "LAMBDAMESH_DRAIN_SECONDS": "0",
            **env,
        }
        process = spawn(f"sidecar-{instance_id}", ["-m", "lambdamesh_sidecar"], env=settings)
        self.processes.append(process)
        return process

    def instance(self, service: str, instance_id: str) -> tuple[Process, Process, int]:
        app, port = self.upstream(service)
        return app, self.sidecar(service, port, instance_id), port

    def live(self, service: str) -> set[str]:
        answer = self.get(f"/registry/services/{service}/instances", headers=bearer(admin_token()))
        assert answer.status == 200, answer.body
        return {i["instance_id"] for i in answer.json()["instances"]}

    def put(self, path: str, body: object, token: str | None = None) -> Answer:
        headers = {"Content-Type": "application/json", **bearer(token or admin_token())}
        return http("PUT", self.url + path, json.dumps(body).encode(), headers)


@pytest.fixture(scope="module")
def dev_server() -> Iterator[Process]:
    process = spawn(
        "lambdamesh-dev",
        ["-m", "lambdamesh.cli", "dev", "--port", "0"],
        env={
            "LAMBDAMESH_SIGNING_KEY": SIGNING_KEY,
            "LAMBDAMESH_READ_TIMEOUT": "2",
            "LAMBDAMESH_CONNECT_TIMEOUT": "1",
            "AWS_ENDPOINT_URL_DYNAMODB": "",
            # Every registered service is served; the exposure tests run their own server.
            "LAMBDAMESH_EDGE_DEFAULT": "open",
        },
    )
    process.wait_for_line(r"ready on (http://\S+)")
    yield process
    assert process.stop() == 0, process.output


@pytest.fixture
def mesh(dev_server: Process) -> Iterator[Mesh]:
    url = dev_server.wait_for_line(r"ready on (http://\S+)").group(1)
    created = Mesh(url)
    yield created
    for process in reversed(created.processes):
        process.signal(15)
    for process in reversed(created.processes):
        process.stop()


Spawner = Callable[[str], tuple[Process, int]]
