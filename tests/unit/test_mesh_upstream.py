"""The gateway's calls to instances that take mutual TLS only: its own certificate, issued from
the mesh CA, presented to a real TLS server on loopback, and the callee's identity checked
before anything is sent."""

from __future__ import annotations

import datetime
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from chalicelib.errors import ConfigError
from chalicelib.gateway_identity import GatewayIdentity
from chalicelib.mesh_ca import MeshCA, MeshCANotConfigured, new_authority
from chalicelib.mesh_pools import MeshPools
from chalicelib.upstream import UpstreamClient
from lambdamesh_routing.errors import ConnectFailed, MtlsUnavailable
from lambdamesh_routing.hosts import AddressPolicy
from lambdamesh_routing.identity import Identity, peer_identity
from lambdamesh_routing.tls import mesh_contexts

STAGE = "test"


def authority(name: str) -> MeshCA:
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    return MeshCA.load(new_authority(name, since, datetime.timedelta(days=30)))


OURS, THEIRS = authority("ours"), authority("theirs")


@pytest.fixture
def instance() -> Iterator[Callable[[str, MeshCA], tuple[int, list[Any]]]]:
    """A TLS server requiring a client certificate, holding ``service``'s certificate from
    ``ca``; returns its port and the identities its callers proved."""
    servers: list[ThreadingHTTPServer] = []

    def start(service: str, ca: MeshCA) -> tuple[int, list[Any]]:
        now = datetime.datetime.now(datetime.UTC)
        issued = ca.issue(Identity("lambdamesh", STAGE, service), now, datetime.timedelta(hours=1))
        server_context, _ = mesh_contexts(
            issued.certificate, issued.private_key, issued.trust_bundle
        )
        server_context.verify_mode = ssl.CERT_REQUIRED
        callers: list[Any] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                callers.append(peer_identity(self.connection.getpeercert(), "lambdamesh", STAGE))
                body = json.dumps({"service": service}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.socket = server_context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return int(server.server_address[1]), callers

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def client(ca: Callable[[], MeshCA] = lambda: OURS) -> UpstreamClient:
    identity = GatewayIdentity(ca, "lambdamesh", STAGE, 3600, time.time)
    return UpstreamClient(
        AddressPolicy(allow_loopback=True),
        connect_timeout=2,
        read_timeout=2,
        mesh=lambda: MeshPools(identity.current, 4),
    )


def get(upstream: UpstreamClient, port: int, service: str | None) -> Any:
    return upstream.send("GET", "127.0.0.1", port, "/", {}, None, tls_service=service)


def test_the_gateway_presents_its_own_identity_and_reaches_the_service_it_picked(
    instance: Callable[[str, MeshCA], tuple[int, list[Any]]],
) -> None:
    port, callers = instance("payments", OURS)
    upstream = client()
    for _ in range(2):
        answer = get(upstream, port, "payments")
        assert answer.status == 200 and json.loads(answer.body) == {"service": "payments"}
    assert callers == [Identity("lambdamesh", STAGE, "_gateway")] * 2


def test_an_instance_proving_another_service_gets_nothing_and_counts_as_unreachable(
    instance: Callable[[str, MeshCA], tuple[int, list[Any]]],
) -> None:
    port, callers = instance("inventory", OURS)
    with pytest.raises(ConnectFailed, match="proved spiffe://lambdamesh/test/inventory"):
        get(client(), port, "payments")
    assert callers == []


def test_an_instance_of_another_ca_fails_the_handshake(
    instance: Callable[[str, MeshCA], tuple[int, list[Any]]],
) -> None:
    port, callers = instance("payments", THEIRS)
    with pytest.raises(ConnectFailed):
        get(client(), port, "payments")
    assert callers == []


def test_without_a_mesh_ca_a_call_to_a_tls_instance_is_refused_as_the_gateways_state(
    instance: Callable[[str, MeshCA], tuple[int, list[Any]]],
) -> None:
    port, callers = instance("payments", OURS)

    def no_ca() -> MeshCA:
        raise MeshCANotConfigured("this stage has no mesh CA")

    with pytest.raises(MtlsUnavailable) as refused:
        get(client(no_ca), port, "payments")
    assert refused.value.status == 502
    assert isinstance(MeshCANotConfigured("x"), ConfigError)
    assert callers == []


def test_the_gateways_certificate_is_issued_anew_at_half_its_life() -> None:
    now = [1_000_000.0 + time.time()]
    issued: list[str] = []

    def ca() -> MeshCA:
        issued.append("once")
        return OURS

    identity = GatewayIdentity(ca, "lambdamesh", STAGE, 3600, lambda: now[0])
    first = identity.current()
    now[0] += 1799
    assert identity.current() is first
    now[0] += 2
    second = identity.current()
    assert second is not first and second.generation == first.generation + 1
    assert len(issued) == 2
