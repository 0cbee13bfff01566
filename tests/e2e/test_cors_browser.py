"""CORS as a browser sees it: pages on two other origins call a service through
`lambdamesh dev` in headless Chromium. The service's exposure document allows one origin, some
methods and one request header, with credentials; the gateway answers preflights itself, so
an upstream never sees an OPTIONS, and a refused preflight keeps the real request from ever
being sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.e2e.processes import Process, http, spawn
from tests.e2e.test_dashboard import browser  # noqa: F401 - fixture
from tests.helpers import SIGNING_KEY, admin_token, service_token


class Recorder:
    """An upstream that answers every request with its method and the headers it got, and
    keeps each (method, path, X-Trace) it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                recorder.seen.append((self.command, self.path, self.headers.get("X-Trace")))
                body = json.dumps({"method": self.command, "trace": self.headers.get("X-Trace")})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Shop-Version", "7")
                self.end_headers()
                self.wfile.write(body.encode())

            do_GET = do_PUT = do_POST = do_DELETE = do_OPTIONS = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def methods(self, path: str) -> list[str]:
        return [method for method, seen_path, _ in self.seen if seen_path == path]


class Origin:
    """A site on an origin of its own (its own port on loopback): one empty page."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"<!doctype html><title>site</title>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[str, Recorder, Origin, Origin]]:
    """`lambdamesh dev` (nothing served undeclared), the shop service behind it, and two
    sites: one the shop allows, one it does not."""
    process: Process = spawn(
        "lambdamesh-dev-cors",
        ["-m", "lambdamesh.cli", "dev", "--port", "0"],
        env={"LAMBDAMESH_SIGNING_KEY": SIGNING_KEY, "AWS_ENDPOINT_URL_DYNAMODB": ""},
    )
    gateway = process.wait_for_line(r"ready on (http://\S+)").group(1)
    shop, allowed, refused = Recorder(), Origin(), Origin()
    registered = http(
        "PUT",
        f"{gateway}/registry/services/shop/instances/shop-0",
        json.dumps({"version": "v1", "host": "127.0.0.1", "port": shop.port}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {service_token('shop')}"},
    )
    assert registered.status == 201, registered.body
    document = {
        "exposed": True,
        "auth": ["none"],
        "cors": {
            "allow_origins": [allowed.url],
            "allow_methods": ["GET", "PUT"],
            "allow_headers": ["X-Trace", "Content-Type"],
            "expose_headers": ["X-Shop-Version"],
            "allow_credentials": True,
            "max_age_seconds": 0,
        },
    }
    exposed = http(
        "PUT",
        f"{gateway}/registry/services/shop/exposure",
        json.dumps(document).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {admin_token()}"},
    )
    assert exposed.status == 201, exposed.body
    try:
        yield gateway, shop, allowed, refused
    finally:
        for site in (shop, allowed, refused):
            site.server.shutdown()
        assert process.stop() == 0, process.output


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811 - one context per test
    context = browser.new_context()
    yield context.new_page()
    context.close()


# Runs in the page: the call, and what the page's script may read of its answer.
CALL = """async ([url, init]) => {
  try {
    const answer = await fetch(url, init);
    return {ok: true, status: answer.status, body: await answer.json(),
            version: answer.headers.get("X-Shop-Version")};
  } catch (error) {
    return {ok: false, error: error.name};
  }
}"""


def call_from(page: Page, site: Origin, url: str, init: dict[str, Any]) -> dict[str, Any]:
    page.goto(site.url)
    outcome: dict[str, Any] = page.evaluate(CALL, [url, init])
    return outcome


def put_with_trace(trace: str, **extra: Any) -> dict[str, Any]:
    headers = {"X-Trace": trace, "Content-Type": "application/json", **extra}
    return {"method": "PUT", "headers": headers, "body": "{}", "credentials": "include"}


def test_an_allowed_origin_calls_through_a_preflight_the_gateway_answers_itself(
    stack: tuple[str, Recorder, Origin, Origin], page: Page
) -> None:
    gateway, shop, allowed, _ = stack
    url = f"{gateway}/api/v1/shop/v1/orders/allowed"

    outcome = call_from(page, allowed, url, put_with_trace("t-allowed"))

    assert outcome == {
        "ok": True,
        "status": 200,
        "body": {"method": "PUT", "trace": "t-allowed"},
        "version": "7",
    }
    assert shop.methods("/orders/allowed") == ["PUT"]  # the preflight never reached it


def test_another_origins_preflight_is_refused_and_its_request_never_sent(
    stack: tuple[str, Recorder, Origin, Origin], page: Page
) -> None:
    gateway, shop, _, refused = stack
    url = f"{gateway}/api/v1/shop/v1/orders/refused"

    outcome = call_from(page, refused, url, put_with_trace("t-refused"))

    assert outcome == {"ok": False, "error": "TypeError"}
    assert shop.methods("/orders/refused") == []


def test_a_request_header_the_service_does_not_allow_fails_the_preflight(
    stack: tuple[str, Recorder, Origin, Origin], page: Page
) -> None:
    gateway, shop, allowed, _ = stack
    url = f"{gateway}/api/v1/shop/v1/orders/header"

    outcome = call_from(page, allowed, url, put_with_trace("t-header", **{"X-Secret": "1"}))

    assert outcome == {"ok": False, "error": "TypeError"}
    assert shop.methods("/orders/header") == []


def test_a_method_the_service_does_not_allow_fails_the_preflight(
    stack: tuple[str, Recorder, Origin, Origin], page: Page
) -> None:
    gateway, shop, allowed, _ = stack
    url = f"{gateway}/api/v1/shop/v1/orders/method"

    outcome = call_from(page, allowed, url, {"method": "DELETE"})

    assert outcome == {"ok": False, "error": "TypeError"}
    assert shop.methods("/orders/method") == []


def test_another_origin_cannot_read_an_answer_even_to_a_simple_request(
    stack: tuple[str, Recorder, Origin, Origin], page: Page
) -> None:
    """A simple GET needs no preflight, so it is sent; without the CORS fields for its
    origin, the browser keeps the answer from the page."""
    gateway, _, allowed, refused = stack
    url = f"{gateway}/api/v1/shop/v1/orders/simple"

    readable = call_from(page, allowed, url, {"credentials": "include"})
    hidden = call_from(page, refused, url, {"credentials": "include"})

    assert readable["ok"] is True and readable["body"] == {"method": "GET", "trace": None}
    assert hidden == {"ok": False, "error": "TypeError"}
