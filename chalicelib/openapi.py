"""The registry API as an OpenAPI 3.1 document, built from the JSON Schemas that validation
compiles, so the document and the checks cannot drift apart. Served at
``GET /registry/openapi.json``; ``tests/e2e`` runs schemathesis against it."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from chalicelib.exposure.document import AUTH_METHODS, exposure_schema
from chalicelib.exposure.keys import CONSUMER_PATTERN, MAX_KEY_DAYS, MIN_KEY_DAYS
from chalicelib.validation import HEARTBEAT_SCHEMA, POLICY_SCHEMA, REGISTER_SCHEMA
from lambdamesh_routing.names import INSTANCE_PATTERN, SERVICE_PATTERN, VERSION_PATTERN
from lambdamesh_routing.policy import INTENTION_ACTIONS, MTLS_MODES

TITLE = "lambdamesh registry"
API_VERSION = "1"
_STATUSES = ["UP", "DOWN", "DRAINING"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if schema is not None:
        answer["content"] = _json(schema)
    return answer


def _errors(*statuses: int) -> dict[str, Any]:
    """The error envelope under each status the operation may answer with."""
    reasons = {
        "400": "invalid input: a name, a body or a host (`invalid_request`, `invalid_name`, ...)",
        "401": "no token, or one the registry did not sign",
        "403": "a token that may not do this",
        "404": "nothing by that name",
        "409": "the service is at its cap: of live instances (`too_many_instances`) or of "
        "drains (`too_many_drains`)",
        "413": "the body, or the instance, is over its limit",
        "500": "the deployment is misconfigured; the log says what",
        "503": "DynamoDB or the key store did not answer; `Retry-After` says when to try again",
    }
    chosen = {str(s): _answer(reasons[str(s)], _ref("Error")) for s in statuses}
    chosen.update({"500": _answer(reasons["500"], _ref("Error"))})
    chosen.update({"503": _answer(reasons["503"], _ref("Error"))})
    return chosen


def _parameter(name: str, pattern: str, where: str = "path") -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": {"type": "string", "pattern": pattern},
    }


_SERVICE = _parameter("service", SERVICE_PATTERN)
_INSTANCE = _parameter("instance_id", INSTANCE_PATTERN)


def _instance_schema() -> dict[str, Any]:
    text, number, integer = {"type": "string"}, {"type": "number"}, {"type": "integer"}
    return {
        "type": "object",
        "required": [
            "service",
            "instance_id",
            "version",
            "host",
            "port",
            "weight",
            "zone",
            "metadata",
            "status",
            "lease_seconds",
            "expires_at",
            "expires_in",
            "live",
            "registered_at",
            "updated_at",
            "tls",
            "figures",
        ],
        "properties": {
            "service": text,
            "instance_id": text,
            "version": text,
            "host": text,
            "port": integer,
            "weight": integer,
            "zone": {"type": ["string", "null"]},
            "metadata": {"type": "object", "additionalProperties": text},
            "status": {"enum": _STATUSES},
            "drained": {"type": "boolean"},
            "lease_seconds": integer,
            "expires_at": number,
            "expires_in": number,
            "live": {"type": "boolean"},
            "registered_at": number,
            "updated_at": number,
            "task_arn": text,
            "tls": {"type": "boolean"},
            "figures": _figures_schema(),
        },
    }


def _figures_schema() -> dict[str, Any]:
    calls = {
        "type": ["object", "null"],
        "required": ["requests", "errors", "p50_ms", "p99_ms"],
        "properties": {
            "requests": {"type": "integer"},
            "errors": {"type": "integer"},
            "p50_ms": {"type": ["number", "null"]},
            "p99_ms": {"type": ["number", "null"]},
        },
    }
    return {
        "type": ["object", "null"],
        "description": "what its sidecar counted of the calls through its ports, as its last "
        "heartbeat that carried figures reported them; null when none came since it "
        "registered (a registration drops them)",
        "required": ["seconds", "in", "out", "reported_at"],
        "properties": {
            "seconds": {"type": "number", "description": "the window they cover"},
            "in": {**calls, "description": "the inbound port's calls; null: none reported"},
            "out": {**calls, "description": "the outbound port's calls; null: none reported"},
            "reported_at": {
                "type": "number",
                "description": "when the registry received them, seconds since the epoch",
            },
        },
    }


def _routing_view_schema() -> dict[str, Any]:
    fields = {
        "instance_id": {"type": "string"},
        "version": {"type": "string"},
        "host": {"type": "string"},
        "port": {"type": "integer"},
        "weight": {"type": "integer"},
        "zone": {"type": ["string", "null"]},
        "status": {"enum": _STATUSES},
        "drained": {"type": "boolean"},
        "live": {"type": "boolean"},
        "tls": {"type": "boolean"},
    }
    mesh = {
        "mtls": {"enum": list(MTLS_MODES)},
        "intentions_default": {"enum": list(INTENTION_ACTIONS)},
    }
    return {
        "type": "object",
        "required": ["service", "instances", "policy", "mesh"],
        "properties": {
            "service": {"type": "string"},
            "instances": {
                "type": "array",
                "items": {"type": "object", "required": list(fields), "properties": fields},
            },
            "policy": {"type": ["object", "null"]},
            "mesh": {
                "type": "object",
                "description": "what the service's inbound ports enforce: the policy's mtls "
                "and intentions default where it sets them, else the stage's "
                "(LAMBDAMESH_MTLS_DEFAULT, LAMBDAMESH_INTENTIONS_DEFAULT)",
                "required": list(mesh),
                "properties": mesh,
            },
        },
    }


def _certificate_schema() -> dict[str, Any]:
    text = {"type": "string"}
    seconds = {"type": "number", "description": "seconds since the epoch"}
    return {
        "type": "object",
        "required": [
            "service",
            "identity",
            "serial",
            "not_before",
            "not_after",
            "renew_at",
            "certificate",
            "private_key",
            "trust_bundle",
        ],
        "properties": {
            "service": text,
            "identity": {**text, "description": "spiffe://<trust domain>/<stage>/<service>"},
            "serial": {**text, "description": "the certificate's serial number, in hex"},
            "not_before": seconds,
            "not_after": seconds,
            "renew_at": {**seconds, "description": "when to ask for the next one"},
            "certificate": {**text, "description": "PEM"},
            "private_key": {**text, "description": "PEM, PKCS #8, EC P-256"},
            "trust_bundle": {**text, "description": "PEM: every CA the mesh trusts"},
        },
    }


def _schemas() -> dict[str, Any]:
    counts = {
        "type": "object",
        "required": ["live", "total"],
        "properties": {"live": {"type": "integer"}, "total": {"type": "integer"}},
    }
    return {
        "Registration": copy.deepcopy(REGISTER_SCHEMA),
        "Heartbeat": copy.deepcopy(HEARTBEAT_SCHEMA),
        "Policy": copy.deepcopy(POLICY_SCHEMA),
        "Instance": _instance_schema(),
        "InstanceList": {
            "type": "object",
            "required": ["service", "instances"],
            "properties": {
                "service": {"type": "string"},
                "instances": {"type": "array", "items": _ref("Instance")},
            },
        },
        "RoutingView": _routing_view_schema(),
        "ServiceCertificate": _certificate_schema(),
        "EdgeSummary": {
            "type": "object",
            "description": "How the service faces the internet: declared in its exposure "
            "document, or the stage's default (LAMBDAMESH_EDGE_DEFAULT) when not declared.",
            "required": ["declared", "exposed", "versions", "auth"],
            "properties": {
                "declared": {"type": "boolean"},
                "exposed": {"type": "boolean"},
                "versions": {"type": ["array", "null"], "items": {"type": "string"}},
                "auth": {"type": "array", "items": {"enum": list(AUTH_METHODS)}},
            },
        },
        "ServiceList": {
            "type": "object",
            "required": ["services"],
            "properties": {
                "services": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["service", "live", "total", "versions", "exposure"],
                        "properties": {
                            "service": {"type": "string"},
                            "live": {"type": "integer"},
                            "total": {"type": "integer"},
                            "versions": {"type": "object", "additionalProperties": counts},
                            "exposure": _ref("EdgeSummary"),
                        },
                    },
                }
            },
        },
        "StoredPolicy": {
            "type": "object",
            "required": ["service", "policy", "updated_at"],
            "properties": {
                "service": {"type": "string"},
                "policy": {"type": "object"},
                "updated_at": {"type": "number"},
            },
        },
        "Exposure": copy.deepcopy(exposure_schema()),
        "StoredExposure": {
            "type": "object",
            "required": ["service", "exposure", "updated_at"],
            "properties": {
                "service": {"type": "string"},
                "exposure": {"type": "object"},
                "updated_at": {"type": "number"},
            },
        },
        "KeyRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["consumer"],
            "properties": {
                "consumer": {"type": "string", "pattern": CONSUMER_PATTERN},
                "expires_in_days": {
                    "type": ["number", "null"],
                    "minimum": MIN_KEY_DAYS,
                    "maximum": MAX_KEY_DAYS,
                },
            },
        },
        "Key": _key_schema(),
        "NewKey": _key_schema(secret=True),
        "KeyList": {
            "type": "object",
            "required": ["service", "keys"],
            "properties": {
                "service": {"type": "string"},
                "keys": {"type": "array", "items": _ref("Key")},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"enum": ["ok", "unavailable", "misconfigured"]},
                "reason": {"type": "string"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "request_id"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "request_id": {"type": "string"},
                    },
                }
            },
        },
    }


def _key_schema(secret: bool = False) -> dict[str, Any]:
    """A key as listed; as created, with its one showing of the key itself."""
    stamp = {"type": ["number", "null"]}
    fields: dict[str, Any] = {
        "key_id": {"type": "string"},
        "consumer": {"type": "string"},
        "created_at": {"type": "number"},
        "expires_at": stamp,
        "revoked_at": stamp,
        "last_used_at": stamp,
    }
    if secret:
        fields |= {"service": {"type": "string"}, "key": {"type": "string"}}
    return {"type": "object", "required": sorted(fields), "properties": fields}


def _exposure_paths() -> dict[str, Any]:
    deleted = {"204": {"description": "deleted"}}
    return {
        "/registry/services/{service}/exposure": {
            "parameters": [_SERVICE],
            "get": {
                "summary": "Whether and how the public gateway serves the service",
                "responses": {
                    "200": _answer("the exposure document", _ref("StoredExposure")),
                    **_errors(400, 401, 404),
                },
            },
            "put": {
                "summary": "Store an exposure document (admin); the body is required",
                "requestBody": _body("Exposure"),
                "responses": {
                    "200": _answer("replaced", _ref("StoredExposure")),
                    "201": _answer("stored", _ref("StoredExposure")),
                    **_errors(400, 401, 403, 413),
                },
            },
            "delete": {
                "summary": "Delete the exposure document (admin): LAMBDAMESH_EDGE_DEFAULT applies",
                "responses": {**deleted, **_errors(400, 401, 403, 404)},
            },
        },
        "/registry/services/{service}/keys": {
            "parameters": [_SERVICE],
            "get": {
                "summary": "The service's API keys, without secrets (admin)",
                "responses": {
                    "200": _answer("the keys", _ref("KeyList")),
                    **_errors(400, 401, 403),
                },
            },
            "post": {
                "summary": "Create an API key (admin); the key is in this answer only",
                "requestBody": _body("KeyRequest"),
                "responses": {
                    "201": _answer("created", _ref("NewKey")),
                    **_errors(400, 401, 403, 409, 413),
                },
            },
        },
        "/registry/services/{service}/keys/{key_id}": {
            "parameters": [_SERVICE, _parameter("key_id", "^[a-z0-9]{16}$")],
            "delete": {
                "summary": "Revoke an API key (admin)",
                "responses": {**deleted, **_errors(400, 401, 403, 404)},
            },
        },
    }


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": _json(_ref(name))}


def _paths() -> dict[str, Any]:
    instance = "/registry/services/{service}/instances/{instance_id}"
    deleted = {"204": _answer("done")}
    return {
        "/health": {
            "get": {
                "summary": "Whether the registry table answers; no token",
                "security": [],
                "responses": {
                    "200": _answer("ok", _ref("Health")),
                    "503": _answer("unavailable or misconfigured", _ref("Health")),
                },
            }
        },
        "/registry/services": {
            "get": {
                "summary": "Services with their live and stored instances per version",
                "responses": {"200": _answer("the services", _ref("ServiceList")), **_errors(401)},
            }
        },
        "/registry/services/{service}/instances": {
            "parameters": [_SERVICE],
            "get": {
                "summary": "A service's live instances",
                "parameters": [_parameter("version", VERSION_PATTERN, "query")],
                "responses": {
                    "200": _answer("the live instances", _ref("InstanceList")),
                    **_errors(400, 401),
                },
            },
        },
        "/registry/services/{service}/routing": {
            "parameters": [_SERVICE],
            "get": {
                "summary": "What routing reads of a service: every stored instance with its "
                "routing fields and liveness, the policy, and the mesh settings its inbound "
                "ports enforce; polled by sidecars with If-None-Match",
                "parameters": [
                    {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _answer("the routing view, with its ETag", _ref("RoutingView")),
                    "304": _answer("unchanged since the ETag given"),
                    **_errors(400, 401),
                },
            },
        },
        instance: {
            "parameters": [_SERVICE, _INSTANCE],
            "put": {
                "summary": "Register an instance, or register it again",
                "requestBody": _body("Registration"),
                "responses": {
                    "200": _answer("a live instance replaced", _ref("Instance")),
                    "201": _answer("registered", _ref("Instance")),
                    **_errors(400, 401, 403, 409, 413),
                },
            },
            "delete": {
                "summary": "Deregister; done also when already gone",
                "responses": {**deleted, **_errors(400, 401, 403)},
            },
        },
        f"{instance}/heartbeat": {
            "parameters": [_SERVICE, _INSTANCE],
            "put": {
                "summary": "Renew the lease, and report the status and the figures of the "
                "calls through the sidecar's ports (kept until the next figures)",
                "requestBody": {"required": False, "content": _json(_ref("Heartbeat"))},
                "responses": {
                    "200": _answer("renewed", _ref("Instance")),
                    **_errors(400, 401, 403, 404, 413),
                },
            },
        },
        f"{instance}/drain": {
            "parameters": [_SERVICE, _INSTANCE],
            "put": {
                "summary": "Take an instance out of rotation (admin)",
                "responses": {
                    "200": _answer("drained", _ref("Instance")),
                    **_errors(400, 401, 403, 404, 409),
                },
            },
            "delete": {
                "summary": "Lift a drain (admin)",
                "responses": {**deleted, **_errors(400, 401, 403, 404)},
            },
        },
        "/registry/services/{service}/certificate": {
            "parameters": [_SERVICE],
            "post": {
                "summary": "A new certificate naming the service (its own token or an admin "
                "token), with the key the registry generated for it, answered once with "
                "Cache-Control: no-store; 500 `mesh_ca_not_configured` where the stage has no "
                "mesh CA",
                "responses": {
                    "200": _answer("issued", _ref("ServiceCertificate")),
                    **_errors(400, 401, 403),
                },
            },
        },
        "/registry/services/{service}/policy": {
            "parameters": [_SERVICE],
            "get": {
                "summary": "The service's routing policy",
                "responses": {
                    "200": _answer("the policy", _ref("StoredPolicy")),
                    **_errors(400, 401, 404),
                },
            },
            "put": {
                "summary": "Store a routing policy (admin); the body is required, {} for "
                "every default",
                "requestBody": _body("Policy"),
                "responses": {
                    "200": _answer("replaced", _ref("StoredPolicy")),
                    "201": _answer("stored", _ref("StoredPolicy")),
                    **_errors(400, 401, 403, 413),
                },
            },
            "delete": {
                "summary": "Delete the routing policy (admin)",
                "responses": {**deleted, **_errors(400, 401, 403, 404)},
            },
        },
        "/registry/openapi.json": {
            "get": {
                "summary": "This document; no token",
                "security": [],
                "responses": {"200": _answer("the document", {"type": "object"})},
            }
        },
    }


@cache
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": API_VERSION,
            "description": "The registry of lambdamesh: instances, leases, routing policies. "
            'Every error answers {"error": {"code", "message", "request_id"}}.',
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "lm1.<scope>.<signature> (lambdamesh token)",
                }
            },
        },
        "security": [{"token": []}],
        "paths": {**_paths(), **_exposure_paths()},
    }
