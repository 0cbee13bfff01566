"""The console (the dashboard) on an origin of its own: served on the console's domain only,
which serves no upstream content; every other domain serves the gateway and no dashboard."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

import app as application
from chalicelib import wiring
from chalicelib.storage import InstanceStore
from lambdamesh.testclient import TestClient as Client
from lambdamesh.testclient import create_test_client
from tests.functional.conftest import Upstream, body_json
from tests.functional.test_gateway_api import register
from tests.helpers import admin_token, bearer

CONSOLE = "console.mesh.example.com"
GATEWAY = "mesh.example.com"


def open_client(environment: dict[str, str], lane: str, console: str | None) -> Client:
    wiring.reset()
    settings = dict(environment)
    if console is not None:
        settings["LAMBDAMESH_CONSOLE_DOMAIN"] = console
    return create_test_client(application.app, environment_variables=settings, lane=lane)  # type: ignore[arg-type]


@pytest.fixture
def rest(environment: dict[str, str], store: InstanceStore) -> Iterator[Client]:
    """API Gateway's lane, with the console on a custom domain of its own."""
    yield open_client(environment, "rest", CONSOLE)
    wiring.reset()


def on(domain: str, **headers: str) -> dict[str, str]:
    return {"Host": domain, **headers}


def test_the_dashboard_is_served_on_the_consoles_domain_only(rest: Client) -> None:
    assert rest.http.get("/dashboard", headers=on(CONSOLE)).status_code == 200
    assert rest.http.get("/dashboard.js", headers=on(CONSOLE.upper())).status_code == 200

    for domain in (GATEWAY, "abc123.execute-api.eu-west-1.amazonaws.com", "console.mesh"):
        refused = rest.http.get("/dashboard", headers=on(domain))
        assert refused.status_code == 404, domain
        assert body_json(refused)["error"]["code"] == "route_not_found"
        assert rest.http.get("/dashboard.js", headers=on(domain)).status_code == 404


def test_the_gateway_serves_no_upstream_content_on_the_consoles_domain(
    rest: Client, upstreams: Callable[[str], Upstream]
) -> None:
    register(rest, "orders", "a", upstreams("orders").port)

    refused = rest.http.get("/api/v1/orders/v1/page", headers=on(CONSOLE))
    root = rest.http.post("/api/v1/orders/v1", headers=on(CONSOLE), body=b"x")
    routed = rest.http.get("/api/v1/orders/v1/page", headers=on(GATEWAY))

    assert refused.status_code == root.status_code == 404
    assert body_json(refused)["error"]["code"] == "route_not_found"
    assert refused.headers["Content-Type"] == "application/json"
    assert routed.status_code == 200


def test_the_registry_api_answers_on_the_consoles_domain_for_the_dashboard(
    rest: Client,
) -> None:
    listed = rest.http.get("/registry/services", headers=on(CONSOLE, **bearer(admin_token())))
    health = rest.http.get("/health", headers=on(CONSOLE))

    assert listed.status_code == 200
    assert health.status_code == 200


@pytest.mark.parametrize("lane", ["rest", "url"])
def test_without_a_console_domain_no_domain_serves_the_dashboard(
    environment: dict[str, str], store: InstanceStore, lane: str
) -> None:
    client = open_client(environment, lane, None)

    for domain in (GATEWAY, CONSOLE, "127.0.0.1:8000"):
        assert client.http.get("/dashboard", headers=on(domain)).status_code == 404
        assert client.http.get("/dashboard.js", headers=on(domain)).status_code == 404
    wiring.reset()


def test_a_console_on_the_function_url_is_that_lane_alone(
    environment: dict[str, str], store: InstanceStore, upstreams: Callable[[str], Upstream]
) -> None:
    url_lane = open_client(environment, "url", "function-url")
    rest_lane = open_client(environment, "rest", "function-url")
    register(rest_lane, "orders", "a", upstreams("orders").port)
    function_domain = "abcdefgh.lambda-url.eu-west-1.on.aws"

    assert url_lane.http.get("/dashboard", headers=on(function_domain)).status_code == 200
    assert url_lane.http.get("/api/v1/orders/v1/x", headers=on(function_domain)).status_code == 404
    # On API Gateway, whatever domain the request names, the gateway serves and the console
    # does not.
    assert rest_lane.http.get("/dashboard", headers=on(function_domain)).status_code == 404
    assert rest_lane.http.get("/api/v1/orders/v1/x", headers=on(function_domain)).status_code == 200
    wiring.reset()


def test_a_console_domain_is_never_matched_on_the_function_url_lane(
    environment: dict[str, str], store: InstanceStore
) -> None:
    url_lane = open_client(environment, "url", CONSOLE)

    assert url_lane.http.get("/dashboard", headers=on(CONSOLE)).status_code == 404
    wiring.reset()


def test_the_dashboard_page_and_script_are_public_and_locked_down(rest: Client) -> None:
    page = rest.http.get("/dashboard", headers=on(CONSOLE))
    script = rest.http.get("/dashboard.js", headers=on(CONSOLE))

    assert page.status_code == script.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert script.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert b'<script src="dashboard.js"></script>' in page.body
    # Everything it needs comes from the app: no other origin is named.
    assert not re.search(rb"https?://", page.body + script.body)


def test_each_dashboard_answer_gets_headers_of_its_own(rest: Client) -> None:
    first = rest.http.get("/dashboard", headers=on(CONSOLE, **{"X-Request-Id": "first-one"}))
    second = rest.http.get("/dashboard", headers=on(CONSOLE))

    assert first.headers["X-Request-Id"] == "first-one"
    assert second.headers["X-Request-Id"] != "first-one"
