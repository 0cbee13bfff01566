"""The routing view sidecars poll: what routing reads of a service, with an ETag that changes
only when routing would, so an unchanged view costs a 304 with no body."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import app as application
from chalicelib import wiring
from chalicelib.storage import InstanceStore
from lambdamesh.testclient import LANES, create_test_client
from lambdamesh.testclient import TestClient as Client
from lambdamesh.testclient import TestResponse as Response
from lambdamesh_routing.wire import MeshSettings, parse_mesh, parse_view
from tests.functional.conftest import body_json
from tests.helpers import admin_token, bearer, service_token

VIEW = "/registry/services/orders/routing"


def register(
    client: Client, instance: str, version: str = "v1", port: int = 8080, **fields: Any
) -> None:
    answer = client.http.put(
        f"/registry/services/orders/instances/{instance}",
        headers={"Content-Type": "application/json", **bearer(service_token("orders"))},
        body=json.dumps({"version": version, "host": "127.0.0.1", "port": port, **fields}),
    )
    assert answer.status_code in (200, 201), answer.body


def heartbeat(client: Client, instance: str, status: str = "UP") -> None:
    answer = client.http.put(
        f"/registry/services/orders/instances/{instance}/heartbeat",
        headers={"Content-Type": "application/json", **bearer(service_token("orders"))},
        body=json.dumps({"status": status}),
    )
    assert answer.status_code == 200, answer.body


def view(client: Client, etag: str | None = None, token: str | None = None) -> Response:
    headers = bearer(token or service_token("billing"))
    if etag is not None:
        headers["If-None-Match"] = etag
    return client.http.get(VIEW, headers=headers)


def header(response: Response, name: str) -> str:
    value = {k.lower(): v for k, v in response.headers.items()}[name.lower()]
    assert isinstance(value, str), value  # sent once, not repeated
    return value


def test_any_service_token_reads_a_view_that_parses_into_what_routing_needs(
    client: Client,
) -> None:
    register(client, "task-1")
    register(client, "task-2", version="v2", port=8081)

    answer = view(client)

    assert answer.status_code == 200
    document = body_json(answer)
    assert [i["instance_id"] for i in document["instances"]] == ["task-1", "task-2"]
    assert document["instances"][0] == {
        "instance_id": "task-1",
        "version": "v1",
        "host": "127.0.0.1",
        "port": 8080,
        "weight": 100,
        "zone": None,
        "status": "UP",
        "tls": False,
        "drained": False,
        "live": True,
    }
    assert document["policy"] is None
    assert document["mesh"] == {"mtls": "permissive", "intentions_default": "allow"}
    parsed = parse_view("orders", document)
    assert [(i.instance_id, i.version, i.port) for i in parsed.instances] == [
        ("task-1", "v1", 8080),
        ("task-2", "v2", 8081),
    ]
    assert header(answer, "ETag").startswith('"')


def test_an_unchanged_view_is_a_304_with_no_body_even_across_heartbeats(client: Client) -> None:
    register(client, "task-1")
    tag = header(view(client), "ETag")

    heartbeat(client, "task-1")
    again = view(client, tag)

    assert again.status_code == 304
    assert again.body in (b"", "", None)
    assert header(again, "ETag") == tag
    assert view(client, f"W/{tag}").status_code == 304
    assert view(client, f'"other", {tag}').status_code == 304


def test_the_etag_changes_when_routing_would(client: Client) -> None:
    register(client, "task-1")
    tags = [header(view(client), "ETag")]

    heartbeat(client, "task-1", "DOWN")
    tags.append(header(view(client), "ETag"))
    register(client, "task-1", tls=True)
    tags.append(header(view(client), "ETag"))
    register(client, "task-2")
    tags.append(header(view(client), "ETag"))
    drained = client.http.put(
        "/registry/services/orders/instances/task-2/drain", headers=bearer(admin_token())
    )
    assert drained.status_code == 200, drained.body
    tags.append(header(view(client), "ETag"))
    policy = client.http.put(
        "/registry/services/orders/policy",
        headers={"Content-Type": "application/json", **bearer(admin_token())},
        body=json.dumps({"strategy": "random"}),
    )
    assert policy.status_code == 201, policy.body
    changed = view(client, tags[-1])
    tags.append(header(changed, "ETag"))

    assert changed.status_code == 200
    assert body_json(changed)["policy"]["strategy"] == "random"
    assert len(set(tags)) == len(tags)


def test_a_service_with_no_instance_is_an_empty_view(client: Client) -> None:
    answer = view(client)

    assert answer.status_code == 200
    assert body_json(answer) == {
        "service": "orders",
        "instances": [],
        "policy": None,
        "mesh": {"mtls": "permissive", "intentions_default": "allow"},
    }


def test_a_service_with_no_instance_yet_has_its_policy_in_its_view(client: Client) -> None:
    """A service's first sidecar reads its own policy before it registers: the intentions its
    inbound port enforces must be the policy's from the start, cached miss or not."""
    intentions = {"default": "deny", "rules": [{"from": "billing", "action": "allow"}]}
    stored = client.http.put(
        "/registry/services/orders/policy",
        headers={"Content-Type": "application/json", **bearer(admin_token())},
        body=json.dumps({"mtls": "strict", "intentions": intentions}),
    )
    assert stored.status_code == 201, stored.body
    for _ in range(2):  # a read, then the cached miss
        document = body_json(view(client))
        assert document["instances"] == []
        assert document["policy"]["intentions"] == intentions
        assert document["mesh"] == {"mtls": "strict", "intentions_default": "deny"}


