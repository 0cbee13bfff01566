"""Service certificates from the registry: ``POST /registry/services/{service}/certificate``."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from cryptography import x509

import app as application
from chalicelib import wiring
from chalicelib.mesh_ca import MeshCA
from chalicelib.storage import InstanceStore
from lambdamesh.testclient import TestClient as Client
from lambdamesh.testclient import create_test_client
from tests.functional.conftest import body_json
from tests.helpers import admin_token, bearer, mesh_ca_text, service_token

PATH = "/registry/services/{}/certificate"


@pytest.fixture
def environment(environment: dict[str, str]) -> dict[str, str]:
    return {
        **environment,
        "LAMBDAMESH_MESH_CA": mesh_ca_text(),
        "LAMBDAMESH_STAGE": "prod",
        "LAMBDAMESH_MESH_CERT_SECONDS": "3600",
    }


def ask(client: Client, service: str, token: str | None) -> Any:
    headers = {} if token is None else bearer(token)
    return client.http.post(PATH.format(service), headers=headers)


def test_a_services_own_token_gets_a_certificate_naming_it_and_its_key_once(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    before = datetime.datetime.now(datetime.UTC)
    with caplog.at_level("INFO", logger="lambdamesh"):
        answer = ask(client, "orders", service_token("orders"))
    assert answer.status_code == 200, answer.body
    assert answer.headers["Cache-Control"] == "no-store"
    issued = body_json(answer)
    assert issued["identity"] == "spiffe://lambdamesh/prod/orders"
    certificate = x509.load_pem_x509_certificate(issued["certificate"].encode())
    ca = MeshCA.load(mesh_ca_text())
    certificate.verify_directly_issued_by(ca.signer)
    assert issued["trust_bundle"] == ca.trust_bundle
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n.value) for n in names] == [issued["identity"]]
    life = issued["not_after"] - before.timestamp()
    assert 3590 <= life <= 3610
    assert issued["renew_at"] == pytest.approx(issued["not_after"] - 1800, abs=5)
    assert issued["serial"] == f"{certificate.serial_number:x}"
    # Logged as issued, without the key.
    logged = "".join(str(vars(r)) for r in caplog.records)
    assert issued["serial"] in logged
    assert issued["private_key"].splitlines()[1] not in logged


def test_an_admin_token_gets_one_for_any_service(client: Client) -> None:
    answer = ask(client, "payments", admin_token())
    assert answer.status_code == 200, answer.body
    assert body_json(answer)["identity"] == "spiffe://lambdamesh/prod/payments"


@pytest.mark.parametrize(
    ("service", "token", "status", "code"),
    [
        ("payments", service_token("orders"), 403, "forbidden"),
        ("orders", None, 401, "unauthorized"),
        ("orders", "lm1.bad.token", 401, "unauthorized"),
        ("Orders", service_token("orders"), 400, "invalid_name"),
    ],
)
def test_no_one_else_gets_a_services_certificate(
    client: Client, service: str, token: str | None, status: int, code: str
) -> None:
    answer = ask(client, service, token)
    assert (answer.status_code, body_json(answer)["error"]["code"]) == (status, code), answer.body
    assert b"PRIVATE KEY" not in answer.body


@pytest.fixture
def client_with(environment: dict[str, str], store: InstanceStore) -> Iterator[Callable[..., Any]]:
    """Asks for a certificate through a client whose environment differs from the module's."""

    def ask_with(**changes: str) -> Any:
        """An empty value unsets a variable, the module's or the stage's own (in
        .chalice/config.json): the settings read a blank value as unset."""
        merged = {**environment, **changes}
        wiring.reset()
        with create_test_client(application.app, environment_variables=merged) as changed:
            return ask(changed, "orders", service_token("orders"))

    yield ask_with
    wiring.reset()


def test_a_stage_without_a_mesh_ca_says_so(client_with: Callable[..., Any]) -> None:
    answer = client_with(LAMBDAMESH_MESH_CA="", LAMBDAMESH_MESH_CA_SECRET="")
    assert answer.status_code == 500
    error = body_json(answer)["error"]
    assert error["code"] == "mesh_ca_not_configured"
    assert "LAMBDAMESH_MESH_CA_SECRET" in error["message"]


def test_a_ca_that_cannot_sign_says_why_and_never_shows_its_key(
    client_with: Callable[..., Any],
) -> None:
    text = mesh_ca_text()
    wrong = mesh_ca_text("other")
    mismatched = wrong[: wrong.index("-----BEGIN CERT")] + text[text.index("-----BEGIN CERT") :]
    answer = client_with(LAMBDAMESH_MESH_CA=mismatched)
    assert answer.status_code == 500
    error = body_json(answer)["error"]
    assert error["code"] == "mesh_ca_invalid"
    assert "does not belong" in error["message"]
    assert b"PRIVATE KEY" not in answer.body


def test_the_mesh_ca_is_read_from_its_secret_and_a_missing_secret_is_named(
    client_with: Callable[..., Any], dynamodb_endpoint: str
) -> None:
    secrets = boto3.client("secretsmanager", endpoint_url=dynamodb_endpoint)
    name = f"lambdamesh/test-{uuid.uuid4().hex[:8]}/mesh-ca"
    text = mesh_ca_text("from the secret")
    secrets.create_secret(Name=name, SecretString=text)
    from_secret = {"AWS_ENDPOINT_URL_SECRETS_MANAGER": dynamodb_endpoint, "LAMBDAMESH_MESH_CA": ""}
    answer = client_with(LAMBDAMESH_MESH_CA_SECRET=name, **from_secret)
    assert answer.status_code == 200, answer.body
    assert body_json(answer)["trust_bundle"] == MeshCA.load(text).trust_bundle

    answer = client_with(LAMBDAMESH_MESH_CA_SECRET=name + "-missing", **from_secret)
    assert answer.status_code == 500
    error = body_json(answer)["error"]
    assert (error["code"], error["message"]) == (
        "config_error",
        "the mesh CA is not available: server misconfiguration",
    )
