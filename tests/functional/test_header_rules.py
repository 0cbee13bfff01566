"""The gateway's header rules end to end: what a client claims about itself never reaches an
upstream, and a request id that could walk a path is replaced."""

from __future__ import annotations

import json
from collections.abc import Callable

from lambdamesh.testclient import TestClient as Client
from tests.functional.conftest import Upstream, body_json
from tests.helpers import admin_token, bearer

CLAIMS = {
    "X-Real-IP": "10.0.0.1",
    "True-Client-IP": "10.0.0.2",
    "CF-Connecting-IP": "10.0.0.3",
    "X-Original-URL": "/admin",
    "X-Rewrite-URL": "/admin",
    "X-Original-Host": "evil.example",
    "X-Forwarded-Prefix": "/evil",
    "X-Forwarded-Proto": "gopher",
    "X-Forwarded-Port": "99999",
}


def seen_by_the_upstream(
    client: Client, upstreams: Callable[[str], Upstream], headers: dict[str, str]
) -> tuple[dict[str, str], str]:
    upstream = upstreams("orders")
    response = client.http.put(
        "/registry/services/orders/instances/a",
        headers={"Content-Type": "application/json", **bearer(admin_token())},
        body=json.dumps({"version": "v1", "host": "127.0.0.1", "port": upstream.port}),
    )
    assert response.status_code in (200, 201), response.body

    response = client.http.get("/api/v1/orders/v1/x", headers=headers)

    assert response.status_code == 200
    return body_json(response)["headers"], response.headers["X-Request-Id"]


def test_a_clients_claims_about_itself_do_not_reach_the_upstream(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    seen, _ = seen_by_the_upstream(client, upstreams, CLAIMS)

    names = {name.lower() for name in seen}
    rebuilt = {"x-forwarded-proto", "x-forwarded-port"}
    assert not ({name.lower() for name in CLAIMS} - rebuilt) & names
    # What the local API Gateway writes, as the deployed one does, in place of the client's.
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Forwarded-Port"] == "80"
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert not set(CLAIMS.values()) & set(seen.values())


def test_a_request_id_with_a_slash_or_dot_dot_is_replaced_end_to_end(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    seen, returned = seen_by_the_upstream(client, upstreams, {"X-Request-Id": "../../etc"})

    assert returned != "../../etc"
    assert seen["X-Request-Id"] == returned
