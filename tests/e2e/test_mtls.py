"""Mutual TLS end to end, real processes on loopback: `lambdamesh dev` with a mesh CA this
module made, payments served strict behind its sidecar's inbound port, orders calling it
through its own sidecar's outbound port, the gateway calling it too, and callers the service
must refuse (none of which its app ever sees)."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
from collections.abc import Iterator
from http.client import HTTPConnection, HTTPSConnection
from pathlib import Path
from typing import Any

import pytest

from chalicelib.mesh_ca import MeshCA, new_authority
from lambdamesh_routing.identity import Identity
from lambdamesh_routing.tls import mesh_contexts
from tests.e2e.conftest import Mesh
from tests.e2e.processes import Process, eventually, http, spawn
from tests.helpers import SIGNING_KEY, admin_token, bearer, service_token

STAGE = "e2e"
SINCE = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
CA_TEXT = new_authority("e2e mesh CA", SINCE, datetime.timedelta(days=30))
CA = MeshCA.load(CA_TEXT)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def mtls_server() -> Iterator[Process]:
    process = spawn(
        "lambdamesh-dev-mtls",
        ["-m", "lambdamesh.cli", "dev", "--port", "0"],
        env={
            "LAMBDAMESH_SIGNING_KEY": SIGNING_KEY,
            "LAMBDAMESH_MESH_CA": CA_TEXT,
            "LAMBDAMESH_STAGE": STAGE,
            "LAMBDAMESH_MTLS_DEFAULT": "strict",
            "LAMBDAMESH_READ_TIMEOUT": "2",
            "LAMBDAMESH_CONNECT_TIMEOUT": "1",
            "AWS_ENDPOINT_URL_DYNAMODB": "",
            "LAMBDAMESH_EDGE_DEFAULT": "open",
        },
    )
    process.wait_for_line(r"ready on (http://\S+)")
    yield process
    assert process.stop() == 0, process.output


@pytest.fixture
def mesh(mtls_server: Process) -> Iterator[Mesh]:
    created = Mesh(mtls_server.wait_for_line(r"ready on (http://\S+)").group(1))
    yield created
    for process in reversed(created.processes):
        process.signal(15)
    for process in reversed(created.processes):
        process.stop()


def certificate(service: str, tmp_path: Path, **when: Any) -> ssl.SSLContext:
    """A client context holding a certificate for ``service`` from this module's CA, as the
    registry would issue it (or at another time: ``now``, ``life``)."""
    now = when.get("now", datetime.datetime.now(datetime.UTC))
    issued = CA.issue(
        Identity("lambdamesh", STAGE, service), now, when.get("life", datetime.timedelta(hours=1))
    )
    _, client = mesh_contexts(issued.certificate, issued.private_key, issued.trust_bundle)
    return client


def from_registry(mesh: Mesh, service: str) -> ssl.SSLContext:
    """A certificate the registry issues to ``service``'s own token."""
    answer = http(
        "POST",
        f"{mesh.url}/registry/services/{service}/certificate",
        headers=bearer(service_token(service)),
    )
    assert answer.status == 200, answer.body
    issued = answer.json()
    _, client = mesh_contexts(issued["certificate"], issued["private_key"], issued["trust_bundle"])
    return client


def call_inbound(
    port: int, context: ssl.SSLContext | None, path: str = "/hello"
) -> tuple[int, Any]:
    connection = (
        HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
        if context is not None
        else HTTPConnection("127.0.0.1", port, timeout=10)
    )
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def anonymous() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def app_calls(port: int) -> int:
    """Requests the app on ``port`` has received."""
    return int(http("GET", f"http://127.0.0.1:{port}/__stats").json()["requests"])


