"""Readiness probes against real loopback listeners."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sidecar_testkit import FakeApp, free_port

from lambdamesh_sidecar.readiness import HttpReadiness, TcpReadiness, readiness_check


class _Health(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status = {"/ok": 200, "/moved": 302, "/sick": 503}.get(self.path, 404)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def health_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_tcp_is_ready_when_the_port_accepts(app: FakeApp) -> None:
    assert TcpReadiness("127.0.0.1", app.port)() is True


def test_tcp_is_not_ready_when_nothing_listens() -> None:
    assert TcpReadiness("127.0.0.1", free_port(), timeout=0.5)() is False


@pytest.mark.parametrize(("path", "ready"), [("/ok", True), ("/moved", True), ("/sick", False)])
def test_http_readiness_follows_the_status(health_port: int, path: str, ready: bool) -> None:
    assert HttpReadiness("127.0.0.1", health_port, path)() is ready


def test_http_is_not_ready_when_nothing_listens() -> None:
    assert HttpReadiness("127.0.0.1", free_port(), "/ok", timeout=0.5)() is False


def test_http_is_not_ready_when_the_port_does_not_speak_http(app: FakeApp) -> None:
    assert HttpReadiness("127.0.0.1", app.port, "/ok", timeout=0.5)() is False


def test_health_path_picks_the_probe() -> None:
    assert isinstance(readiness_check("h", 1, None), TcpReadiness)
    assert isinstance(readiness_check("h", 1, "/health"), HttpReadiness)
