"""Functional tier: the app through the local API Gateway's test client, DynamoDB from moto."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

import app as application
from chalicelib import wiring
from chalicelib.config import Settings
from chalicelib.storage import InstanceStore
from lambdamesh.demo_app import serve
from lambdamesh.localgateway import TestClient as Client
from lambdamesh.localgateway import create_test_client
from tests.helpers import SIGNING_KEY


@pytest.fixture
def environment(dynamodb_endpoint: str, table_name: str) -> dict[str, str]:
    return {
        "LAMBDAMESH_TABLE": table_name,
        "LAMBDAMESH_SIGNING_KEY": SIGNING_KEY,
        "LAMBDAMESH_SIGNING_KEY_PARAMETER": "",
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
        "LAMBDAMESH_ALLOW_LOOPBACK": "true",
        "LAMBDAMESH_ALLOW_PRIVATE": "false",
        "LAMBDAMESH_CACHE_SECONDS": "0",
        "LAMBDAMESH_CONNECT_TIMEOUT": "1",
        "LAMBDAMESH_READ_TIMEOUT": "2",
        "LAMBDAMESH_REQUEST_TIMEOUT": "3",
    }


@pytest.fixture
def store(environment: dict[str, str]) -> InstanceStore:
    settings = Settings.from_environ(environment)
    created = InstanceStore(settings)
    created.create_table()
    return created


@pytest.fixture
def client(environment: dict[str, str], store: InstanceStore) -> Iterator[Client]:
    wiring.reset()
    with create_test_client(application.app, environment_variables=environment) as test_client:
        yield test_client
    wiring.reset()


@dataclass
class Upstream:
    server: ThreadingHTTPServer

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


@pytest.fixture
def upstreams() -> Iterator[Callable[[str], Upstream]]:
    """Real HTTP servers on loopback, started on demand, stopped after the test."""
    started: list[ThreadingHTTPServer] = []

    def start(name: str) -> Upstream:
        server = serve("127.0.0.1", 0, name)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return Upstream(server)

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def body_json(response: Any) -> Any:
    return json.loads(response.body)
