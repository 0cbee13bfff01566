"""A service's routing policy through the registry API: stored with an admin token, read with
any valid one, refused whole when any part is wrong, and never mistaken for an instance."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from lambdamesh.testclient import TestClient as Client
from tests.functional.conftest import Upstream, body_json
from tests.helpers import admin_token, bearer, service_token

POLICY = "/registry/services/orders/policy"
CANARY = {
    "aliases": {
        "live": {
            "split": {"v1": 95, "v2": 5},
            "match": [{"header": "X-Canary", "value": "always", "version": "v2"}],
        }
    },
    "strategy": "consistent_hash",
    "hash_on": {"header": "X-User"},
    "timeouts": {"per_try_seconds": 2, "total_seconds": 10},
}


def put(client: Client, body: Any, token: str | None = None, path: str = POLICY) -> Any:
    headers = {"Content-Type": "application/json", **bearer(token or admin_token())}
    return client.http.put(path, headers=headers, body=json.dumps(body))


def get(client: Client, token: str | None = None, path: str = POLICY) -> Any:
    return client.http.get(path, headers=bearer(token or admin_token()))


def register(client: Client, instance: str = "task-1") -> None:
    answer = client.http.put(
        f"/registry/services/orders/instances/{instance}",
        headers={"Content-Type": "application/json", **bearer(service_token("orders"))},
        body=json.dumps({"version": "v1", "host": "127.0.0.1", "port": 8080}),
    )
    assert answer.status_code == 201, answer.body


def test_an_admin_sets_a_policy_and_reads_it_back_with_every_default_filled_in(
    client: Client,
) -> None:
    created = put(client, CANARY)
    replaced = put(client, CANARY)
    read = body_json(get(client))

    assert (created.status_code, replaced.status_code) == (201, 200)
    assert read["service"] == "orders"
    policy = read["policy"]
    assert policy["aliases"]["live"]["split"] == {"v1": 95, "v2": 5}
    assert policy["aliases"]["live"]["match"] == [
        {"header": "x-canary", "value": "always", "version": "v2"}
    ]
    assert policy["hash_on"] == {"header": "x-user"}
    assert policy["timeouts"] == {"per_try_seconds": 2, "total_seconds": 10}
    assert policy["retries"] == {
        "max_attempts": None,
        "budget_percent": 20.0,
        "backoff_base_ms": 25,
        "backoff_max_ms": 250,
    }
    assert policy["panic_threshold_percent"] == 50
    assert read["updated_at"] > 0


def test_the_mesh_mode_and_intentions_round_trip_in_order(client: Client) -> None:
    mesh = {
        "mtls": "strict",
        "intentions": {
            "default": "deny",
            "rules": [
                {"from": "_gateway", "action": "allow", "methods": ["GET"], "path_prefix": "/p"},
                {"from": "*", "action": "deny", "path_prefix": "/admin/"},
                {"from": "billing", "action": "allow"},
            ],
        },
    }

    stored = put(client, mesh)
    read = body_json(get(client))["policy"]
    again = put(client, read)

    assert (stored.status_code, again.status_code) == (201, 200), again.body
    assert (read["mtls"], read["intentions"]) == (mesh["mtls"], mesh["intentions"])
    assert body_json(get(client))["policy"] == read


def test_any_valid_token_reads_a_policy(client: Client) -> None:
    put(client, CANARY)

    assert get(client, service_token("payments")).status_code == 200
    assert get(client, "not-a-token").status_code == 401


@pytest.mark.parametrize("token", [lambda: service_token("orders"), lambda: "nonsense"])
def test_only_an_admin_may_set_or_delete_a_policy(client: Client, token: Any) -> None:
    put(client, CANARY)

    refused_put = put(client, {"strategy": "random"}, token())
    refused_delete = client.http.delete(POLICY, headers=bearer(token()))

    assert refused_put.status_code in (401, 403)
    assert refused_delete.status_code in (401, 403)
    assert body_json(get(client))["policy"]["strategy"] == "consistent_hash"


def test_deleting_the_policy_brings_back_the_defaults_and_a_second_delete_is_404(
    client: Client,
) -> None:
    put(client, CANARY)

    deleted = client.http.delete(POLICY, headers=bearer(admin_token()))
    missing = get(client)
    again = client.http.delete(POLICY, headers=bearer(admin_token()))

    assert deleted.status_code == 204
    assert missing.status_code == 404
    assert body_json(missing)["error"]["code"] == "policy_not_found"
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"strategy": "fastest"}, "strategy must be one of"),
        ({"colour": "blue"}, "must not contain {'colour'}"),
        ({"aliases": {"live": {"split": {"v1": 0}}}}, "splits nothing"),
        (
            {"aliases": {"live": {"split": {"beta": 1}}, "beta": {"split": {"v2": 1}}}},
            "names alias",
        ),
        ({"strategy": "consistent_hash"}, "needs hash_on"),
        ({"hash_on": {"cookie": "s"}}, "consistent_hash only"),
        ({"timeouts": {"per_try_seconds": 60}}, "smaller than or equal to 28"),
        ({"timeouts": {"per_try_seconds": 5, "total_seconds": 2}}, "per_try_seconds is longer"),
        ({"retries": {"max_attempts": 9}}, "smaller than or equal to 5"),
        ({"retries": {"backoff_max_ms": 10}}, "backoff_base_ms is longer"),
        ({"outlier_detection": {"max_ejected_percent": 101}}, "smaller than or equal to 100"),
        ({"panic_threshold_percent": -1}, "bigger than or equal to 0"),
        ({"aliases": {"Live": {"split": {"v1": 1}}}}, "alias and version names"),
        ([1, 2], "must be object"),
        ({"mtls": "on"}, "mtls must be one of"),
        (
            {"intentions": {"rules": [{"from": "*", "action": "allow", "path_prefix": "/a/../b"}]}},
            "intentions.rules[0].path_prefix is not valid: write it as '/b'",
        ),
    ],
)
def test_a_bad_policy_is_refused_whole_and_the_stored_one_stays(
    client: Client, body: Any, says: str
) -> None:
    put(client, CANARY)

    refused = put(client, body)

    assert refused.status_code == 400, refused.body
    error = body_json(refused)["error"]
    assert error["code"] == "invalid_request"
    assert says in error["message"]
    assert body_json(get(client))["policy"]["strategy"] == "consistent_hash"


@pytest.mark.parametrize("raw", [b"", b" ", b"\r\n\t "])
def test_a_policy_put_without_a_body_is_refused_and_keeps_the_aliases(
    client: Client, raw: bytes
) -> None:
    put(client, CANARY)
    headers = {"Content-Type": "application/json", **bearer(admin_token())}

    refused = client.http.put(POLICY, headers=headers, body=raw)

    assert refused.status_code == 400, refused.body
    error = body_json(refused)["error"]
    assert error["code"] == "invalid_request"
    assert "request body is empty" in error["message"]
    assert error["request_id"] == refused.headers["X-Request-Id"]
    assert body_json(get(client))["policy"]["aliases"]["live"]["split"] == {"v1": 95, "v2": 5}


def test_an_empty_object_is_a_policy_of_every_default(client: Client) -> None:
    put(client, CANARY)

    replaced = put(client, {})

    assert replaced.status_code == 200
    stored = body_json(get(client))["policy"]
    assert (stored["aliases"], stored["strategy"]) == ({}, "weighted_round_robin")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{not json",
        json.dumps({"strategy": "fastest"}).encode(),
        json.dumps({"pad": "x" * 20_000}).encode(),
    ],
)
def test_a_service_token_is_refused_403_before_its_policy_body_is_read(
    client: Client, raw: bytes
) -> None:
    headers = {"Content-Type": "application/json", **bearer(service_token("orders"))}

    refused = client.http.put(POLICY, headers=headers, body=raw)

    assert refused.status_code == 403, refused.body
    assert body_json(refused)["error"]["code"] == "forbidden"
    assert "fastest" not in body_json(refused)["error"]["message"]


def test_a_bad_service_name_is_refused(client: Client) -> None:
    answer = put(client, CANARY, path="/registry/services/Orders/policy")

    assert answer.status_code == 400
    assert body_json(answer)["error"]["code"] == "invalid_name"


def test_a_policy_is_not_an_instance_anywhere(client: Client) -> None:
    register(client)
    put(client, CANARY)

    instances = body_json(
        client.http.get("/registry/services/orders/instances", headers=bearer(admin_token()))
    )
    services = body_json(client.http.get("/registry/services", headers=bearer(admin_token())))

    assert [i["instance_id"] for i in instances["instances"]] == ["task-1"]
    [orders] = services["services"]
    assert (orders["live"], orders["total"]) == (1, 1)


def test_redirects_stay_under_the_gateway_when_the_policy_asks(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    upstream = upstreams("orders")
    answer = client.http.put(
        "/registry/services/orders/instances/a",
        headers={"Content-Type": "application/json", **bearer(service_token("orders"))},
        body=json.dumps({"version": "v1", "host": "127.0.0.1", "port": upstream.port}),
    )
    assert answer.status_code == 201
    own = f"http://127.0.0.1:{upstream.port}/cart"
    target = f"/api/v1/orders/v1/x/redirect?to={quote(own)}"

    before = client.http.get("/api/v1/orders/v1/x/redirect?to=/login").headers["Location"]
    put(client, {"rewrite_redirects": True})
    relative = client.http.get("/api/v1/orders/v1/x/redirect?to=/login").headers["Location"]
    absolute = client.http.get(target).headers["Location"]
    elsewhere = client.http.get("/api/v1/orders/v1/x/redirect?to=https://example.com/").headers

    assert before == "/login"
    assert relative == "/api/v1/orders/v1/login"
    assert absolute == "/api/v1/orders/v1/cart"
    assert elsewhere["Location"] == "https://example.com/"
