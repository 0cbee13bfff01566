"""A service's exposure document: whether the public gateway serves it, which versions, who
may call, from where, how often, and from which browser origins.

Stored beside the routing policy in the service's partition and read in the same Query, so
checking it costs the hot path no read. Validated whole before it is stored, like a policy:
its shape and ranges by one JSON Schema assembled from each part's own, then what a schema
cannot say. The routing view that sidecars poll never carries it: calls between services
through the sidecar are not the edge's business.

Each optional part (``jwt``, ``cors``, ``addresses``, ``rate_limits``) is read by a module of
its own, imported at the first document that has that part: a Lambda whose services use none
of them pays nothing for them at its cold start. Likewise the registry's body rules
(``validation``), at the first document checked before it is stored.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from chalicelib.errors import InvalidRequest, PayloadTooLarge
from lambdamesh_routing.names import VERSION_PATTERN, check_name

MAX_EXPOSURE_JSON = 8 * 1024
MAX_VERSIONS = 16
# How a caller proves who it is: "none" (public, chosen explicitly) or any of the others.
AUTH_METHODS = ("none", "api_key", "jwt")
# Each optional part of the document and the module that reads it (its schema, from_json,
# to_json and problems).
PARTS = {
    "jwt": "chalicelib.exposure.jwt_rules",
    "cors": "chalicelib.exposure.cors",
    "addresses": "chalicelib.exposure.addresses",
    "rate_limits": "chalicelib.exposure.limits",
}
_SCHEMAS = {
    "jwt": "JWT_SCHEMA",
    "cors": "CORS_SCHEMA",
    "addresses": "ADDRESSES_SCHEMA",
    "rate_limits": "RATE_LIMITS_SCHEMA",
}

if TYPE_CHECKING:
    from chalicelib.exposure.addresses import AddressRules
    from chalicelib.exposure.cors import CorsRules
    from chalicelib.exposure.jwt_rules import JwtRules
    from chalicelib.exposure.limits import RateLimits


def part(name: str) -> Any:
    """The module that reads part ``name``, imported now if it was not yet."""
    return importlib.import_module(PARTS[name])


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A part that may be null: its object rules apply only to an object, so a bad part is
    refused with its own reason rather than "matches no choice"."""
    return {**schema, "type": ["object", "null"]}


@functools.cache
def exposure_schema() -> dict[str, Any]:
    """The document's JSON Schema, each part's own within it (this imports every part)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["exposed"],
        "properties": {
            "exposed": {"type": "boolean"},
            "versions": {
                "type": ["array", "null"],
                "minItems": 1,
                "maxItems": MAX_VERSIONS,
                "uniqueItems": True,
                "items": {"type": "string", "pattern": VERSION_PATTERN},
            },
            "auth": {
                "type": "array",
                "minItems": 1,
                "maxItems": len(AUTH_METHODS),
                "uniqueItems": True,
                "items": {"enum": list(AUTH_METHODS)},
            },
            **{name: _or_null(getattr(part(name), _SCHEMAS[name])) for name in PARTS},
        },
    }


class Exposure(NamedTuple):
    exposed: bool
    # The {version} segments served (versions or aliases, as clients write them); None: all.
    versions: tuple[str, ...] | None = None
    auth: tuple[str, ...] = ()
    jwt: JwtRules | None = None
    cors: CorsRules | None = None
    addresses: AddressRules | None = None
    rate_limits: RateLimits | None = None

    @property
    def public(self) -> bool:
        return "none" in self.auth

    def serves(self, version: str) -> bool:
        return self.exposed and (self.versions is None or version in self.versions)

    def to_json(self) -> dict[str, Any]:
        """The document, every field present: what GET answers and what is stored."""
        return {
            "exposed": self.exposed,
            "versions": None if self.versions is None else list(self.versions),
            "auth": list(self.auth),
            **{
                name: None if (rules := getattr(self, name)) is None else part(name).to_json(rules)
                for name in PARTS
            },
        }


class StoredExposure(NamedTuple):
    exposure: Exposure
    updated_at: float


def exposure_answer(service: str, exposure: Exposure, updated_at: float) -> dict[str, Any]:
    """What the exposure routes answer: the whole document, defaults filled in."""
    return {"service": service, "exposure": exposure.to_json(), "updated_at": round(updated_at, 3)}


# Served as it was before exposure documents existed: by LAMBDAMESH_EDGE_DEFAULT=open only.
OPEN = Exposure(exposed=True, auth=("none",))
CLOSED = Exposure(exposed=False)


def from_json(doc: Mapping[str, Any]) -> Exposure:
    """An exposure from a validated document; absent parts are absent."""
    versions = doc.get("versions")
    return Exposure(
        exposed=bool(doc["exposed"]),
        versions=None if versions is None else tuple(versions),
        auth=tuple(doc.get("auth") or ()),
        **{
            name: None if (value := doc.get(name)) is None else part(name).from_json(value)
            for name in PARTS
        },
    )


def parse_exposure(service: str, body: Any, *, allow_loopback_http: bool = False) -> Exposure:
    """An exposure document, checked whole; refused before anything is stored.
    ``allow_loopback_http`` lets a JWKS be fetched over http from loopback (local runs)."""
    from chalicelib.validation import check_document

    check_name("service", service)
    fields = check_document(body, "exposure", exposure_schema())
    if len(json.dumps(fields, separators=(",", ":"))) > MAX_EXPOSURE_JSON:
        raise PayloadTooLarge(f"the exposure is larger than {MAX_EXPOSURE_JSON} bytes as JSON")
    for problem in _problems(fields, allow_loopback_http):
        raise InvalidRequest(f"invalid exposure: {problem}")
    return from_json(fields)


def _problems(doc: Mapping[str, Any], allow_loopback_http: bool) -> list[str]:
    found: list[str] = []
    auth = doc.get("auth") or []
    if doc["exposed"] and not auth:
        found.append(
            'an exposed service needs "auth": ["none"] to be public, or "api_key" and/or "jwt"'
        )
    if "none" in auth and len(auth) > 1:
        found.append('"none" makes a service public: it cannot be combined with other methods')
    consumer_limit = (doc.get("rate_limits") or {}).get("consumer_per_second")
    if consumer_limit is not None and not {"api_key", "jwt"} & set(auth):
        found.append(
            "rate_limits.consumer_per_second needs callers who say who they are: auth must "
            'take "api_key" or "jwt" (the callers of a public service are all anonymous)'
        )
    if ("jwt" in auth) != (doc.get("jwt") is not None):
        found.append('"jwt" in auth and the "jwt" settings (issuer, audiences, keys) go together')
    if doc.get("jwt") is not None:
        found += part("jwt").problems(doc["jwt"], allow_loopback_http=allow_loopback_http)
    for name in ("cors", "addresses", "rate_limits"):
        if doc.get(name) is not None:
            found += part(name).problems(doc[name])
    return found
