"""A service's exposure through the registry API and the gateway, both front doors, moto's
DynamoDB and real upstreams: nothing is served that no one declared, and what is declared is
served only to the callers it allows."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import fastjsonschema
import pytest

import app as application
from chalicelib import wiring
from chalicelib.exposure.keys import new_key
from chalicelib.storage import InstanceStore
from lambdamesh.testclient import LANES, create_test_client
from lambdamesh.testclient import TestClient as Client
from tests.functional.conftest import Upstream, body_json
from tests.functional.test_gateway_api import closed_port, register
from tests.helpers import admin_token, bearer, service_token

EXPOSURE = "/registry/services/orders/exposure"
# JWT rules that fetch nothing until a token comes.
JWT = {
    "issuer": "https://issuer.example",
    "audiences": ["orders"],
    "jwks_url": "https://issuer.example/k",
}
KEYS = "/registry/services/orders/keys"


@pytest.fixture(params=LANES)
def closed(
    request: pytest.FixtureRequest, environment: dict[str, str], store: InstanceStore
) -> Iterator[Client]:
    """The app as deployed: a service without an exposure document is not served."""
    wiring.reset()
    settings = {**environment, "LAMBDAMESH_EDGE_DEFAULT": "closed"}
    with create_test_client(
        application.app, environment_variables=settings, lane=request.param
    ) as client:
        yield client
    wiring.reset()


def as_admin(**headers: str) -> dict[str, str]:
    return {"Content-Type": "application/json", **bearer(admin_token()), **headers}


def expose(client: Client, document: dict[str, Any], service: str = "orders") -> Any:
    answer = client.http.put(
        f"/registry/services/{service}/exposure", headers=as_admin(), body=json.dumps(document)
    )
    assert answer.status_code in (200, 201), answer.body
    return body_json(answer)


def create_key(client: Client, consumer: str = "mobile-app", **fields: Any) -> dict[str, Any]:
    answer = client.http.post(
        KEYS, headers=as_admin(), body=json.dumps({"consumer": consumer, **fields})
    )
    assert answer.status_code == 201, answer.body
    return dict(body_json(answer))


@pytest.fixture
def orders(closed: Client, upstreams: Callable[[str], Upstream]) -> Client:
    register(closed, "orders", "a", upstreams("orders").port)
    return closed


# Declared exposure


def test_an_undeclared_service_answers_exactly_as_an_unknown_one(orders: Client) -> None:
    hidden = orders.http.get("/api/v1/orders/v1/items", headers={"X-Request-Id": "same-id"})
    unknown = orders.http.get("/api/v1/nosuch/v1/items", headers={"X-Request-Id": "same-id"})

    assert hidden.status_code == unknown.status_code == 404
    assert body_json(hidden) == json.loads(unknown.body.replace(b"nosuch", b"orders"))
    assert sorted(hidden.headers) == sorted(unknown.headers)


def test_a_service_declared_closed_answers_as_an_unknown_one(orders: Client) -> None:
    expose(orders, {"exposed": False})

    answer = orders.http.get("/api/v1/orders/v1/items")

    assert answer.status_code == 404
    assert body_json(answer)["error"]["code"] == "service_not_found"


def test_a_public_service_is_served_to_anyone(orders: Client) -> None:
    stored = expose(orders, {"exposed": True, "auth": ["none"]})

    answer = orders.http.get("/api/v1/orders/v1/items")

    assert answer.status_code == 200
    assert body_json(answer)["service"] == "orders"
    assert stored["exposure"]["auth"] == ["none"]


def test_only_the_versions_listed_are_served_the_others_as_unknown(
    orders: Client, upstreams: Callable[[str], Upstream]
) -> None:
    register(orders, "orders", "b", upstreams("orders").port, version="v2")
    expose(orders, {"exposed": True, "auth": ["none"], "versions": ["v2"]})

    hidden = orders.http.get("/api/v1/orders/v1/items")
    unknown = orders.http.get("/api/v1/orders/v9/items")
    served = orders.http.get("/api/v1/orders/v2/items")

    assert hidden.status_code == unknown.status_code == 404
    assert body_json(hidden)["error"]["code"] == "version_not_found"
    assert body_json(hidden)["error"]["message"] == body_json(unknown)["error"]["message"].replace(
        "v9", "v1"
    )
    assert served.status_code == 200


def test_deleting_the_document_closes_the_service_again(orders: Client) -> None:
    expose(orders, {"exposed": True, "auth": ["none"]})
    deleted = orders.http.delete(EXPOSURE, headers=as_admin())
    again = orders.http.delete(EXPOSURE, headers=as_admin())

    assert deleted.status_code == 204
    assert again.status_code == 404
    assert body_json(again)["error"]["code"] == "exposure_not_found"
    assert orders.http.get("/api/v1/orders/v1/items").status_code == 404


def test_the_service_list_says_how_each_service_faces_the_internet(
    orders: Client, upstreams: Callable[[str], Upstream]
) -> None:
    register(orders, "billing", "b", upstreams("billing").port)
    register(orders, "catalog", "c", upstreams("catalog").port)
    expose(orders, {"exposed": True, "versions": ["v1"], "auth": ["api_key", "jwt"], "jwt": JWT})
    expose(orders, {"exposed": False}, service="billing")

    answer = orders.http.get("/registry/services", headers=bearer(service_token("orders")))

    edges = {entry["service"]: entry["exposure"] for entry in body_json(answer)["services"]}
    assert edges == {
        "billing": {"declared": True, "exposed": False, "versions": None, "auth": []},
        "catalog": {"declared": False, "exposed": False, "versions": None, "auth": []},
        "orders": {
            "declared": True,
            "exposed": True,
            "versions": ["v1"],
            "auth": ["api_key", "jwt"],
        },
    }


def test_the_service_list_shows_an_open_stage_default_for_undeclared_services(
    client: Client, upstreams: Callable[[str], Upstream]
) -> None:
    register(client, "catalog", "c", upstreams("catalog").port)

    answer = client.http.get("/registry/services", headers=bearer(admin_token()))

    [catalog] = body_json(answer)["services"]
    assert catalog["exposure"] == {
        "declared": False,
        "exposed": True,
        "versions": None,
        "auth": ["none"],
    }


def test_only_an_admin_may_expose_a_service_and_any_token_may_read_it(orders: Client) -> None:
    own = {"Content-Type": "application/json", **bearer(service_token("orders"))}
    document = json.dumps({"exposed": True, "auth": ["none"]})

    refused = orders.http.put(EXPOSURE, headers=own, body=document)
    missing = orders.http.get(EXPOSURE, headers=own)
    expose(orders, {"exposed": True, "auth": ["none"]})
    read = orders.http.get(EXPOSURE, headers=own)

    assert refused.status_code == 403
    assert missing.status_code == 404
    assert read.status_code == 200
    assert body_json(read)["exposure"]["exposed"] is True
    assert orders.http.get(EXPOSURE).status_code == 401


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"exposed": True}, 'needs "auth"'),
        ({"exposed": True, "auth": ["none", "api_key"]}, "cannot be combined"),
        ({"exposed": True, "auth": ["password"]}, "auth"),
        ({"exposed": True, "auth": ["none"], "versions": []}, "versions"),
        ({"exposed": True, "auth": ["none"], "surprise": 1}, "surprise"),
        ({"auth": ["none"]}, "exposed"),
        ({"exposed": True, "auth": ["none"], "addresses": {"allow": ["10.0.0.1/8"]}}, "host"),
        (
            {"exposed": True, "auth": ["none"], "addresses": {"deny": ["fe80::1%eth0/128"]}},
            "zone id",
        ),
        (
            {
                "exposed": True,
                "auth": ["none"],
                "cors": {"allow_origins": ["*"], "allow_credentials": True},
            },
            "credentials",
        ),
    ],
)
def test_a_bad_document_is_refused_with_its_reason_and_changes_nothing(
    orders: Client, document: dict[str, Any], reason: str
) -> None:
    expose(orders, {"exposed": True, "auth": ["none"]})

    answer = orders.http.put(EXPOSURE, headers=as_admin(), body=json.dumps(document))

    assert answer.status_code == 400, answer.body
    assert body_json(answer)["error"]["code"] == "invalid_request"
    assert reason in body_json(answer)["error"]["message"]
    assert orders.http.get("/api/v1/orders/v1/items").status_code == 200


def test_an_empty_body_is_refused(orders: Client) -> None:
    answer = orders.http.put(EXPOSURE, headers=as_admin(), body=b"")

    assert answer.status_code == 400
    assert "exposure document" in body_json(answer)["error"]["message"]


def test_the_routing_view_sidecars_poll_carries_no_exposure(orders: Client) -> None:
    expose(orders, {"exposed": True, "auth": ["api_key"]})
    create_key(orders)

    view = orders.http.get("/registry/services/orders/routing", headers=as_admin())

    assert view.status_code == 200
    assert b"exposure" not in view.body and b"api_key" not in view.body
    assert b"secret" not in view.body and b"consumer" not in view.body


# API keys


def test_a_key_opens_the_service_and_names_its_consumer_upstream(orders: Client) -> None:
    expose(orders, {"exposed": True, "auth": ["api_key"]})
    created = create_key(orders)

    by_header = orders.http.get(
        "/api/v1/orders/v1/items",
        headers={"X-Api-Key": created["key"], "X-Lambdamesh-Consumer": "forged"},
    )
    by_authorization = orders.http.get(
        "/api/v1/orders/v1/items", headers={"Authorization": f"ApiKey {created['key']}"}
    )

    assert by_header.status_code == by_authorization.status_code == 200
    seen = {k.lower(): v for k, v in body_json(by_header)["headers"].items()}
    assert seen["x-lambdamesh-consumer"] == "mobile-app"
    assert "x-api-key" not in seen
    seen = {k.lower(): v for k, v in body_json(by_authorization)["headers"].items()}
    assert "authorization" not in seen


def test_no_answer_tells_a_missing_key_from_a_wrong_one(orders: Client) -> None:
    expose(orders, {"exposed": True, "auth": ["api_key"]})
    created = create_key(orders)
    key_id = created["key_id"]
    wrong_secret = created["key"][:-4] + ("AAAA" if not created["key"].endswith("AAAA") else "BBBB")
    tries = {
        "none": {},
        "garbage": {"X-Api-Key": "hello"},
        "unknown id": {"X-Api-Key": created["key"].replace(key_id, "a" * 16)},
        "wrong secret": {"X-Api-Key": wrong_secret},
        "bearer": {"Authorization": f"Bearer {created['key']}"},
    }

    answers = {name: orders.http.get("/api/v1/orders/v1/x", headers=h) for name, h in tries.items()}

    for name, answer in answers.items():
        assert answer.status_code == 401, name
        assert answer.headers["WWW-Authenticate"] == 'ApiKey realm="lambdamesh"'
        error = body_json(answer)["error"]
        assert (error["code"], error["message"]) == (
            "unauthorized",
            "a valid API key is required (X-Api-Key)",
        ), name


def test_a_key_is_shown_once_and_listed_without_its_secret(orders: Client) -> None:
    created = create_key(orders, "partner.example", expires_in_days=30)

    listed = orders.http.get(KEYS, headers=as_admin())
    refused = orders.http.get(KEYS, headers=bearer(service_token("orders")))

    assert created["key"].startswith(f"lmk_{created['key_id']}_")
    assert created["expires_at"] == pytest.approx(created["created_at"] + 30 * 86400, abs=1)
    [entry] = body_json(listed)["keys"]
    assert entry["key_id"] == created["key_id"] and entry["consumer"] == "partner.example"
    # The secret is what follows the id (token_urlsafe: it may itself hold "_").
    secret = created["key"].removeprefix(f"lmk_{created['key_id']}_")
    assert secret not in listed.body.decode()
    assert "secret_hash" not in entry and "key" not in entry
    assert refused.status_code == 403


def test_a_revoked_key_opens_nothing(orders: Client) -> None:
    expose(orders, {"exposed": True, "auth": ["api_key"]})
    created = create_key(orders)
    before = orders.http.get("/api/v1/orders/v1/x", headers={"X-Api-Key": created["key"]})

    revoked = orders.http.delete(f"{KEYS}/{created['key_id']}", headers=as_admin())
    after = orders.http.get("/api/v1/orders/v1/x", headers={"X-Api-Key": created["key"]})
    twice = orders.http.delete(f"{KEYS}/{created['key_id']}", headers=as_admin())
    listed = body_json(orders.http.get(KEYS, headers=as_admin()))["keys"]

    assert (before.status_code, revoked.status_code, after.status_code) == (200, 204, 401)
    assert twice.status_code == 404
    assert listed[0]["revoked_at"] is not None


def test_an_expired_key_opens_nothing(orders: Client, store: InstanceStore) -> None:
    expose(orders, {"exposed": True, "auth": ["api_key"]})
    expired = new_key("old-app", time.time() - 2 * 86400, days=1)
    store.put_key("orders", expired.stored)

    answer = orders.http.get("/api/v1/orders/v1/x", headers={"X-Api-Key": expired.key})

    assert answer.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"consumer": ""},
        {"consumer": "a b"},
        {"consumer": "ok", "expires_in_days": 0},
        {"consumer": "ok", "expires_in_days": 1e-9},
        {"consumer": "ok", "expires_in_days": True},
        {"consumer": "ok", "more": 1},
    ],
)
def test_a_bad_key_request_is_refused_and_stores_nothing(
    orders: Client, body: dict[str, Any]
) -> None:
    answer = orders.http.post(KEYS, headers=as_admin(), body=json.dumps(body))

    assert answer.status_code == 400, answer.body
    assert body_json(orders.http.get(KEYS, headers=as_admin()))["keys"] == []


def test_the_published_key_request_schema_refuses_what_the_api_refuses(orders: Client) -> None:
    schemas = body_json(orders.http.get("/registry/openapi.json"))["components"]["schemas"]
    validate = fastjsonschema.compile(schemas["KeyRequest"])

    for days in (0, 1e-9, 3651):
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            validate({"consumer": "ok", "expires_in_days": days})
    validate({"consumer": "ok", "expires_in_days": 1 / 1440})
    assert create_key(orders, expires_in_days=1 / 1440)["key"]


def fill_with_keys(store: InstanceStore, count: int, days: float | None = None) -> None:
    for n in range(count):
        store.put_key("orders", new_key(f"consumer-{n}", time.time(), days).stored)


def test_the_key_limit_counts_usable_keys_only(orders: Client, store: InstanceStore) -> None:
    fill_with_keys(store, 99)
    store.put_key("orders", new_key("old-app", time.time() - 2 * 86400, days=1).stored)
    last = create_key(orders, "last")

    full = orders.http.post(KEYS, headers=as_admin(), body=json.dumps({"consumer": "more"}))
    revoked = orders.http.delete(f"{KEYS}/{last['key_id']}", headers=as_admin())
    again = orders.http.post(KEYS, headers=as_admin(), body=json.dumps({"consumer": "more"}))
    listed = body_json(orders.http.get(KEYS, headers=as_admin()))["keys"]

    assert (full.status_code, revoked.status_code, again.status_code) == (409, 204, 201)
    assert body_json(full)["error"]["code"] == "too_many_keys"
    assert len(listed) == 102
    assert [k["revoked_at"] is not None for k in listed].count(True) == 1


def test_a_revoked_key_leaves_the_table_a_week_later_or_at_its_own_expiry(
    orders: Client,
) -> None:
    lasting = create_key(orders, "lasting")
    yearly = create_key(orders, "yearly", expires_in_days=365)
    daily = create_key(orders, "daily", expires_in_days=1)

    for key in (lasting, yearly, daily):
        answer = orders.http.delete(f"{KEYS}/{key['key_id']}", headers=as_admin())
        assert answer.status_code == 204
    listed = {
        k["consumer"]: k for k in body_json(orders.http.get(KEYS, headers=as_admin()))["keys"]
    }

    week = 7 * 86400
    for name in ("lasting", "yearly"):
        entry = listed[name]
        assert entry["expires_at"] == pytest.approx(entry["revoked_at"] + week, abs=0.01)
    assert listed["daily"]["expires_at"] == daily["expires_at"]
    assert listed["daily"]["revoked_at"] is not None


def test_the_last_use_of_a_key_is_kept_without_a_write_per_request(orders: Client) -> None:
    expose(orders, {"exposed": True, "auth": ["api_key"]})
    created = create_key(orders)

    for _ in range(3):
        assert (
            orders.http.get("/api/v1/orders/v1/x", headers={"X-Api-Key": created["key"]})
        ).status_code == 200
    [entry] = body_json(orders.http.get(KEYS, headers=as_admin()))["keys"]

    assert entry["last_used_at"] is not None
    assert entry["last_used_at"] >= entry["created_at"]


# Addresses, CORS, rate limits


def test_a_client_address_outside_the_allow_list_is_refused_403(orders: Client) -> None:
    expose(orders, {"exposed": True, "auth": ["none"], "addresses": {"allow": ["10.0.0.0/8"]}})
    refused = orders.http.get("/api/v1/orders/v1/x", headers={"X-Forwarded-For": "10.1.2.3"})
    expose(orders, {"exposed": True, "auth": ["none"], "addresses": {"deny": ["10.0.0.0/8"]}})
    allowed = orders.http.get("/api/v1/orders/v1/x")

    assert refused.status_code == 403
    assert body_json(refused)["error"]["code"] == "address_not_allowed"
    assert allowed.status_code == 200


def test_the_gateway_answers_a_preflight_itself(orders: Client) -> None:
    expose(
        orders,
        {
            "exposed": True,
            "auth": ["api_key"],
            "cors": {
                "allow_origins": ["https://app.example.com"],
                "allow_methods": ["GET", "PUT"],
                "allow_headers": ["X-Api-Key", "Content-Type"],
            },
        },
    )
    asked = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "x-api-key, content-type",
    }

    allowed = orders.http.options("/api/v1/orders/v1/items", headers=asked)
    refused = orders.http.options(
        "/api/v1/orders/v1/items", headers={**asked, "Origin": "https://evil.example"}
    )

    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "PUT" in allowed.headers["Access-Control-Allow-Methods"]
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_answers_and_refusals_carry_cors_fields_for_an_allowed_origin(orders: Client) -> None:
    expose(
        orders,
        {
            "exposed": True,
            "auth": ["api_key"],
            "cors": {"allow_origins": ["https://app.example.com"]},
        },
    )
    created = create_key(orders)
    origin = {"Origin": "https://app.example.com"}

    served = orders.http.get("/api/v1/orders/v1/x", headers={**origin, "X-Api-Key": created["key"]})
    refused = orders.http.get("/api/v1/orders/v1/x", headers=origin)
    other = orders.http.get(
        "/api/v1/orders/v1/x",
        headers={"Origin": "https://evil.example", "X-Api-Key": created["key"]},
    )

    assert served.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Access-Control-Allow-Origin" not in other.headers
    assert "Origin" in other.headers["Vary"]


def test_a_rate_limit_answers_429_with_its_fields(orders: Client) -> None:
    expose(
        orders,
        {
            "exposed": True,
            "auth": ["none"],
            "rate_limits": {"service_per_second": 0.02, "burst_seconds": 50},
        },
    )

    statuses = [orders.http.get("/api/v1/orders/v1/x") for _ in range(2)]

    assert [a.status_code for a in statuses] == [200, 429]
    first, refused = statuses
    assert first.headers["RateLimit-Policy"] == '"service";q=1;w=50'
    assert refused.headers["RateLimit"].startswith('"service";r=0;t=')
    assert int(refused.headers["Retry-After"]) >= 1
    assert body_json(refused)["error"]["code"] == "rate_limited"


def test_a_global_rate_limit_holds_across_containers_in_dynamodb(
    orders: Client, shared_table: Any
) -> None:
    """Each request a fresh container (wiring reset: no bucket in memory survives), and still
    the window's quota holds: the count is DynamoDB's, in a partition of its own that leaves
    by TTL and that no service's read carries."""
    limits = {"service_per_second": 0.05, "burst_seconds": 60, "scope": "global"}  # 3 per 60 s
    expose(orders, {"exposed": True, "auth": ["none"], "rate_limits": limits})
    if time.time() % 60 > 50:  # not across a window's end: a new window admits 3 more
        time.sleep(60 - time.time() % 60)

    statuses = []
    for _ in range(5):
        wiring.reset()
        statuses.append(orders.http.get("/api/v1/orders/v1/x"))

    assert [a.status_code for a in statuses] == [200, 200, 200, 429, 429]
    assert statuses[0].headers["RateLimit-Policy"] == '"service";q=3;w=60'
    assert statuses[2].headers["RateLimit"].startswith('"service";r=0;t=')
    assert 1 <= int(statuses[3].headers["Retry-After"]) <= 60
    [counter] = shared_table.query(
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": "~rate#orders#service"}
    )["Items"]
    assert counter["hits"] == 3
    assert int(counter["sk"]) * 60 + 60 < counter["expires_at"] <= time.time() + 120
    listed = orders.http.get("/registry/services", headers=bearer(admin_token()))
    assert [entry["service"] for entry in body_json(listed)["services"]] == ["orders"]


