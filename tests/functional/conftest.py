"""Functional tier: the app through the local API Gateway's test client, DynamoDB from moto."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from socketserver import BaseServer
from typing import Any

import boto3
import pytest

import app as application
from chalicelib import wiring
from chalicelib.config import Settings
from chalicelib.storage import InstanceStore
from lambdamesh.demo_app import serve
from lambdamesh.testclient import LANES, create_test_client
from lambdamesh.testclient import TestClient as Client
from tests.helpers import SIGNING_KEY


def functional_environment(dynamodb_endpoint: str, table_name: str) -> dict[str, str]:
    return {
        "LAMBDAMESH_TABLE": table_name,
        "LAMBDAMESH_SIGNING_KEY": SIGNING_KEY,
        "LAMBDAMESH_SIGNING_KEY_PARAMETER": "",
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
        "LAMBDAMESH_ALLOW_LOOPBACK": "true",
        # Serve every service as before exposure documents; the exposure tests close it.
        "LAMBDAMESH_EDGE_DEFAULT": "open",
        "LAMBDAMESH_ALLOW_PRIVATE": "false",
        "LAMBDAMESH_CACHE_SECONDS": "0",
        "LAMBDAMESH_CONNECT_TIMEOUT": "1",
        "LAMBDAMESH_READ_TIMEOUT": "2",
        "LAMBDAMESH_REQUEST_TIMEOUT": "3",
    }


@pytest.fixture
def environment(dynamodb_endpoint: str, table_name: str) -> dict[str, str]:
    """Names the session's table, which every test that asks for ``store`` finds empty."""
    return functional_environment(dynamodb_endpoint, table_name)


@pytest.fixture(scope="session")
def shared_table(dynamodb_endpoint: str, table_name: str) -> Any:
    """The registry table, created once: every test empties it before use (``store``)."""
    environment = functional_environment(dynamodb_endpoint, table_name)
    InstanceStore(Settings.from_environ(environment)).create_table()
    return boto3.resource("dynamodb", endpoint_url=dynamodb_endpoint).Table(table_name)


def empty(table: Any) -> None:
    """Delete every item, reading every scan page: a test may leave more than 1 MB behind."""
    keys = [key["AttributeName"] for key in table.key_schema]
    names = {f"#k{n}": key for n, key in enumerate(keys)}
    scan: dict[str, Any] = {
        "ProjectionExpression": ", ".join(names),
        "ExpressionAttributeNames": names,
    }
    found: list[dict[str, Any]] = []
    while True:
        page = table.scan(**scan)
        found += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    with table.batch_writer() as batch:
        for key in found:
            batch.delete_item(Key=key)


@pytest.fixture
def store(environment: dict[str, str], shared_table: Any) -> InstanceStore:
    """Over the session's table, emptied first: tests name services freely (most say
    ``orders``) and may list everything, as against a table of their own."""
    empty(shared_table)
    return InstanceStore(Settings.from_environ(environment))


@pytest.fixture(params=LANES)
def client(
    request: pytest.FixtureRequest, environment: dict[str, str], store: InstanceStore
) -> Iterator[Client]:
    """The app through each front door in turn: every test that asks for it runs through
    API Gateway's REST event and through a function URL's, and must pass through both."""
    wiring.reset()
    with create_test_client(
        application.app, environment_variables=environment, lane=request.param
    ) as test_client:
        yield test_client
    wiring.reset()


# serve_forever looks for shutdown() once per poll interval, half a second by default: a wait
# every test that stops a server would pay.
POLL_INTERVAL = 0.05


def serve_in_background(server: BaseServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, args=(POLL_INTERVAL,), daemon=True)
    thread.start()
    return thread


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
        serve_in_background(server)
        started.append(server)
        return Upstream(server)

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def body_json(response: Any) -> Any:
    return json.loads(response.body)
