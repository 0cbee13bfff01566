"""A mesh CA rotated in its three steps while calls flow through both ports: trust the new CA
beside the old, sign with the new, drop the old. Each sidecar renews its certificate (and its
trust bundle) between steps, at a different moment from its peer, and new connections are made
at every stage: no call fails."""

from __future__ import annotations

import datetime
import http.client
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from inbound_kit import SERVICE, Port
from mesh_certificates import STAGE, TRUST_DOMAIN

from chalicelib.auth import ADMIN_SCOPE, Principal
from chalicelib.certificates import CertificateIssuer
from chalicelib.mesh_ca import MeshCA, new_authority
from lambdamesh_routing.hosts import AddressPolicy
from lambdamesh_routing.instances import Instance, ServiceView
from lambdamesh_routing.router import Router
from lambdamesh_sidecar import inbound
from lambdamesh_sidecar.identity import IdentityKeeper
from lambdamesh_sidecar.outbound import OutboundProxy
from lambdamesh_sidecar.outbound_settings import OutboundSettings


def pem_certificates(text: str) -> str:
    return text[text.index("-----BEGIN CERTIFICATE-----") :]


class Registry:
    """The registry's certificate route over a CA text the test changes, as an operator
    changes the stage's secret."""

    def __init__(self, text: str) -> None:
        self.text = text

    def issue(self, service: str) -> dict[str, Any]:
        issuer = CertificateIssuer(
            lambda: MeshCA.load(self.text), TRUST_DOMAIN, STAGE, 3600, time.time
        )
        return issuer.issue(Principal(ADMIN_SCOPE), service)


class Views:
    def __init__(self, port: int) -> None:
        instance = Instance(
            SERVICE, "b1", "v1", "127.0.0.1", port, 1, None, {}, "UP", 30, 2e9, 0.0, 0.0, tls=True
        )
        self.current = ServiceView((instance,))

    def view(self, service: str) -> ServiceView:
        return self.current

    def recheck(self, service: str) -> ServiceView:
        return self.current


class Load:
    """Calls through the outbound port from ``workers`` threads until stopped; each call's
    status (0: no answer)."""

    def __init__(self, port: int, workers: int = 3) -> None:
        self.port = port
        self.outcomes: list[int] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(workers)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            try:
                connection.request("GET", f"/{SERVICE}/v1/pay")
                answer = connection.getresponse()
                answer.read()
                self.outcomes.append(answer.status)
            except (OSError, http.client.HTTPException):
                self.outcomes.append(0)
                connection.close()
        connection.close()

    def end(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def test_a_ca_rotation_under_load_loses_no_call(
    start: Callable[..., Port], monkeypatch: pytest.MonkeyPatch
) -> None:
    handshakes: list[bool] = []
    accept = inbound._Connection._accept

    def counted(connection: Any) -> None:
        accept(connection)
        handshakes.append(connection.secure)

    monkeypatch.setattr(inbound._Connection, "_accept", counted)
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
    old = new_authority("old CA", since, datetime.timedelta(days=30))
    new = new_authority("new CA", since, datetime.timedelta(days=30))
    registry = Registry(old)
    callee = start(issue=registry.issue)
    caller = IdentityKeeper(lambda: registry.issue("orders"), "orders")
    caller.obtain()
    proxy = OutboundProxy(
        Views(callee.port),
        Router(sleep=lambda seconds: None),
        AddressPolicy(allow_loopback=True),
        caller_address="10.0.1.7",
        settings=OutboundSettings(timeout_seconds=3.0, connect_timeout_seconds=1.0),
        logger=logging.getLogger("rotation-test"),
        credentials=lambda: caller.current,
    )
    server = proxy.serve(0)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    load = Load(server.port)

    def new_connections_carry(calls: int) -> None:
        """Until the callee has seen new handshakes and ``calls`` more calls were made: the
        caller's pooled connections are closed meanwhile, so that calls need new ones."""
        target, shaken = len(load.outcomes) + calls, len(handshakes) + 3
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            len(load.outcomes) < target or len(handshakes) < shaken
        ):
            server.outbound.pool.close()
            time.sleep(0.005)
        assert len(handshakes) >= shaken, "no new connection was made"

    steps = [
        old + pem_certificates(new),  # 1: the new CA trusted beside the old
        new + pem_certificates(old),  # 2: the new CA signs, the old still trusted
        new,  # 3: the old CA dropped
    ]
    try:
        new_connections_carry(20)
        for text in steps:
            registry.text = text
            # One side renews and new connections carry calls, then the other side.
            for keeper in (caller, callee.server.inbound.keeper):
                keeper.obtain()
                new_connections_carry(20)
    finally:
        load.end()
        server.shutdown()
        server.server_close()
    outcomes = load.outcomes
    assert len(outcomes) >= 20 * (1 + 2 * len(steps))
    assert set(outcomes) == {200}, {s: outcomes.count(s) for s in set(outcomes)}
