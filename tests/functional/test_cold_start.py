"""The cold start's one-time work: done while the function initialises on Lambda, so the first
request builds no client and reads no key; SnapStart's after-restore hook starts afresh.

DynamoDB and Secrets Manager are moto's server; SnapStart's ``snapshot_restore_py`` exists only
in the Lambda runtime, so a stand-in records what is registered with it.
"""

from __future__ import annotations

import types
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.session
import pytest

import app as application
from chalicelib import lifecycle, wiring
from chalicelib.storage import InstanceStore
from lambdamesh.testclient import TestClient as Client
from lambdamesh.testclient import create_test_client
from tests.functional.conftest import Upstream, body_json
from tests.helpers import SIGNING_KEY, bearer, service_token

LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "lambdamesh-prod"}


class Calls:
    """Counts botocore clients built and secrets read, by service and operation."""

    def __init__(self) -> None:
        self.clients: list[str] = []
        self.operations: list[str] = []

    def record(self, event_name: str, **_: Any) -> None:
        self.operations.append(event_name.split(".", 1)[1])


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    seen = Calls()
    create_client = botocore.session.Session.create_client

    def counting(self: botocore.session.Session, service_name: str, *a: Any, **k: Any) -> Any:
        seen.clients.append(service_name)
        client = create_client(self, service_name, *a, **k)
        client.meta.events.register("before-call.*.*", seen.record)
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", counting)
    return seen


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> list[Callable[[], None]]:
    """A stand-in for the runtime's ``snapshot_restore_py``: records the after-restore hooks."""
    registered: list[Callable[[], None]] = []
    module = types.ModuleType(lifecycle.SNAPSTART_HOOKS_MODULE)
    module.register_after_restore = registered.append  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, lifecycle.SNAPSTART_HOOKS_MODULE, module)
    return registered


@pytest.fixture
def deployed(
    environment: dict[str, str],
    store: InstanceStore,
    dynamodb_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    """The environment of a deployed stage: the key in Secrets Manager, set in os.environ
    as Lambda sets it before the handler module is imported."""
    name = f"lambdamesh/test-{uuid.uuid4().hex[:8]}/signing-key"
    boto3.client("secretsmanager", endpoint_url=dynamodb_endpoint).create_secret(
        Name=name, SecretString=SIGNING_KEY
    )
    values = {
        **environment,
        "LAMBDAMESH_SIGNING_KEY": "",
        "LAMBDAMESH_SIGNING_KEY_SECRET": name,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": dynamodb_endpoint,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    wiring.reset()
    yield values
    wiring.reset()


def client_for(environment: dict[str, str]) -> Client:
    return create_test_client(application.app, environment_variables=environment)


def register(client: Client, port: int) -> None:
    answer = client.http.put(
        "/registry/services/orders/instances/a",
        headers={**bearer(service_token("orders")), "Content-Type": "application/json"},
        body=f'{{"version": "v1", "host": "127.0.0.1", "port": {port}}}',
    )
    assert answer.status_code == 201, answer.body


def test_outside_lambda_initialise_builds_nothing(deployed: dict[str, str], calls: Calls) -> None:
    assert lifecycle.initialise({}) is False

    assert calls.clients == []
    assert wiring.store.cache_info().currsize == 0


def test_on_lambda_the_first_request_builds_no_client_and_reads_no_key(
    deployed: dict[str, str], calls: Calls, upstreams: Callable[[str], Upstream]
) -> None:
    assert lifecycle.initialise(LAMBDA) is True

    assert sorted(calls.clients) == ["dynamodb", "secretsmanager"]
    assert calls.operations == ["secrets-manager.GetSecretValue"]
    calls.clients.clear()
    calls.operations.clear()
    upstream = upstreams("orders")
    client = client_for(deployed)
    register(client, upstream.port)
    answer = client.http.get("/api/v1/orders/v1/x")

    assert answer.status_code == 200
    assert body_json(answer)["path"] == "/x"
    assert calls.clients == []
    assert "secrets-manager.GetSecretValue" not in calls.operations


def test_after_a_restore_connections_and_key_are_new_and_requests_still_work(
    deployed: dict[str, str],
    calls: Calls,
    hooks: list[Callable[[], None]],
    upstreams: Callable[[str], Upstream],
) -> None:
    lifecycle.initialise(LAMBDA)
    assert len(hooks) == 1
    gateway_before = wiring.gateway()
    calls.operations.clear()

    hooks[0]()

    assert wiring.gateway() is not gateway_before
    assert calls.operations == ["secrets-manager.GetSecretValue"]
    upstream = upstreams("orders")
    client = client_for(deployed)
    register(client, upstream.port)
    assert client.http.get("/api/v1/orders/v1/").status_code == 200
    assert sorted(calls.clients) == ["dynamodb", "secretsmanager"]  # the same two, reused


def test_a_key_store_that_cannot_be_read_does_not_fail_initialisation(
    deployed: dict[str, str],
    calls: Calls,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("LAMBDAMESH_SIGNING_KEY_SECRET", "lambdamesh/absent/signing-key")
    wiring.reset()

    assert lifecycle.initialise(LAMBDA) is True

    assert "the signing key was not read at initialisation" in caplog.text
    assert SIGNING_KEY not in caplog.text
    answer = client_for({**deployed, "LAMBDAMESH_SIGNING_KEY_SECRET": "lambdamesh/absent/x"})
    assert (
        answer.http.get("/registry/services", headers=bearer(service_token("orders"))).status_code
        == 500
    )


def test_any_other_failure_while_priming_is_logged_not_raised(
    deployed: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("no region")

    monkeypatch.setattr(wiring, "prime", broken)

    assert lifecycle.initialise(LAMBDA) is True
    [record] = [r for r in caplog.records if "cold start work" in r.getMessage()]
    assert record.__dict__["reason"] == "RuntimeError: no region"
