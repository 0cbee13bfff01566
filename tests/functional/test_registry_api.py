"""The registry API through Chalice's test client, against moto's DynamoDB server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib import wiring
from chalicelib.registry import Registry
from chalicelib.storage import InstanceStore
from lambdamesh.testclient import TestClient as Client
from lambdamesh_routing.hosts import AddressPolicy
from tests.functional.conftest import body_json
from tests.helpers import SIGNING_KEY, admin_token, bearer, service_token

JSON = {"Content-Type": "application/json"}
INSTANCE = "/registry/services/orders/instances/task-1"


def put(client: Client, path: str, body: Any, token: str | None = None) -> Any:
    headers = {**JSON, **bearer(token or service_token("orders"))}
    return client.http.put(path, headers=headers, body=json.dumps(body))


def register(client: Client, instance: str = "task-1", **fields: Any) -> Any:
    body = {"version": "v1", "host": "127.0.0.1", "port": 8080, **fields}
    return put(client, f"/registry/services/orders/instances/{instance}", body)


def test_registering_a_new_instance_answers_201_with_its_lease(client: Client) -> None:
    response = register(client, lease_seconds=20, weight=7, zone="eu-west-1a", metadata={"a": "b"})

    assert response.status_code == 201
    stored = body_json(response)
    assert stored["instance_id"] == "task-1"
    assert stored["weight"] == 7
    assert stored["metadata"] == {"a": "b"}
    assert stored["status"] == "UP"
    assert 19 < stored["expires_in"] <= 20
    assert stored["expires_at"] > stored["registered_at"]
    assert response.headers["X-Request-Id"]


def test_registering_a_live_instance_again_answers_200_and_replaces_it(client: Client) -> None:
    register(client)
    response = register(client, port=9090)

    assert response.status_code == 200
    assert body_json(response)["port"] == 9090


def test_an_instance_registered_with_tls_is_stored_listed_and_heartbeated_with_it(
    client: Client,
) -> None:
    registered = register(client, tls=True)
    renewed = put(client, INSTANCE + "/heartbeat", {})
    listed = client.http.get("/registry/services/orders/instances", headers=bearer(admin_token()))
    plain = register(client)

    assert (registered.status_code, body_json(registered)["tls"]) == (201, True)
    assert body_json(renewed)["tls"] is True
    assert [i["tls"] for i in body_json(listed)["instances"]] == [True]
    assert (plain.status_code, body_json(plain)["tls"]) == (200, False)


def test_heartbeat_renews_the_lease_and_may_mark_the_instance_down(client: Client) -> None:
    register(client, lease_seconds=10)
    response = put(client, INSTANCE + "/heartbeat", {"status": "DOWN"})

    assert response.status_code == 200
    assert body_json(response)["status"] == "DOWN"
    assert body_json(response)["expires_in"] > 9


def test_heartbeat_for_an_unknown_instance_answers_404(client: Client) -> None:
    response = put(client, INSTANCE + "/heartbeat", {})

    assert response.status_code == 404
    assert body_json(response)["error"]["code"] == "instance_not_found"


def test_heartbeat_never_revives_a_lapsed_lease(
    client: Client, store: InstanceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an instance whose lease ran out
    now = [1_000_000.0]
    registry = Registry(store, AddressPolicy(allow_loopback=True), clock=lambda: now[0])
    monkeypatch.setattr(wiring, "registry", lambda: registry)
    assert register(client, lease_seconds=5).status_code == 201
    now[0] += 6
    # When its sidecar heartbeats late
    response = put(client, INSTANCE + "/heartbeat", {})
    # Then the registry refuses, and the instance stays out of the live list
    assert response.status_code == 404
    listed = client.http.get("/registry/services/orders/instances", headers=bearer(admin_token()))
    assert body_json(listed)["instances"] == []
    # And registering again counts as new
    assert register(client, lease_seconds=5).status_code == 201


def test_deregistering_answers_204_also_when_already_gone(client: Client) -> None:
    register(client)
    headers = bearer(service_token("orders"))

    assert client.http.delete(INSTANCE, headers=headers).status_code == 204
    assert client.http.delete(INSTANCE, headers=headers).status_code == 204
    assert put(client, INSTANCE + "/heartbeat", {}).status_code == 404


def test_listing_services_counts_live_and_total_instances_per_version(
    client: Client, store: InstanceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [2_000_000.0]
    registry = Registry(store, AddressPolicy(allow_loopback=True), clock=lambda: now[0])
    monkeypatch.setattr(wiring, "registry", lambda: registry)
    register(client, "a", lease_seconds=5)
    register(client, "b", version="v2", lease_seconds=60)
    now[0] += 10

    response = client.http.get("/registry/services", headers=bearer(admin_token()))

    assert response.status_code == 200
    [orders] = body_json(response)["services"]
    assert orders == {
        "service": "orders",
        "live": 1,
        "total": 2,
        "versions": {"v1": {"live": 0, "total": 1}, "v2": {"live": 1, "total": 1}},
        "exposure": {"declared": False, "exposed": False, "versions": None, "auth": []},
    }


def test_listing_instances_can_filter_by_version(client: Client) -> None:
    register(client, "a")
    register(client, "b", version="v2")
    headers = bearer(admin_token())

    everything = body_json(client.http.get("/registry/services/orders/instances", headers=headers))
    only_v2 = body_json(
        client.http.get("/registry/services/orders/instances?version=v2", headers=headers)
    )

    assert sorted(i["instance_id"] for i in everything["instances"]) == ["a", "b"]
    assert [i["instance_id"] for i in only_v2["instances"]] == ["b"]


def test_health_answers_200_when_the_table_answers(client: Client) -> None:
    response = client.http.get("/health")

    assert response.status_code == 200
    assert body_json(response) == {"status": "ok"}


def test_health_answers_503_when_the_table_is_missing(
    client: Client, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]
) -> None:
    from chalicelib.config import Settings

    missing = InstanceStore(Settings.from_environ({**environment, "LAMBDAMESH_TABLE": "absent"}))
    monkeypatch.setattr(wiring, "registry", lambda: Registry(missing, AddressPolicy()))

    response = client.http.get("/health")

    assert response.status_code == 503
    # A public endpoint: the reason goes to the log, not to whoever asks.
    assert body_json(response) == {"status": "unavailable"}


class TestTokens:
    def test_no_token_answers_401(self, client: Client) -> None:
        response = client.http.put(INSTANCE, headers=JSON, body="{}")

        assert response.status_code == 401
        assert body_json(response)["error"]["code"] == "unauthorized"

    def test_a_token_signed_with_another_key_answers_401(self, client: Client) -> None:
        from chalicelib.auth import issue

        forged = issue(b"some-other-key-0123456789", service="orders")
        response = register_with(client, forged)

        assert response.status_code == 401

    def test_a_service_token_may_not_write_another_service(self, client: Client) -> None:
        response = register_with(client, service_token("payments"))

        assert response.status_code == 403
        assert body_json(response)["error"]["code"] == "forbidden"

    def test_an_admin_token_may_write_any_service(self, client: Client) -> None:
        assert register_with(client, admin_token()).status_code == 201

    def test_reads_need_a_valid_token(self, client: Client) -> None:
        anonymous = client.http.get("/registry/services")
        with_service_token = client.http.get(
            "/registry/services", headers=bearer(service_token("payments"))
        )

        assert anonymous.status_code == 401
        assert with_service_token.status_code == 200

    def test_error_messages_never_echo_the_token(self, client: Client) -> None:
        forged = "lm1.YWRtaW4.c2VjcmV0LXNpZ25hdHVyZQ"
        response = register_with(client, forged)

        assert forged not in response.body.decode()
        assert "c2VjcmV0" not in response.body.decode()


def register_with(client: Client, token: str) -> Any:
    body = {"version": "v1", "host": "127.0.0.1", "port": 8080}
    return put(client, INSTANCE, body, token)


REFUSALS = [
    ({"host": "127.0.0.1", "port": 70000}, 400, "invalid_request", "port"),
    ({"host": "127.0.0.1", "port": 0}, 400, "invalid_request", "port"),
    ({"host": "169.254.169.254", "port": 80}, 400, "host_not_allowed", "link-local"),
    ({"host": "fe80::1", "port": 80}, 400, "host_not_allowed", "link-local"),
    ({"host": "0.0.0.0", "port": 80}, 400, "host_not_allowed", "unspecified"),
    ({"host": "224.0.0.1", "port": 80}, 400, "host_not_allowed", "multicast"),
    ({"host": "10.0.0.1", "port": 80}, 400, "host_not_allowed", "private"),
    ({"host": "not a host", "port": 80}, 400, "invalid_request", "host"),
    ({"host": "127.0.0.1", "port": 80, "weight": 0}, 400, "invalid_request", "weight"),
    ({"host": "127.0.0.1", "port": 80, "lease_seconds": 301}, 400, "invalid_request", "lease"),
    ({"host": "127.0.0.1", "port": 80, "status": "MAYBE"}, 400, "invalid_request", "status"),
    ({"host": "127.0.0.1", "port": 80, "colour": "red"}, 400, "invalid_request", "colour"),
    (
        {"host": "127.0.0.1", "port": 80, "metadata": {f"k{i}": "v" for i in range(33)}},
        400,
        "invalid_request",
        "metadata",
    ),
    (
        {"host": "127.0.0.1", "port": 80, "task_arn": "my-task"},
        400,
        "invalid_request",
        "task_arn is not valid: use an ECS task ARN, arn:aws:ecs:<region>:<account>:task/",
    ),
    (
        {
            "host": "127.0.0.1",
            "port": 80,
            "task_arn": "arn:aws:ecs:us-east-1:123456789012:"
            "container/prod/0123456789abcdef0123456789abcdef",
        },
        400,
        "invalid_request",
        "task_arn is not valid",
    ),
    ({"host": "127.0.0.1", "port": 80, "tls": "true"}, 400, "invalid_request", "tls must be"),
    (
        {"host": "127.0.0.1", "port": 80, "task_arn": 7},
        400,
        "invalid_request",
        "task_arn must be string",
    ),
    (
        {
            "host": "127.0.0.1",
            "port": 80,
            "task_arn": "arn:aws:ecs:us-east-1:123456789012:task/"
            + "c" * 500
            + "/0123456789abcdef0123456789abcdef",
        },
        400,
        "invalid_request",
        "task_arn must be shorter than or equal to 512 characters",
    ),
]


@pytest.mark.parametrize(("fields", "status", "code", "mentions"), REFUSALS)
def test_a_refused_registration_changes_nothing_already_stored(
    client: Client, fields: dict[str, Any], status: int, code: str, mentions: str
) -> None:
    # Given a stored instance
    assert register(client, port=8080).status_code == 201
    # When a bad registration for the same instance arrives
    response = put(client, INSTANCE, {"version": "v1", **fields})
    # Then it is refused with a clear error
    assert response.status_code == status
    error = body_json(response)["error"]
    assert error["code"] == code
    assert mentions in error["message"]
    # And the stored instance is unchanged
    listed = client.http.get("/registry/services/orders/instances", headers=bearer(admin_token()))
    [instance] = body_json(listed)["instances"]
    assert (instance["host"], instance["port"]) == ("127.0.0.1", 8080)
    assert "task_arn" not in instance


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/registry/services/Orders/instances/task-1", "invalid_name"),
        ("/registry/services/orders/instances/-task", "invalid_name"),
        (f"/registry/services/{'s' * 64}/instances/task-1", "invalid_name"),
    ],
)
def test_bad_names_are_refused_with_invalid_name(client: Client, path: str, code: str) -> None:
    body = {"version": "v1", "host": "127.0.0.1", "port": 80}
    response = put(client, path, body, admin_token())

    assert response.status_code == 400
    assert body_json(response)["error"]["code"] == code


def test_malformed_json_is_refused(client: Client) -> None:
    headers = {**JSON, **bearer(service_token("orders"))}
    response = client.http.put(INSTANCE, headers=headers, body="{not json")

    assert response.status_code == 400
    assert "JSON" in body_json(response)["error"]["message"]


def test_an_oversized_body_is_refused_with_413(client: Client) -> None:
    headers = {**JSON, **bearer(service_token("orders"))}
    body = json.dumps({"version": "v1", "host": "127.0.0.1", "port": 80, "pad": "x" * 20_000})
    response = client.http.put(INSTANCE, headers=headers, body=body)

    assert response.status_code == 413
    assert body_json(response)["error"]["code"] == "payload_too_large"


# Each write route with a token that may not use it; the bodies would each be refused alone.
WRITE_ROUTES = [
    ("PUT", INSTANCE, service_token("payments")),
    ("PUT", INSTANCE + "/heartbeat", service_token("payments")),
    ("DELETE", INSTANCE, service_token("payments")),
    ("PUT", INSTANCE + "/drain", service_token("orders")),
    ("DELETE", INSTANCE + "/drain", service_token("orders")),
    ("PUT", "/registry/services/orders/policy", service_token("orders")),
    ("DELETE", "/registry/services/orders/policy", service_token("orders")),
]
BAD_BODIES = [
    json.dumps({"version": "v1", "host": "127.0.0.1", "port": 80, "pad": "x" * 20_000}),
    "{not json",
    json.dumps({"host": "169.254.169.254", "port": 0, "strategy": "fastest"}),
    "",
]


@pytest.mark.parametrize(
    ("method", "path", "not_allowed"),
    WRITE_ROUTES,
    ids=[f"{method} {path.rsplit('/', 1)[-1]}" for method, path, _ in WRITE_ROUTES],
)
def test_a_caller_that_may_not_write_is_refused_before_its_body_is_read(
    client: Client, method: str, path: str, not_allowed: str
) -> None:
    for body in BAD_BODIES:
        anonymous = client.http.request(method, path, headers=JSON, body=body)
        forbidden = client.http.request(
            method, path, headers={**JSON, **bearer(not_allowed)}, body=body
        )

        assert anonymous.status_code == 401, (body[:20], anonymous.body)
        assert forbidden.status_code == 403, (body[:20], forbidden.body)
        assert body_json(forbidden)["error"]["code"] == "forbidden"


def test_registration_accepts_a_body_sent_without_a_json_content_type(client: Client) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded", **bearer(admin_token())}
    body = json.dumps({"version": "v1", "host": "127.0.0.1", "port": 80})
    response = client.http.put(INSTANCE, headers=headers, body=body)

    assert response.status_code == 201


def test_tokens_of_an_older_key_still_work_while_it_is_listed(
    environment: dict[str, str], store: InstanceStore
) -> None:
    import app as application
    from chalicelib.auth import issue
    from lambdamesh.testclient import create_test_client

    rotated = {**environment, "LAMBDAMESH_SIGNING_KEY": "brand-new-key-0123456789," + SIGNING_KEY}
    wiring.reset()
    with create_test_client(application.app, environment_variables=rotated) as rotated_client:
        old = register_with(rotated_client, service_token("orders"))
        new = register_with(rotated_client, issue(b"brand-new-key-0123456789", service="orders"))
    wiring.reset()

    assert old.status_code == 201
    assert new.status_code == 200


def test_a_missing_table_answers_500_registry_misconfigured_and_logs_the_cause(
    environment: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Waiting will not create the table: no Retry-After, so sidecars do not retry forever,
    and the log (not the caller) says which table and why."""
    import app as application
    from lambdamesh.testclient import create_test_client

    misplaced = {**environment, "LAMBDAMESH_TABLE": "registry-that-was-never-created"}
    wiring.reset()
    with (
        create_test_client(application.app, environment_variables=misplaced) as misplaced_client,
        caplog.at_level("ERROR", logger="lambdamesh"),
    ):
        written = register(misplaced_client)
        read = misplaced_client.http.get(
            "/registry/services/orders/instances", headers=bearer(admin_token())
        )
    wiring.reset()

    for response in (written, read):
        assert response.status_code == 500
        assert "Retry-After" not in response.headers
        assert body_json(response)["error"]["code"] == "registry_misconfigured"
        assert "registry-that-was-never-created" not in response.body.decode()
    causes = [r for r in caplog.records if r.getMessage().startswith("registry ")]
    assert [vars(r)["error_code"] for r in causes] == ["ResourceNotFoundException"] * 2
    assert all("registry-that-was-never-created" in vars(r)["cause"] for r in causes)


def test_listing_services_drops_a_service_with_nothing_stored_from_the_catalog(
    client: Client, store: InstanceStore
) -> None:
    # Given a service whose only instance deregistered
    register(client)
    client.http.delete(INSTANCE, headers=bearer(service_token("orders")))
    # When the services are listed
    response = client.http.get("/registry/services", headers=bearer(admin_token()))
    # Then it is not listed, and the next list will not query it
    assert body_json(response) == {"services": []}
    assert store.services() == []
    # And it is listed again once an instance registers
    register(client)
    listed = body_json(client.http.get("/registry/services", headers=bearer(admin_token())))
    assert [s["service"] for s in listed["services"]] == ["orders"]


def test_a_registration_of_a_full_service_is_refused_with_409(
    client: Client, store: InstanceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(store, AddressPolicy(allow_loopback=True), max_instances=1)
    monkeypatch.setattr(wiring, "registry", lambda: registry)
    register(client, "a")

    response = register(client, "b")

    assert response.status_code == 409
    assert body_json(response)["error"]["code"] == "too_many_instances"