def normal(headers: dict[str, str]) -> dict[str, list[str]]:
    """Header values by name as a WSGI server reads them: case and '_' versus '-' folded."""
    found: dict[str, list[str]] = {}
    for name, value in headers.items():
        found.setdefault(name.lower().replace("_", "-"), []).append(value)
    return found


@pytest.mark.parametrize("auth", [["none"], ["api_key"]])
def test_no_spelling_of_the_consumer_header_from_a_client_reaches_the_upstream(
    orders: Client, auth: list[str]
) -> None:
    expose(orders, {"exposed": True, "auth": auth})
    key = {"X-Api-Key": create_key(orders)["key"]} if auth == ["api_key"] else {}
    forged = {
        "X_Lambdamesh_Consumer": "admin",
        "x-lambdamesh-consumer": "admin",
        "X-Lambdamesh-Anything": "admin",
    }

    answer = orders.http.get("/api/v1/orders/v1/x", headers={**forged, **key})

    seen = normal(body_json(answer)["headers"])
    expected = [["mobile-app"]] if key else [None]
    assert [seen.get("x-lambdamesh-consumer")] == expected
    assert "x-lambdamesh-anything" not in seen


def test_a_clients_connection_header_cannot_remove_the_consumer(orders: Client) -> None:
    expose(orders, {"exposed": True, "auth": ["api_key"]})
    key = create_key(orders)["key"]

    answer = orders.http.get(
        "/api/v1/orders/v1/x",
        headers={"X-Api-Key": key, "Connection": "X-Lambdamesh-Consumer, X_Lambdamesh_Consumer"},
    )

    assert normal(body_json(answer)["headers"])["x-lambdamesh-consumer"] == ["mobile-app"]


