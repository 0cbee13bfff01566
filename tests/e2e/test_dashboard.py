"""The dashboard in a real browser: headless Chromium (Debian's package), driven by Playwright,
against `lambdamesh dev --demo`. A screenshot is kept in build/test-artifacts/."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from chalicelib.auth import issue
from lambdamesh.keys import DEV_SIGNING_KEY
from tests.e2e.processes import ROOT, Process, http, spawn

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "build" / "test-artifacts"
# Headless, and quiet on a machine with no route out: no background or component traffic.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEMO_INSTANCES = 4
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[Process, str]]:
    process = spawn("demo", ["-m", "lambdamesh.cli", "dev", "--demo", "--port", "0"])
    try:
        url = process.wait_for_line(r"Dashboard: (http://\S+)/dashboard", timeout=60).group(1)
        yield process, url
    finally:
        process.signal(signal.SIGTERM)
        process.popen.wait(30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    opened = context.new_page()
    yield opened
    context.close()


def sign_in(page: Page, token: str) -> None:
    page.fill("#token", token)
    page.click("#sign-in button[type=submit]")


def demo_sidecar(parent: int, instance_id: str) -> int:
    """The pid of the demo's sidecar registering ``instance_id``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE)
        wanted = f"LAMBDAMESH_INSTANCE_ID={instance_id}".encode()
        if ppid and int(ppid.group(1)) == parent and wanted in environ:
            return int(entry.name)
    raise AssertionError(f"no sidecar of {instance_id} under {parent}")


def test_a_bad_token_gets_a_clear_message_not_a_blank_page(
    demo: tuple[Process, str], page: Page
) -> None:
    _, url = demo
    page.goto(f"{url}/dashboard")

    sign_in(page, "lm1.admin.not-a-signature")

    expect(page.get_by_test_id("error")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_test_id("error")).to_contain_text("The token was refused: unauthorized")
    expect(page.locator("#sign-in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('lambdamesh.token')") is None


def test_an_operator_sees_the_demo_and_an_instance_leave_when_its_sidecar_stops(
    demo: tuple[Process, str], page: Page
) -> None:
    process, url = demo
    page.goto(f"{url}/dashboard")

    sign_in(page, issue(DEV_SIGNING_KEY.encode()))

    rows = page.locator("tr[data-instance]")
    expect(rows).to_have_count(DEMO_INSTANCES, timeout=WAIT_MS)
    expect(page.locator("section[data-service=hello]")).to_contain_text("v1: 2 live of 2")
    expect(page.locator("tr[data-instance=hello-0] td").nth(5)).to_have_text("UP")
    assert "token" not in page.url and "lm1." not in page.url
    assert page.evaluate("localStorage.length") == 0

    os.kill(demo_sidecar(process.popen.pid, "hello-0"), signal.SIGTERM)

    # Marked as gone for one refresh, then dropped.
    expect(page.locator("tr.removed[data-instance=hello-0]")).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("tr[data-instance=hello-0]")).to_have_count(0, timeout=WAIT_MS)
    expect(rows).to_have_count(DEMO_INSTANCES - 1)
    expect(page.locator("section[data-service=hello]")).to_contain_text("v1: 1 live")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def test_a_services_policy_is_shown_beside_its_instances(
    demo: tuple[Process, str], page: Page
) -> None:
    _, url = demo
    admin = issue(DEV_SIGNING_KEY.encode())
    stored = http(
        "PUT",
        f"{url}/registry/services/echo/policy",
        json.dumps({"strategy": "random"}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {admin}"},
    )
    assert stored.status in (200, 201)
    page.goto(f"{url}/dashboard")

    sign_in(page, admin)

    echo = page.locator("section[data-service=echo]")
    expect(echo.locator("pre.policy")).to_contain_text('"strategy": "random"', timeout=WAIT_MS)
    # hello keeps the demo's own policy: strict mutual TLS.
    hello = page.locator("section[data-service=hello] pre.policy")
    expect(hello).to_contain_text('"mtls": "strict"', timeout=WAIT_MS)
    expect(hello).not_to_contain_text("random")


def test_each_services_exposure_is_shown(demo: tuple[Process, str], page: Page) -> None:
    _, url = demo
    admin = issue(DEV_SIGNING_KEY.encode())
    page.goto(f"{url}/dashboard")

    sign_in(page, admin)

    hello = page.locator("section[data-service=hello] .exposure")
    expect(hello).to_contain_text("Internet: exposed", timeout=WAIT_MS)
    expect(hello).to_contain_text("auth: none")


def test_each_instances_calls_in_and_out_are_shown_and_dimmed_once_stale(
    demo: tuple[Process, str], page: Page
) -> None:
    # An instance of the demo's echo, DOWN so nothing routes to it, whose figures this test
    # sends itself: no sidecar heartbeats it, so none replaces them.
    _, url = demo
    path = f"{url}/registry/services/echo/instances/echo-figures"
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {issue(DEV_SIGNING_KEY.encode(), service='echo')}",
    }

    def put(target: str, body: dict[str, object]) -> None:
        answer = http("PUT", target, json.dumps(body).encode(), headers)
        assert answer.status in (200, 201), answer.body

    put(path, {"version": "v1", "host": "127.0.0.1", "port": 9, "status": "DOWN"})
    try:
        put(
            f"{path}/heartbeat",
            {
                "figures": {
                    "seconds": 60.2,
                    "in": {"requests": 120, "errors": 2, "p50_ms": 3.1, "p99_ms": 20.5},
                    "out": {"requests": 40, "errors": 0, "p50_ms": 1.2, "p99_ms": 2.0},
                }
            },
        )
        page.goto(f"{url}/dashboard")

        sign_in(page, issue(DEV_SIGNING_KEY.encode()))

        cells = page.locator("tr[data-instance=echo-figures] td")
        calls_in, calls_out = cells.nth(9), cells.nth(10)
        expect(calls_in).to_have_text(
            "120 in 60 s · p50 3.1 ms · p99 20.5 ms · 2 errors", timeout=WAIT_MS
        )
        expect(calls_out).to_have_text("40 in 60 s · p50 1.2 ms · p99 2 ms · 0 errors")
        expect(calls_in).not_to_have_class(re.compile(r"\bstale\b"))

        # Figures of a half-second window, followed by a heartbeat without any: stale once
        # a second has passed since they came.
        quiet = {"requests": 7, "errors": 1, "p50_ms": 0.25, "p99_ms": 1234.5}
        put(f"{path}/heartbeat", {"figures": {"seconds": 0.5, "in": quiet}})
        put(f"{path}/heartbeat", {})

        expect(calls_in).to_have_text(
            "7 in 0.5 s · p50 0.25 ms · p99 1235 ms · 1 error", timeout=WAIT_MS
        )
        expect(calls_out).to_have_text("-")
        expect(calls_in).to_have_class(re.compile(r"\bstale\b"), timeout=WAIT_MS)
    finally:
        http("DELETE", path, None, headers)
