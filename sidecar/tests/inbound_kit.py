"""An inbound port on loopback with an app behind it, for the tests of the inbound port and of
mutual TLS through both ports."""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from mesh_certificates import answer

from lambdamesh_routing.instances import ServiceView
from lambdamesh_routing.policy import Policy
from lambdamesh_routing.wire import MeshSettings, view_document
from lambdamesh_sidecar.client import ViewAnswer
from lambdamesh_sidecar.identity import Credentials, IdentityKeeper
from lambdamesh_sidecar.inbound import InboundPort, InboundServer
from lambdamesh_sidecar.inbound_settings import InboundSettings
from lambdamesh_sidecar.mesh_policy import OwnPolicy

SERVICE = "payments"


@dataclass
class App:
    """The app behind the port: records what reaches it, answers with what it saw."""

    server: ThreadingHTTPServer
    seen: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


def start_app() -> App:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            record = {
                "path": self.path,
                "method": self.command,
                "headers": dict(self.headers.items()),
                "body": len(body),
            }
            app.seen.append(record)
            if self.path.startswith("/slow"):
                app.release.wait(5)
            data = json.dumps(record).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    app = App(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    threading.Thread(target=app.server.serve_forever, args=(0.05,), daemon=True).start()
    return app


class Views:
    """The registry's routing view of the service, as the port's policy reads it."""

    def __init__(self) -> None:
        self.set(Policy(), MeshSettings(mtls="strict"))

    def set(self, policy: Policy | None, stage: MeshSettings) -> None:
        self.document = view_document(SERVICE, ServiceView((), policy), time.time(), stage)

    def __call__(self, service: str, etag: str | None) -> ViewAnswer:
        return ViewAnswer(self.document, None)


@dataclass
class Port:
    server: InboundServer
    app: App
    views: Views
    policy: OwnPolicy
    records: list[logging.LogRecord]

    @property
    def port(self) -> int:
        return self.server.port

    def call(
        self,
        credentials: Credentials | None,
        path: str = "/hello",
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        tls: bool = True,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One request; (status, JSON body, headers)."""
        if not tls:
            connection: http.client.HTTPConnection = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=5
            )
        else:
            context = credentials.client if credentials else anonymous_context()
            connection = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=5, context=context
            )
        try:
            connection.request(method, path, body=body, headers=headers or {})
            answer = connection.getresponse()
            data = answer.read()
            return answer.status, json.loads(data) if data else {}, dict(answer.getheaders())
        finally:
            connection.close()


class Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def anonymous_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.fixture
def start() -> Iterator[Callable[..., Port]]:
    """Starts inbound ports for ``SERVICE`` (strict, no intentions), each with its app;
    ``certificate`` names the service its certificate is issued for."""
    started: list[tuple[InboundServer, App]] = []

    def make(
        certificate: str = SERVICE,
        issue: Callable[[str], dict[str, Any]] = answer,
        **settings: Any,
    ) -> Port:
        """``issue``: the registry's certificate answer for a service."""
        app = start_app()
        keeper = IdentityKeeper(lambda: issue(certificate), certificate)
        keeper.obtain()
        views = Views()
        records: list[logging.LogRecord] = []
        log = logging.getLogger(f"inbound-test-{len(started)}")
        log.handlers[:] = [Collect(records)]
        log.setLevel(logging.INFO)
        log.propagate = False
        policy = OwnPolicy(views, SERVICE, refresh_seconds=60, logger=log)
        policy.read()
        inbound = InboundPort(InboundSettings(**settings), app.port, keeper, policy, logger=log)
        server = inbound.serve("127.0.0.1")
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        started.append((server, app))
        return Port(server, app, views, policy, records)

    yield make
    for server, app in started:
        app.release.set()
        server.shutdown()
        server.server_close()
        app.server.shutdown()
        app.server.server_close()
