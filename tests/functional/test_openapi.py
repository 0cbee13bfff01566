"""The OpenAPI document: served without a token, built from the schemas validation compiles,
and covering every registry route with the methods it has."""

from __future__ import annotations

import json

import app as application
from chalicelib.validation import (
    FIGURES_SCHEMA,
    HEARTBEAT_SCHEMA,
    POLICY_SCHEMA,
    REGISTER_SCHEMA,
)
from lambdamesh.testclient import TestClient as Client
from tests.functional.conftest import body_json
from tests.helpers import bearer, service_token

DOCUMENT = "/registry/openapi.json"


def test_the_document_is_served_without_a_token(client: Client) -> None:
    answer = client.http.get(DOCUMENT)

    assert answer.status_code == 200
    assert body_json(answer)["openapi"] == "3.1.0"


def test_the_bodies_are_the_schemas_the_validation_compiles(client: Client) -> None:
    schemas = body_json(client.http.get(DOCUMENT))["components"]["schemas"]

    assert schemas["Registration"] == REGISTER_SCHEMA
    assert schemas["Heartbeat"] == HEARTBEAT_SCHEMA
    assert schemas["Policy"] == POLICY_SCHEMA


def test_instances_and_the_routing_view_document_tls_and_the_mesh_settings(
    client: Client,
) -> None:
    schemas = body_json(client.http.get(DOCUMENT))["components"]["schemas"]
    view = schemas["RoutingView"]

    assert "tls" in schemas["Instance"]["required"]
    assert "tls" in view["properties"]["instances"]["items"]["required"]
    assert "mesh" in view["required"]
    assert view["properties"]["mesh"]["properties"] == {
        "mtls": {"enum": ["permissive", "strict"]},
        "intentions_default": {"enum": ["allow", "deny"]},
    }


def test_the_heartbeats_figures_and_the_instances_are_documented(client: Client) -> None:
    import fastjsonschema

    schemas = body_json(client.http.get(DOCUMENT))["components"]["schemas"]
    headers = {"Content-Type": "application/json", **bearer(service_token("orders"))}
    path = "/registry/services/orders/instances/task-1"
    registered = client.http.put(
        path, headers=headers, body=json.dumps({"version": "v1", "host": "127.0.0.1", "port": 80})
    )
    calls = {"requests": 3, "errors": 0, "p50_ms": 1.5, "p99_ms": 9.0}
    beat = client.http.put(
        f"{path}/heartbeat",
        headers=headers,
        body=json.dumps({"figures": {"seconds": 60, "in": calls}}),
    )

    assert schemas["Heartbeat"]["properties"]["figures"] == FIGURES_SCHEMA
    assert "figures" in schemas["Instance"]["required"]
    figures = schemas["Instance"]["properties"]["figures"]
    assert figures["type"] == ["object", "null"]
    assert figures["required"] == ["seconds", "in", "out", "reported_at"]
    assert figures["properties"]["in"]["required"] == ["requests", "errors", "p50_ms", "p99_ms"]
    answers = fastjsonschema.compile(schemas["Instance"])
    assert answers(body_json(registered))["figures"] is None
    assert answers(body_json(beat))["figures"]["in"] == calls


def test_a_policy_needs_a_body_and_a_heartbeat_does_not(client: Client) -> None:
    paths = body_json(client.http.get(DOCUMENT))["paths"]
    instance = "/registry/services/{service}/instances/{instance_id}"

    assert paths["/registry/services/{service}/policy"]["put"]["requestBody"]["required"] is True
    assert paths[instance]["put"]["requestBody"]["required"] is True
    assert paths[f"{instance}/heartbeat"]["put"]["requestBody"]["required"] is False


def test_a_drain_documents_the_409_of_a_full_drain_set(client: Client) -> None:
    paths = body_json(client.http.get(DOCUMENT))["paths"]

    drain = paths["/registry/services/{service}/instances/{instance_id}/drain"]["put"]

    assert "too_many_drains" in drain["responses"]["409"]["description"]


def test_every_registry_route_and_method_is_documented(client: Client) -> None:
    paths = body_json(client.http.get(DOCUMENT))["paths"]
    unrouted = {"method_not_allowed", "route_not_found"}
    routes: dict[str, set[str]] = {}
    for path, methods in application.app.routes.items():
        if path.startswith("/registry") or path == "/health":
            owned = {m.lower() for m, e in methods.items() if e.view_name not in unrouted}
            if owned:
                routes[path] = owned

    documented = {
        path: {k for k in operations if k in ("get", "put", "post", "delete", "patch")}
        for path, operations in paths.items()
    }
    assert documented == routes


def test_every_operation_documents_the_error_envelope_and_the_token(client: Client) -> None:
    document = body_json(client.http.get(DOCUMENT))

    assert document["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method == "parameters" or operation.get("security") == []:
                continue
            errors = {s: r for s, r in operation["responses"].items() if s >= "400"}
            assert "401" in errors, (path, method)
            assert all(
                r["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
                for r in errors.values()
            ), (path, method)
