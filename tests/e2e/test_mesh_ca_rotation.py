"""A mesh CA rotated under load as an operator rotates it, real processes on loopback: the
CA texts made with `lambdamesh mesh-ca`, each step put in the stage's Secrets Manager secret
(moto's server), `lambdamesh dev` reading it through its key store, and calls flowing the
whole time from orders through both sidecars to payments, through the gateway to payments, and
straight to payments' inbound port from a caller that renews its certificate as soon as each
step is in the secret (so that holders renew at different moments, and every one of its calls
is a new handshake). No call may fail, and at the end payments serves and accepts the new
CA's certificates only.

Service certificates last 60 s (the shortest the registry issues) and the key store keeps the
secret 1 s, so each step waits half a life for every holder to renew: about two minutes in
all. The file runs beside the deploy tier in `make test` (it mostly waits), not in the main
tier.
"""

from __future__ import annotations

import datetime
import http.client
import itertools
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.mesh_ca import MeshCA
from lambdamesh_routing.identity import Identity
from lambdamesh_routing.tls import mesh_contexts
from tests.e2e.conftest import Mesh
from tests.e2e.processes import ROOT, Process, eventually, spawn, stop_all
from tests.e2e.processes import http as http_answer
from tests.helpers import SIGNING_KEY, bearer, service_token

STAGE = "e2e"
SECRET = f"lambdamesh/{STAGE}/mesh-ca"
CERT_SECONDS = 60
KEY_STORE_SECONDS = 1
# Holders renew at half a certificate's life (a little before, at random); one issued just
# before a step may have read the text the key store still held.
HALF_LIFE_AND_MARGIN = CERT_SECONDS / 2 + KEY_STORE_SECONDS + 2
ISSUED = "certificate issued"
POLICY = {
    "intentions": {
        "default": "deny",
        "rules": [
            {"from": "orders", "action": "allow"},
            {"from": "_gateway", "action": "allow", "methods": ["GET"]},
        ],
    }
}

pytestmark = pytest.mark.timeout(420)


def mesh_ca(*args: str) -> str:
    """``lambdamesh mesh-ca ARGS``' output, as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "lambdamesh.cli", "mesh-ca", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


@pytest.fixture
def secrets() -> Iterator[tuple[str, Any]]:
    """moto's server (Secrets Manager) on a free loopback port, and a client of it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client(
        "secretsmanager",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    yield url, client
    server.stop()