def test_a_view_needs_a_valid_token_and_a_valid_name(client: Client) -> None:
    unsigned = client.http.get(VIEW)
    bad_name = client.http.get(
        "/registry/services/Orders!/routing", headers=bearer(service_token("billing"))
    )

    assert unsigned.status_code == 401
    assert (bad_name.status_code, body_json(bad_name)["error"]["code"]) == (400, "invalid_name")


def test_each_instance_says_whether_its_port_takes_mutual_tls(client: Client) -> None:
    register(client, "task-1", tls=True)
    register(client, "task-2")

    document = body_json(view(client))

    assert [(i["instance_id"], i["tls"]) for i in document["instances"]] == [
        ("task-1", True),
        ("task-2", False),
    ]
    assert [i.tls for i in parse_view("orders", document).instances] == [True, False]


@pytest.fixture(params=LANES)
def strict_stage(
    request: pytest.FixtureRequest, environment: dict[str, str], store: InstanceStore
) -> Iterator[Client]:
    """A stage whose inbound ports default to strict mutual TLS and deny what no intention
    allows."""
    wiring.reset()
    settings = {
        **environment,
        "LAMBDAMESH_MTLS_DEFAULT": "strict",
        "LAMBDAMESH_INTENTIONS_DEFAULT": "deny",
    }
    with create_test_client(
        application.app, environment_variables=settings, lane=request.param
    ) as client:
        yield client
    wiring.reset()


def test_the_mesh_settings_are_the_policys_where_it_sets_them_else_the_stages(
    strict_stage: Client,
) -> None:
    register(strict_stage, "task-1")
    stage = view(strict_stage)

    policy = strict_stage.http.put(
        "/registry/services/orders/policy",
        headers={"Content-Type": "application/json", **bearer(admin_token())},
        body=json.dumps({"mtls": "permissive", "intentions": {"default": "allow"}}),
    )
    assert policy.status_code == 201, policy.body
    own = view(strict_stage, header(stage, "ETag"))

    assert body_json(stage)["mesh"] == {"mtls": "strict", "intentions_default": "deny"}
    assert parse_mesh(body_json(stage)) == MeshSettings("strict", "deny")
    assert own.status_code == 200
    assert body_json(own)["mesh"] == {"mtls": "permissive", "intentions_default": "allow"}
    assert parse_mesh(body_json(own)) == MeshSettings("permissive", "allow")