def test_services_call_each_other_and_the_gateway_calls_them_over_mutual_tls_only(
    mesh: Mesh, tmp_path: Path
) -> None:
    policy = {
        "intentions": {
            "default": "deny",
            "rules": [
                {"from": "orders", "action": "allow"},
                {"from": "_gateway", "action": "allow", "methods": ["GET"]},
            ],
        }
    }
    assert mesh.put("/registry/services/payments/policy", policy).status == 201
    _, payments_port = mesh.upstream("payments")
    inbound = free_port()
    payments = mesh.sidecar(
        "payments",
        payments_port,
        "payments-1",
        LAMBDAMESH_INBOUND_PORT=str(inbound),
        LAMBDAMESH_METRICS_SECONDS="1",
    )
    _, orders_port = mesh.upstream("orders")
    outbound = free_port()
    mesh.sidecar(
        "orders",
        orders_port,
        "orders-1",
        LAMBDAMESH_OUTBOUND_PORT=str(outbound),
        LAMBDAMESH_OUTBOUND_ALLOW_LOOPBACK="true",
    )
    eventually(lambda: "payments-1" in mesh.live("payments"), 30, "payments never registered")
    listed = mesh.get("/registry/services/payments/instances", headers=bearer(admin_token()))
    [registered] = listed.json()["instances"]
    assert (registered["port"], registered["tls"]) == (inbound, True)

    # orders' app calls payments through both sidecars: payments' app learns who called.
    def through_orders() -> bool:
        try:
            return http("GET", f"http://127.0.0.1:{outbound}/payments/v1/pay").status == 200
        except OSError:  # orders' outbound port not listening yet
            return False

    eventually(through_orders, 30, "orders never reached payments through its sidecar")
    answer = http("GET", f"http://127.0.0.1:{outbound}/payments/v1/pay")
    seen = answer.json()
    assert (seen["service"], seen["path"]) == ("payments", "/pay")
    assert seen["headers"]["X-Forwarded-Client-Cert"] == (
        f"By=spiffe://lambdamesh/{STAGE}/payments;URI=spiffe://lambdamesh/{STAGE}/orders"
    )

    # The gateway reaches it as itself; its intentions let the gateway GET only.
    answer = mesh.get("/api/v1/payments/v1/hello")
    assert answer.status == 200, answer.body
    assert answer.json()["headers"]["X-Forwarded-Client-Cert"].endswith("/_gateway")
    refused = http("POST", f"{mesh.url}/api/v1/payments/v1/hello", b"{}")
    assert refused.status == 403, refused.body
    assert refused.json()["error"]["code"] == "intention_denied", refused.body

    # Callers the service refuses, none of which its app sees.
    before = app_calls(payments_port)
    now = datetime.datetime.now(datetime.UTC)
    other_ca = MeshCA.load(new_authority("another CA", SINCE, datetime.timedelta(days=30)))
    issued = other_ca.issue(
        Identity("lambdamesh", STAGE, "orders"), now, datetime.timedelta(hours=1)
    )
    _, foreign = mesh_contexts(issued.certificate, issued.private_key, issued.trust_bundle)
    expired = certificate("orders", tmp_path, now=now - datetime.timedelta(hours=2))
    for refused_context in (foreign, expired):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            call_inbound(inbound, refused_context)
    for anonymous_caller in (None, anonymous()):
        status, error = call_inbound(inbound, anonymous_caller)
        assert (status, error["error"]["code"]) == (403, "mtls_required")
    status, error = call_inbound(inbound, from_registry(mesh, "inventory"))
    assert (status, error["error"]["code"]) == (403, "intention_denied")
    assert app_calls(payments_port) == before

    # A caller with the right certificate, straight to the port, gets through.
    status, seen = call_inbound(inbound, certificate("orders", tmp_path))
    assert status == 200 and seen["service"] == "payments"
    assert app_calls(payments_port) == before + 1

    # payments' sidecar writes its figures as CloudWatch EMF on stdout: the calls in, by the
    # caller's proven identity, the refusals among them.
    line = payments.wait_for_line(r'(\{"_aws".*"Direction":"in","Peer":"inventory".*\})')
    figures = json.loads(line.group(1))
    assert (figures["Service"], figures["Instance"], figures["Status4xx"]) == (
        "payments",
        "payments-1",
        [1.0],
    )