def test_a_denied_address_learns_nothing_from_a_preflight(orders: Client) -> None:
    expose(
        orders,
        {
            "exposed": True,
            "auth": ["none"],
            "addresses": {"allow": ["10.0.0.0/8"]},
            "cors": {"allow_origins": ["https://app.example.com"]},
        },
    )

    answer = orders.http.options(
        "/api/v1/orders/v1/x",
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"},
    )

    assert answer.status_code == 403
    assert body_json(answer)["error"]["code"] == "address_not_allowed"
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_an_upstream_failure_carries_the_cors_fields_of_an_allowed_origin(
    closed: Client,
) -> None:
    register(closed, "orders", "a", closed_port())
    expose(
        closed,
        {"exposed": True, "auth": ["none"], "cors": {"allow_origins": ["https://app.example.com"]}},
    )

    answer = closed.http.get("/api/v1/orders/v1/x", headers={"Origin": "https://app.example.com"})

    assert answer.status_code == 502
    assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example.com"


# What a hostile review found


def test_a_key_carries_no_unchecked_bearer_token_to_a_service_that_takes_tokens(
    orders: Client,
) -> None:
    """With both methods, a key opens the service and an upstream reads Authorization as a
    token the gateway checked: a token sent beside the key is never passed on."""
    jwt = {**JWT, "forward_token": True}
    expose(orders, {"exposed": True, "auth": ["api_key", "jwt"], "jwt": jwt})
    created = create_key(orders)
    forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0."

    answer = orders.http.get(
        "/api/v1/orders/v1/admin/users",
        headers={"X-Api-Key": created["key"], "Authorization": f"Bearer {forged}"},
    )

    assert answer.status_code == 200
    seen = {k.lower(): v for k, v in body_json(answer)["headers"].items()}
    assert "authorization" not in seen
    assert seen["x-lambdamesh-consumer"] == "mobile-app"


