"""How the app behaves with the settings of a deployed stage: the signing key from Secrets
Manager, key stores and tables that cannot be reached, and a stage that would expose the VPC."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import boto3
import pytest

import app as application
from chalicelib import wiring
from chalicelib.auth import issue
from lambdamesh.testclient import TestClient as Client
from lambdamesh.testclient import TestResponse as Response
from lambdamesh.testclient import create_test_client
from tests.functional.conftest import body_json
from tests.helpers import bearer

NEW_KEY = "new-signing-key-0123456789abcdef"
OLD_KEY = "old-signing-key-0123456789abcdef"
REGISTRATION = {"version": "v1", "host": "127.0.0.1", "port": 8080}

ClientFactory = Callable[..., Client]


@pytest.fixture
def make_client(environment: dict[str, str], store: object) -> Iterator[ClientFactory]:
    """A test client over the functional environment, changed by keyword arguments (an
    empty value removes a variable): every client is a fresh cold start."""
    opened: list[Client] = []

    def make(**changes: str) -> Client:
        merged = {**environment, **changes}
        wiring.reset()
        context = create_test_client(
            application.app, environment_variables={k: v for k, v in merged.items() if v}
        )
        opened.append(context)
        return context.__enter__()

    yield make
    for context in opened:
        context.__exit__(None, None, None)
    wiring.reset()


@pytest.fixture
def secret(dynamodb_endpoint: str) -> Callable[[str], str]:
    """A Secrets Manager secret on the moto server; returns its name."""
    client = boto3.client("secretsmanager", endpoint_url=dynamodb_endpoint)

    def create(value: str) -> str:
        name = f"lambdamesh/test-{uuid.uuid4().hex[:8]}/signing-key"
        client.create_secret(Name=name, SecretString=value)
        return name

    return create


def key_from_secret(name: str, endpoint: str) -> dict[str, str]:
    return {
        "LAMBDAMESH_SIGNING_KEY": "",
        "LAMBDAMESH_SIGNING_KEY_SECRET": name,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint,
    }


def register(client: Client, key: str, host: str = "127.0.0.1") -> Response:
    return client.http.put(
        f"/registry/services/orders/instances/i-{uuid.uuid4().hex[:8]}",
        headers={
            **bearer(issue(key.encode(), service="orders")),
            "Content-Type": "application/json",
        },
        body=f'{{"version": "v1", "host": "{host}", "port": 8080}}',
    )


@contextmanager
def silent_port() -> Iterator[str]:
    """An endpoint that accepts connections and never answers: a store with no route back."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_tokens_are_verified_with_the_key_held_in_secrets_manager(
    make_client: ClientFactory, secret: Callable[[str], str], dynamodb_endpoint: str
) -> None:
    client = make_client(**key_from_secret(secret(NEW_KEY), dynamodb_endpoint))

    assert register(client, NEW_KEY).status_code == 201
    assert register(client, OLD_KEY).status_code == 401


def test_rotation_accepts_both_keys_then_only_the_new_one(
    make_client: ClientFactory, secret: Callable[[str], str], dynamodb_endpoint: str
) -> None:
    name = secret(f"{NEW_KEY},{OLD_KEY}")
    during = make_client(**key_from_secret(name, dynamodb_endpoint))

    assert register(during, NEW_KEY).status_code == 201
    assert register(during, OLD_KEY).status_code == 201

    boto3.client("secretsmanager", endpoint_url=dynamodb_endpoint).put_secret_value(
        SecretId=name, SecretString=NEW_KEY
    )
    after = make_client(**key_from_secret(name, dynamodb_endpoint))

    assert register(after, NEW_KEY).status_code == 201
    assert register(after, OLD_KEY).status_code == 401


