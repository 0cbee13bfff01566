"""A service's exposure document: whether the public gateway serves it, which versions, who
may call, from where, how often, and from which browser origins.

Stored beside the routing policy in the service's partition and read in the same Query, so
checking it costs the hot path no read. Validated whole before it is stored, like a policy:
its shape and ranges by one JSON Schema assembled from each part's own, then what a schema
cannot say. The routing view that sidecars poll never carries it: calls between services
through the sidecar are not the edge's business.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import InvalidRequest, PayloadTooLarge
from chalicelib.exposure import addresses, cors, jwt_rules, limits
from chalicelib.validation import check_document
from lambdamesh_routing.names import VERSION_PATTERN, check_name

MAX_EXPOSURE_JSON = 8 * 1024
MAX_VERSIONS = 16
# How a caller proves who it is: "none" (public, chosen explicitly) or any of the others.
AUTH_METHODS = ("none", "api_key", "jwt")


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A part that may be null: its object rules apply only to an object, so a bad part is
    refused with its own reason rather than "matches no choice"."""
    return {**schema, "type": ["object", "null"]}


EXPOSURE_SCHEMA: dict[str, Any] = {
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
        "jwt": _or_null(jwt_rules.JWT_SCHEMA),
        "cors": _or_null(cors.CORS_SCHEMA),
        "addresses": _or_null(addresses.ADDRESSES_SCHEMA),
        "rate_limits": _or_null(limits.RATE_LIMITS_SCHEMA),
    },
}


@dataclass(frozen=True)
class Exposure:
    exposed: bool
    # The {version} segments served (versions or aliases, as clients write them); None: all.
    versions: tuple[str, ...] | None = None
    auth: tuple[str, ...] = ()
    jwt: jwt_rules.JwtRules | None = None
    cors: cors.CorsRules | None = None
    addresses: addresses.AddressRules | None = None
    rate_limits: limits.RateLimits | None = None

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
            "jwt": None if self.jwt is None else jwt_rules.to_json(self.jwt),
            "cors": None if self.cors is None else cors.to_json(self.cors),
            "addresses": None if self.addresses is None else addresses.to_json(self.addresses),
            "rate_limits": None if self.rate_limits is None else limits.to_json(self.rate_limits),
        }


@dataclass(frozen=True)
class StoredExposure:
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
        jwt=_part(doc, "jwt", jwt_rules.from_json),
        cors=_part(doc, "cors", cors.from_json),
        addresses=_part(doc, "addresses", addresses.from_json),
        rate_limits=_part(doc, "rate_limits", limits.from_json),
    )


def _part(doc: Mapping[str, Any], name: str, parse: Any) -> Any:
    value = doc.get(name)
    return None if value is None else parse(value)


def parse_exposure(service: str, body: Any, *, allow_loopback_http: bool = False) -> Exposure:
    """An exposure document, checked whole; refused before anything is stored.
    ``allow_loopback_http`` lets a JWKS be fetched over http from loopback (local runs)."""
    check_name("service", service)
    fields = check_document(body, "exposure", EXPOSURE_SCHEMA)
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
        found += jwt_rules.problems(doc["jwt"], allow_loopback_http=allow_loopback_http)
    for name, module in (("cors", cors), ("addresses", addresses), ("rate_limits", limits)):
        if doc.get(name) is not None:
            found += module.problems(doc[name])
    return found