def test_a_key_service_without_tokens_passes_the_apps_own_authorization_on(
    orders: Client,
) -> None:
    expose(orders, {"exposed": True, "auth": ["api_key"]})
    created = create_key(orders)

    answer = orders.http.get(
        "/api/v1/orders/v1/items",
        headers={"X-Api-Key": created["key"], "Authorization": "Basic YXBwOnVzZXI="},
    )

    seen = {k.lower(): v for k, v in body_json(answer)["headers"].items()}
    assert seen["authorization"] == "Basic YXBwOnVzZXI="


@pytest.mark.parametrize("space", ["\xa0", "\x85", "\x0b", "\x1f"])
def test_a_key_is_read_and_removed_by_one_rule(orders: Client, space: str) -> None:
    """Only spaces and tabs surround a key: one behind any other character is no key, so
    it opens nothing (and what opens nothing is never a key the gateway took)."""
    expose(orders, {"exposed": True, "auth": ["api_key"]})
    created = create_key(orders)

    answer = orders.http.get(
        "/api/v1/orders/v1/items", headers={"Authorization": f"{space}ApiKey {created['key']}"}
    )

    assert answer.status_code == 401


def test_an_upstreams_own_cors_fields_cannot_widen_the_services_rules(
    closed: Client, upstreams: Callable[[str], Upstream]
) -> None:
    """An upstream that answers every origin (reflect-origin middleware) is overruled where
    the service's exposure sets CORS: only the gateway's fields reach the browser."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ReflectingOrigin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        register(closed, "orders", "a", int(server.server_address[1]))
        cors = {"allow_origins": ["https://app.example.com"], "allow_credentials": False}
        expose(closed, {"exposed": True, "auth": ["none"], "cors": cors})

        stranger = closed.http.get(
            "/api/v1/orders/v1/x", headers={"Origin": "https://evil.example"}
        )
        listed = closed.http.get(
            "/api/v1/orders/v1/x", headers={"Origin": "https://app.example.com"}
        )
    finally:
        server.shutdown()
        server.server_close()

    assert stranger.status_code == listed.status_code == 200
    assert not [k for k in stranger.headers if k.lower().startswith("access-control-")]
    fields = {k.lower(): v for k, v in listed.headers.items() if k.lower().startswith("access-")}
    assert fields == {"access-control-allow-origin": "https://app.example.com"}


class _ReflectingOrigin(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin") or "*")
        self.send_header("Access-Control-Allow-Credentials", "true")
        self.send_header("Access-Control-Allow-Private-Network", "true")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def test_a_consumer_limit_is_refused_on_a_public_service(orders: Client) -> None:
    document = {"exposed": True, "auth": ["none"], "rate_limits": {"consumer_per_second": 1}}

    answer = orders.http.put(EXPOSURE, headers=as_admin(), body=json.dumps(document))

    assert answer.status_code == 400
    assert "consumer_per_second needs callers who say who they are" in answer.body.decode()
    assert orders.http.get(EXPOSURE, headers=as_admin()).status_code == 404


def test_a_header_http_cannot_carry_upstream_is_refused_400_not_500(orders: Client) -> None:
    expose(orders, {"exposed": True, "auth": ["none"]})

    refused = orders.http.get("/api/v1/orders/v1/x", headers={"X-Note": "caf\u00e9 \u3000"})
    latin = orders.http.get("/api/v1/orders/v1/x", headers={"X-Note": "caf\u00e9"})

    assert refused.status_code == 400
    assert body_json(refused)["error"]["code"] == "invalid_request"
    assert "x-note" in body_json(refused)["error"]["message"].lower()
    assert latin.status_code == 200