def test_a_key_store_that_never_answers_gets_a_quick_503_with_retry_after(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with silent_port() as endpoint:
        client = make_client(**key_from_secret("lambdamesh/prod/signing-key", endpoint))
        with caplog.at_level("WARNING", logger="lambdamesh"):
            response = register(client, NEW_KEY)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert body_json(response)["error"]["code"] == "key_store_unavailable"
    [record] = [r for r in caplog.records if r.getMessage().startswith("the key store")]
    assert "timeout" in vars(record)["cause"].lower()
    assert vars(record)["key_store_item"] == "lambdamesh/prod/signing-key"


def test_a_refused_key_store_connection_gets_a_503_too(make_client: ClientFactory) -> None:
    client = make_client(**key_from_secret("lambdamesh/prod/signing-key", closed_port()))

    response = register(client, NEW_KEY)

    assert response.status_code == 503
    assert body_json(response)["error"]["code"] == "key_store_unavailable"


def test_a_missing_secret_is_a_configuration_error_not_a_retry(
    make_client: ClientFactory, dynamodb_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(**key_from_secret("lambdamesh/nowhere/signing-key", dynamodb_endpoint))

    with caplog.at_level("ERROR", logger="lambdamesh"):
        response = register(client, NEW_KEY)

    assert response.status_code == 500
    assert "Retry-After" not in response.headers
    assert body_json(response)["error"]["code"] == "config_error"
    [record] = [
        r for r in caplog.records if r.getMessage() == "the token signing key cannot be read"
    ]
    assert vars(record)["error_code"] == "ResourceNotFoundException"


@pytest.mark.parametrize("unreachable", ["closed", "silent"])
def test_an_unreachable_table_answers_503_with_retry_after(
    make_client: ClientFactory, environment: dict[str, str], unreachable: str
) -> None:
    with silent_port() as silent:
        endpoint = closed_port() if unreachable == "closed" else silent
        client = make_client(AWS_ENDPOINT_URL_DYNAMODB=endpoint)
        key = environment["LAMBDAMESH_SIGNING_KEY"]
        registered = register(client, key)
        health = client.http.get("/health")

    assert registered.status_code == 503
    assert registered.headers["Retry-After"] == "2"
    assert body_json(registered)["error"]["code"] == "registry_unavailable"
    assert health.status_code == 503


class TestAStageThatAllowsPrivateUpstreamsWithoutNetworks:
    @pytest.fixture
    def client(self, make_client: ClientFactory) -> Client:
        return make_client(LAMBDAMESH_ALLOW_PRIVATE="true", LAMBDAMESH_ALLOWED_NETWORKS="")

    def test_health_says_why_it_will_not_route(self, client: Client) -> None:
        response = client.http.get("/health")

        assert response.status_code == 503
        assert body_json(response)["status"] == "misconfigured"
        assert "LAMBDAMESH_ALLOWED_NETWORKS" in body_json(response)["reason"]

    def test_the_gateway_routes_nothing(self, client: Client) -> None:
        response = client.http.get("/api/v1/orders/v1/anything")

        assert response.status_code == 500
        assert body_json(response)["error"]["code"] == "gateway_misconfigured"

    def test_private_hosts_are_refused_at_registration(
        self, client: Client, environment: dict[str, str]
    ) -> None:
        response = register(client, environment["LAMBDAMESH_SIGNING_KEY"], host="10.0.1.23")

        assert response.status_code == 400
        assert body_json(response)["error"]["code"] == "host_not_allowed"

    def test_the_cold_start_logs_the_reason(
        self, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level("ERROR", logger="lambdamesh"):
            make_client(LAMBDAMESH_ALLOW_PRIVATE="true").http.get("/health")

        [record] = [r for r in caplog.records if r.getMessage() == "the gateway will route nothing"]
        assert "LAMBDAMESH_ALLOWED_NETWORKS" in vars(record)["reason"]


def test_named_networks_make_the_stage_route_and_bound_registrations(
    make_client: ClientFactory, environment: dict[str, str]
) -> None:
    client = make_client(
        LAMBDAMESH_ALLOW_PRIVATE="true", LAMBDAMESH_ALLOWED_NETWORKS="10.0.0.0/20,127.0.0.0/8"
    )
    key = environment["LAMBDAMESH_SIGNING_KEY"]

    assert client.http.get("/health").status_code == 200
    assert register(client, key, host="10.0.1.23").status_code == 201
    assert register(client, key, host="10.0.99.1").status_code == 400