class Caller:
    """A caller of payments' inbound port holding an orders certificate from the registry,
    which it renews when told to (at moments other than the sidecars'), each call on a new
    TLS connection: a caller whose trust bundle and certificate change at their own time."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.context = self.renew()

    def renew(self) -> ssl.SSLContext:
        answer = http_answer(
            "POST",
            f"{self.mesh.url}/registry/services/orders/certificate",
            headers=bearer(service_token("orders")),
        )
        assert answer.status == 200, answer.body
        issued_now = answer.json()
        _, self.context = mesh_contexts(
            issued_now["certificate"], issued_now["private_key"], issued_now["trust_bundle"]
        )
        return self.context


@dataclass
class Load:
    """Calls from worker threads until stopped, each on a new connection: through orders'
    outbound port, through the gateway, and straight to payments' inbound port as ``caller``.
    Each outcome: (when, route, status or error)."""

    outbound: int
    gateway: str
    inbound: int
    caller: Caller
    outcomes: list[tuple[float, str, object]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        routes = [
            ("outbound", "127.0.0.1", self.outbound, "/payments/v1/pay"),
            ("outbound", "127.0.0.1", self.outbound, "/payments/v1/pay"),
            ("gateway", *self._gateway_address(), "/api/v1/payments/v1/hello"),
            ("inbound", "127.0.0.1", self.inbound, "/pay"),
        ]
        for route in routes:
            thread = threading.Thread(target=self._run, args=route, daemon=True)
            thread.start()
            self.threads.append(thread)

    def _gateway_address(self) -> tuple[str, int]:
        host, _, port = self.gateway.removeprefix("http://").partition(":")
        return host, int(port)

    def _run(self, route: str, host: str, port: int, path: str) -> None:
        while not self.stop.is_set():
            connection = (
                http.client.HTTPSConnection(host, port, timeout=10, context=self.caller.context)
                if route == "inbound"
                else http.client.HTTPConnection(host, port, timeout=10)
            )
            try:
                connection.request("GET", path)
                answer = connection.getresponse()
                body = answer.read()
                outcome: object = answer.status if answer.status == 200 else (answer.status, body)
            except (OSError, http.client.HTTPException) as exc:
                outcome = repr(exc)
            finally:
                connection.close()
            self.outcomes.append((time.monotonic(), route, outcome))
            self.stop.wait(0.2)

    def end(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)

    def failures(self) -> list[tuple[float, str, object]]:
        return [outcome for outcome in self.outcomes if outcome[2] != 200]

    def served(self, route: str, since: float, until: float) -> int:
        return sum(
            1
            for when, name, outcome in self.outcomes
            if name == route and since <= when < until and outcome == 200
        )


def issued(process: Process) -> int:
    return sum(ISSUED in line for line in process.lines)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def step(client: Any, text: str, holders: list[Process], caller: Caller) -> None:
    """Put ``text`` in the secret, then wait until every holder has renewed with it: the
    direct caller at once (once the key store's copy has expired), each sidecar when its
    certificate is due (it logs the issue), and the gateway, which renews on the calls it
    makes, within half a certificate's life."""
    client.put_secret_value(SecretId=SECRET, SecretString=text)
    put = time.monotonic()
    time.sleep(KEY_STORE_SECONDS + 1)
    caller.renew()
    before = [issued(holder) for holder in holders]
    eventually(
        lambda: all(issued(h) > count for h, count in zip(holders, before, strict=True)),
        CERT_SECONDS,
        "a sidecar did not renew its certificate within a certificate's life",
    )
    time.sleep(max(0.0, put + HALF_LIFE_AND_MARGIN - time.monotonic()))


def client_context(ca_text: str, service: str) -> ssl.SSLContext:
    """A caller holding a certificate for ``service`` from the CA ``ca_text`` signs with,
    trusting that text's CAs only."""
    now = datetime.datetime.now(datetime.UTC)
    issued_now = MeshCA.load(ca_text).issue(
        Identity("lambdamesh", STAGE, service), now, datetime.timedelta(minutes=10)
    )
    _, context = mesh_contexts(
        issued_now.certificate, issued_now.private_key, issued_now.trust_bundle
    )
    return context


def status_through(port: int, context: ssl.SSLContext) -> int:
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        connection.request("GET", "/pay")
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def test_a_mesh_ca_rotated_in_its_three_steps_under_load_loses_no_call(
    secrets: tuple[str, Any], tmp_path: Path
) -> None:
    url, client = secrets
    old = mesh_ca("new", "--days", "30", "--name", "old mesh CA")
    new = mesh_ca("new", "--days", "30", "--name", "new mesh CA")
    (tmp_path / "old.pem").write_text(old)
    (tmp_path / "new.pem").write_text(new)
    steps = [
        mesh_ca("combine", str(tmp_path / "old.pem"), str(tmp_path / "new.pem")),
        mesh_ca("combine", str(tmp_path / "new.pem"), str(tmp_path / "old.pem")),
        mesh_ca("combine", str(tmp_path / "new.pem")),
    ]
    client.create_secret(Name=SECRET, SecretString=old)
    server = spawn(
        "lambdamesh-dev-rotation",
        ["-m", "lambdamesh.cli", "dev", "--port", "0"],
        env={
            "LAMBDAMESH_SIGNING_KEY": SIGNING_KEY,
            "LAMBDAMESH_MESH_CA_SECRET": SECRET,
            "LAMBDAMESH_KEY_STORE_SECONDS": str(KEY_STORE_SECONDS),
            "LAMBDAMESH_MESH_CERT_SECONDS": str(CERT_SECONDS),
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "LAMBDAMESH_STAGE": STAGE,
            "LAMBDAMESH_MTLS_DEFAULT": "strict",
            "LAMBDAMESH_READ_TIMEOUT": "5",
            "LAMBDAMESH_CONNECT_TIMEOUT": "1",
            "AWS_ENDPOINT_URL_DYNAMODB": "",
            "LAMBDAMESH_EDGE_DEFAULT": "open",
        },
    )
    mesh = Mesh(server.wait_for_line(r"ready on (http://\S+)").group(1))
    load: Load | None = None
    try:
        assert mesh.put("/registry/services/payments/policy", POLICY).status == 201
        _, payments_app = mesh.upstream("payments")
        inbound = free_port()
        payments = mesh.sidecar(
            "payments", payments_app, "payments-1", LAMBDAMESH_INBOUND_PORT=str(inbound)
        )
        _, orders_app = mesh.upstream("orders")
        outbound = free_port()
        orders = mesh.sidecar(
            "orders",
            orders_app,
            "orders-1",
            LAMBDAMESH_OUTBOUND_PORT=str(outbound),
            LAMBDAMESH_OUTBOUND_ALLOW_LOOPBACK="true",
        )
        for holder in (payments, orders):
            holder.wait_for_line(ISSUED)
        payments.wait_for_line(r"inbound port listening")
        orders.wait_for_line(r"outbound port listening")
        eventually(lambda: "payments-1" in mesh.live("payments"), 30, "payments not registered")

        load = Load(outbound, mesh.url, inbound, Caller(mesh))
        load.start()
        eventually(
            lambda: load is not None and load.served("gateway", 0, float("inf")) > 0,
            30,
            "no call reached payments before the rotation",
        )
        marks = [time.monotonic()]
        for text in steps:
            step(client, text, [payments, orders], load.caller)
            marks.append(time.monotonic())
        load.end()

        assert load.failures() == [], load.failures()[:10]
        for since, until in itertools.pairwise(marks):
            for route in ("outbound", "gateway", "inbound"):
                assert load.served(route, since, until) > 0, (route, since, until)
        # payments now serves a certificate of the new CA and takes callers of the new CA
        # only: a caller of the old one fails the handshake (it cannot verify payments, and
        # payments would not verify it).
        assert status_through(inbound, client_context(steps[2], "orders")) == 200
        with pytest.raises((ssl.SSLError, ConnectionError)):
            status_through(inbound, client_context(old, "orders"))
    finally:
        if load is not None:
            load.end()
        stop_all(mesh.processes)
        assert server.stop() == 0, server.output
