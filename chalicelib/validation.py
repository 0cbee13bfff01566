"""Input rules for the registry API: names, bodies and their limits.

Shapes and ranges are JSON Schemas run by fastjsonschema, the engine behind Powertools'
validation utility. Powertools' ``validate()`` recompiles the schema on every call (about 3 ms);
compiling each schema once per cold start makes a check cost microseconds on the heartbeat path.
What a schema cannot say (host policy) is checked after it. Every refusal raises before anything
is written.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from functools import cache
from typing import Any, cast

import fastjsonschema

from chalicelib.errors import InvalidName, InvalidRequest, PayloadTooLarge
from chalicelib.hosts import HostPolicy, normalize_host
from chalicelib.instances import Registration, Status

SERVICE_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
VERSION_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,30}[a-z0-9])?$"
INSTANCE_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$"
MAX_REGISTRY_BODY = 16 * 1024
# Arrays and objects inside one another; a registration needs two. Checked before parsing,
# since Python's parser recurses once per level and thousands of levels fit in the body limit.
MAX_JSON_DEPTH = 32
MAX_METADATA_ENTRIES = 32
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
MIN_LEASE_SECONDS = 5
MAX_LEASE_SECONDS = 300
DEFAULT_LEASE_SECONDS = 30
DEFAULT_WEIGHT = 100
MAX_WEIGHT = 1000
# An instance as the registry lists it: compact JSON with non-ASCII escaped, as the answer is
# written. The metadata limits alone allow about 18 KB, and a UTF-8 body of 16 KiB can list
# three times larger once escaped; this bound keeps config.MAX_INSTANCES_LIMIT instances of a
# service within one Lambda answer. DynamoDB stores the same text as UTF-8, never longer.
MAX_INSTANCE_JSON = 4 * 1024

_NAMES = {
    "service": (re.compile(SERVICE_PATTERN), "1-63 characters of a-z, 0-9 and '-'"),
    "version": (re.compile(VERSION_PATTERN), "1-32 characters of a-z, 0-9, '.', '_' and '-'"),
    "instance_id": (
        re.compile(INSTANCE_PATTERN),
        "1-128 characters of a-z, 0-9, '.', '_' and '-'",
    ),
}

_STATUS = {"type": "string", "enum": ["UP", "DOWN"]}

REGISTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "host", "port"],
    "properties": {
        "version": {"type": "string", "pattern": VERSION_PATTERN},
        "host": {"type": "string", "minLength": 1, "maxLength": 253},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "weight": {"type": "integer", "minimum": 1, "maximum": MAX_WEIGHT},
        "zone": {"type": ["string", "null"], "pattern": r"^[a-z0-9-]{1,64}$"},
        "metadata": {
            "type": "object",
            "maxProperties": MAX_METADATA_ENTRIES,
            "propertyNames": {"pattern": rf"^[A-Za-z0-9._/-]{{1,{MAX_METADATA_KEY}}}$"},
            "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_VALUE},
        },
        "lease_seconds": {
            "type": "integer",
            "minimum": MIN_LEASE_SECONDS,
            "maximum": MAX_LEASE_SECONDS,
        },
        "status": _STATUS,
    },
}

HEARTBEAT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"status": _STATUS},
}


def check_name(kind: str, value: str) -> str:
    pattern, rule = _NAMES[kind]
    if not pattern.fullmatch(value):
        raise InvalidName(f"{kind} {value[:80]!r} is not valid: use {rule}")
    return value


# A string, or an unterminated one up to the end: the optional closing quote keeps the scan
# linear (a required one makes each stray quote rescan the rest of the body).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")


def parse_json_body(raw: bytes | None, limit: int = MAX_REGISTRY_BODY) -> Any:
    """Decode a JSON body, refusing oversized, too deeply nested or malformed input with a
    clear message. The text must be UTF-8, as RFC 8259 asks of JSON between systems."""
    if not raw:
        return {}
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body is {len(raw)} bytes; the limit is {limit}")
    try:
        text = raw.decode("utf-8-sig")
        _check_depth(text)
        return json.loads(text)
    except ValueError as exc:  # bad UTF-8, bad JSON, or a number past int()'s digit limit
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None


def _check_depth(text: str) -> None:
    """Count the brackets outside strings, so a string full of them costs nothing."""
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text))
    if len(brackets) <= MAX_JSON_DEPTH:
        return  # cannot nest deeper than it has brackets
    depth = 0
    for bracket in brackets:
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            raise InvalidRequest(
                f"request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"
            )


@cache
def _compiled(name: str) -> Callable[[Any], Any]:
    schema = {"register": REGISTER_SCHEMA, "heartbeat": HEARTBEAT_SCHEMA}[name]
    return cast(Callable[[Any], Any], fastjsonschema.compile(schema))


# What a pattern means, in words, for the fields whose rule is a regular expression.
_PATTERN_RULES = {
    "version": _NAMES["version"][1],
    "zone": "1-64 characters of a-z, 0-9 and '-'",
    "metadata": f"keys of 1-{MAX_METADATA_KEY} characters of A-Z, a-z, 0-9, '.', '_', '/', '-'",
}


def _check_text(body: Any) -> None:
    """Every string, keys included, must be Unicode text. A lone surrogate ("\\ud800") is
    valid JSON syntax but not I-JSON (RFC 7493), and DynamoDB refuses to store it: refused
    here, before any message quotes it. Re-encoding is the cheapest walk over every string."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(
            "invalid body: a string holds a lone surrogate (\\ud800-\\udfff), "
            "which is not a Unicode character"
        ) from None


def _check_schema(body: Any, schema_name: str) -> dict[str, Any]:
    _check_text(body)
    try:
        _compiled(schema_name)(body)
    except fastjsonschema.JsonSchemaValueException as exc:
        name = exc.name or "data"
        field = name.removeprefix("data").lstrip(".") or "body"
        rule = _PATTERN_RULES.get(field.split(".", 1)[0])
        if exc.rule in ("pattern", "propertyNames") and rule:
            raise InvalidRequest(f"invalid body: {field} is not valid: use {rule}") from None
        detail = exc.message.removeprefix(name).strip()
        raise InvalidRequest(f"invalid body: {field} {detail}") from None
    return cast(dict[str, Any], body)


def parse_registration(
    service: str, instance_id: str, body: Any, policy: HostPolicy
) -> Registration:
    check_name("service", service)
    check_name("instance_id", instance_id)
    fields = _check_schema(body, "register")
    registration = Registration(
        service=service,
        instance_id=instance_id,
        version=fields["version"],
        host=normalize_host(fields["host"], policy),
        port=int(fields["port"]),
        weight=int(fields.get("weight", DEFAULT_WEIGHT)),
        zone=fields.get("zone"),
        metadata=dict(fields.get("metadata", {})),
        lease_seconds=int(fields.get("lease_seconds", DEFAULT_LEASE_SECONDS)),
        status=fields.get("status", "UP"),
    )
    size = instance_json_size(registration)
    if size > MAX_INSTANCE_JSON:
        raise PayloadTooLarge(
            f"the instance is {size} bytes as JSON (non-ASCII escaped); the limit is "
            f"{MAX_INSTANCE_JSON}: shorten its metadata"
        )
    return registration


def instance_json_size(registration: Registration) -> int:
    """Bytes the registration's own fields take in an instance list."""
    return len(json.dumps(dataclasses.asdict(registration), separators=(",", ":")))


def parse_heartbeat(body: Any) -> Status | None:
    fields = _check_schema(body, "heartbeat")
    return cast("Status | None", fields.get("status"))
