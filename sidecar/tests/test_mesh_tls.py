"""Mutual TLS through both ports in one process: an app's call leaves through its sidecar's
outbound port, which speaks TLS with its certificate to an instance marked ``tls`` (another
sidecar's inbound port) and checks that the callee proves the service it was picked for."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from inbound_kit import SERVICE, Port
from mesh_certificates import STAGE, answer

from lambdamesh_routing.hosts import AddressPolicy
from lambdamesh_routing.instances import Instance, ServiceView
from lambdamesh_routing.router import Router
from lambdamesh_sidecar.identity import Credentials, load
from lambdamesh_sidecar.inbound import CLIENT_CERT_HEADER
from lambdamesh_sidecar.metrics import CallMetrics
from lambdamesh_sidecar.outbound import OutboundProxy, OutboundServer
from lambdamesh_sidecar.outbound_settings import OutboundSettings


class Views:
    """The callee's routing view as the outbound port reads it: one ``tls`` instance."""

    def __init__(self, port: int) -> None:
        self.current = ServiceView(
            (
                Instance(
                    SERVICE,
                    "b1",
                    "v1",
                    "127.0.0.1",
                    port,
                    1,
                    None,
                    {},
                    "UP",
                    30,
                    2e9,
                    0.0,
                    0.0,
                    tls=True,
                ),
            )
        )

    def view(self, service: str) -> ServiceView:
        return self.current if service == SERVICE else ServiceView(())

    def recheck(self, service: str) -> ServiceView:
        return self.view(service)


@pytest.fixture
def outbound() -> Iterator[Callable[[int, Credentials | None], OutboundServer]]:
    servers: list[OutboundServer] = []

    def make(callee_port: int, credentials: Credentials | None) -> OutboundServer:
        proxy = OutboundProxy(
            Views(callee_port),
            Router(sleep=lambda seconds: None),
            AddressPolicy(allow_loopback=True),
            caller_address="10.0.1.7",
            settings=OutboundSettings(timeout_seconds=3.0, connect_timeout_seconds=1.0),
            logger=logging.getLogger("mesh-tls-test"),
            credentials=lambda: credentials,
        )
        server = proxy.serve(0)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def call(server: OutboundServer, path: str = "/hello") -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", f"/{SERVICE}/v1{path}")
        answer_ = connection.getresponse()
        return answer_.status, json.loads(answer_.read() or b"{}")
    finally:
        connection.close()


def test_an_app_calls_a_strict_service_through_both_sidecars_over_mutual_tls(
    start: Callable[..., Port], outbound: Callable[[int, Credentials | None], OutboundServer]
) -> None:
    callee = start()
    caller = outbound(callee.port, load(answer("orders"), "orders"))
    for path in ("/one", "/two"):
        status, seen = call(caller, path)
        assert status == 200, seen
        assert seen["path"] == path
        assert seen["headers"][CLIENT_CERT_HEADER] == (
            f"By=spiffe://lambdamesh/{STAGE}/{SERVICE};URI=spiffe://lambdamesh/{STAGE}/orders"
        )
        assert seen["headers"]["X-Forwarded-Proto"] == "https"
    # The second call went over the first's connection, kept alive in the pool.
    assert len(caller.outbound.pool._idle) == 1


def test_without_a_certificate_a_call_to_a_tls_instance_is_refused_and_ejects_nothing(
    start: Callable[..., Port], outbound: Callable[[int, Credentials | None], OutboundServer]
) -> None:
    callee = start()
    caller = outbound(callee.port, None)
    for _ in range(6):  # more than the failures that would eject an instance
        status, error = call(caller)
        assert (status, error["error"]["code"]) == (502, "mtls_unavailable")
    assert callee.app.seen == []
    [instance] = caller.outbound.views.view(SERVICE).instances
    assert not caller.outbound.router.outliers.is_ejected(instance)


def test_an_instance_proving_another_service_is_not_called(
    start: Callable[..., Port], outbound: Callable[[int, Credentials | None], OutboundServer]
) -> None:
    impostor = start(certificate="inventory")  # listed as payments, holds inventory's
    caller = outbound(impostor.port, load(answer("orders"), "orders"))
    status, error = call(caller)
    assert (status, error["error"]["code"]) == (502, "upstream_unreachable")
    assert impostor.app.seen == []


def test_both_ports_count_each_call_by_the_peer_on_the_other_side(
    start: Callable[..., Port], outbound: Callable[[int, Credentials | None], OutboundServer]
) -> None:
    callee = start()
    callee_figures = CallMetrics(SERVICE, "b1")
    callee.server.inbound.metrics = callee_figures
    caller = outbound(callee.port, load(answer("orders"), "orders"))
    caller_figures = caller.outbound.metrics = CallMetrics("orders", "a1")
    for _ in range(3):
        assert call(caller)[0] == 200
    assert call(caller, "/")[0] == 200
    # Each port counts a call once its answer is written: the last may be a moment behind.
    for figures in (caller_figures, callee_figures):
        deadline = time.monotonic() + 5
        while sum(f.requests for f in figures._figures.values()) < 4:
            assert time.monotonic() < deadline, "the calls were not all counted"
            time.sleep(0.005)
    [out] = caller_figures.documents()
    assert (out["Direction"], out["Peer"], out["Requests"], out["Status2xx"]) == (
        "out",
        SERVICE,
        [4.0],
        [4.0],
    )
    [into] = callee_figures.documents()
    assert (into["Direction"], into["Peer"], into["Requests"]) == ("in", "orders", [4.0])
