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
from typing import Any, NamedTuple, cast

import fastjsonschema

from chalicelib.errors import InvalidRequest, PayloadTooLarge
from chalicelib.figures import Figures, from_wire
from chalicelib.instances import STATUSES, Registration, Status
from lambdamesh_routing.forwarding import METHODS
from lambdamesh_routing.hosts import AddressPolicy, normalize_host
from lambdamesh_routing.intentions import (
    FROM_PATTERN,
    FROM_WORDS,
    MAX_PATH_PREFIX,
    MAX_RULES,
    PATH_PREFIX_PATTERN,
    PATH_PREFIX_WORDS,
    prefix_problem,
)
from lambdamesh_routing.limits import (
    MAX_LEASE_SECONDS,
    MAX_WEIGHT,
    MIN_LEASE_SECONDS,
    MIN_WEIGHT,
)
from lambdamesh_routing.names import (
    MAX_METADATA_ENTRIES,
    MAX_METADATA_KEY,
    MAX_METADATA_VALUE,
    MAX_TASK_ARN,
    METADATA_KEY_PATTERN,
    TASK_ARN_PATTERN,
    VERSION_PATTERN,
    ZONE_PATTERN,
    check_name,
    rule,
)
from lambdamesh_routing.policy import (
    FAILURE_STATUSES,
    INTENTION_ACTIONS,
    MTLS_MODES,
    STRATEGIES,
    Policy,
    from_json,
)

MAX_REGISTRY_BODY = 16 * 1024
# Arrays and objects inside one another; a registration needs two. Checked before parsing,
# since Python's parser recurses once per level and thousands of levels fit in the body limit.
MAX_JSON_DEPTH = 32
DEFAULT_LEASE_SECONDS = 30
DEFAULT_WEIGHT = 100
# An instance as the registry lists it: compact JSON with non-ASCII escaped, as the answer is
# written. The metadata limits alone allow about 18 KB, and a UTF-8 body of 16 KiB can list
# three times larger once escaped; this bound keeps config.MAX_INSTANCES_LIMIT instances of a
# service within one Lambda answer. DynamoDB stores the same text as UTF-8, never longer.
MAX_INSTANCE_JSON = 4 * 1024

_STATUS = {"type": "string", "enum": list(STATUSES)}

REGISTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "host", "port"],
    "properties": {
        "version": {"type": "string", "pattern": VERSION_PATTERN},
        "host": {"type": "string", "minLength": 1, "maxLength": 253},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "weight": {"type": "integer", "minimum": MIN_WEIGHT, "maximum": MAX_WEIGHT},
        "zone": {"type": ["string", "null"], "pattern": ZONE_PATTERN},
        "metadata": {
            "type": "object",
            "maxProperties": MAX_METADATA_ENTRIES,
            "propertyNames": {"pattern": METADATA_KEY_PATTERN},
            "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_VALUE},
        },
        "lease_seconds": {
            "type": "integer",
            "minimum": MIN_LEASE_SECONDS,
            "maximum": MAX_LEASE_SECONDS,
        },
        "status": _STATUS,
        "task_arn": {"type": "string", "maxLength": MAX_TASK_ARN, "pattern": TASK_ARN_PATTERN},
        "tls": {"type": "boolean"},
    },
}

# What a sidecar counted of the calls through its ports since its previous heartbeat
# (``chalicelib.figures``). A window is at most an hour; a percentile at most 15 minutes.
MAX_FIGURES_SECONDS = 3600
MAX_FIGURES_REQUESTS = 1_000_000_000
MAX_FIGURES_MS = 900_000


def _percentile(share: str) -> dict[str, Any]:
    return {
        "type": ["number", "null"],
        "minimum": 0,
        "maximum": MAX_FIGURES_MS,
        "description": f"the {share} of the calls' durations, ms; null exactly when no call",
    }


def _calls(port: str) -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0, "maximum": MAX_FIGURES_REQUESTS}
    return {
        "type": ["object", "null"],
        "description": f"the calls through the sidecar's {port} port; null or absent: none "
        "reported",
        "additionalProperties": False,
        "required": ["requests", "errors", "p50_ms", "p99_ms"],
        "properties": {
            "requests": count,
            "errors": {
                **count,
                "description": "failed calls (a 5xx, or no answer); at most requests",
            },
            "p50_ms": _percentile("median"),
            "p99_ms": _percentile("99th percentile"),
        },
    }


FIGURES_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "what the sidecar counted since its previous heartbeat; the registry keeps "
    "the last ones; null or absent: the stored ones stay",
    "additionalProperties": False,
    "required": ["seconds"],
    "properties": {
        "seconds": {
            "type": "number",
            "minimum": 0,
            "maximum": MAX_FIGURES_SECONDS,
            "description": "the window the figures cover",
        },
        "in": _calls("inbound"),
        "out": _calls("outbound"),
    },
}

HEARTBEAT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"status": _STATUS, "figures": FIGURES_SCHEMA},
}


# A routing policy (chalicelib/policy.py). API Gateway's integration limit is 29 s.
MAX_POLICY_TIMEOUT = 28.0
MAX_ALIASES = 16
MAX_SPLIT_VERSIONS = 16
MAX_MATCH_RULES = 16
MAX_POLICY_JSON = 8 * 1024
MAX_ATTEMPTS_LIMIT = 5
# An HTTP field name (RFC 9110 token), at most 64 characters. "$" is written \x24: the
# schema compiler rewrites a bare "$" as an end anchor, even inside a character class.
HEADER_NAME_PATTERN = r"^[!#\x24%&'*+.^_`|~0-9A-Za-z-]{1,64}$"
COOKIE_NAME_PATTERN = HEADER_NAME_PATTERN
_SECONDS = {"type": ["number", "null"], "minimum": 0.1, "maximum": MAX_POLICY_TIMEOUT}


def _object(properties: dict[str, Any], **rest: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties, **rest}


# Who may call a service, and how (lambdamesh_routing/intentions.py): rules tried in order.
_INTENTIONS = _object(
    {
        "default": {"enum": [*INTENTION_ACTIONS, None]},
        "rules": {
            "type": "array",
            "maxItems": MAX_RULES,
            "items": _object(
                {
                    "from": {"type": "string", "pattern": FROM_PATTERN},
                    "action": {"enum": list(INTENTION_ACTIONS)},
                    "methods": {
                        "type": "array",
                        "minItems": 1,
                        "uniqueItems": True,
                        "items": {"enum": list(METHODS)},
                    },
                    "path_prefix": {
                        "type": "string",
                        "maxLength": MAX_PATH_PREFIX,
                        "pattern": PATH_PREFIX_PATTERN,
                    },
                },
                required=["from", "action"],
            ),
        },
    }
)


POLICY_SCHEMA: dict[str, Any] = _object(
    {
        "aliases": {
            "type": "object",
            "maxProperties": MAX_ALIASES,
            "propertyNames": {"pattern": VERSION_PATTERN},
            "additionalProperties": _object(
                {
                    "split": {
                        "type": "object",
                        "minProperties": 1,
                        "maxProperties": MAX_SPLIT_VERSIONS,
                        "propertyNames": {"pattern": VERSION_PATTERN},
                        "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 1000},
                    },
                    "match": {
                        "type": "array",
                        "maxItems": MAX_MATCH_RULES,
                        "items": _object(
                            {
                                "header": {"type": "string", "pattern": HEADER_NAME_PATTERN},
                                "value": {"type": "string", "maxLength": 256},
                                "version": {"type": "string", "pattern": VERSION_PATTERN},
                            },
                            required=["header", "value", "version"],
                        ),
                    },
                },
                required=["split"],
            ),
        },
        "strategy": {"enum": list(STRATEGIES)},
        "hash_on": {
            "oneOf": [
                _object(
                    {"header": {"type": "string", "pattern": HEADER_NAME_PATTERN}},
                    required=["header"],
                ),
                _object(
                    {"cookie": {"type": "string", "pattern": COOKIE_NAME_PATTERN}},
                    required=["cookie"],
                ),
                _object({"client_ip": {"const": True}}, required=["client_ip"]),
                {"type": "null"},
            ]
        },
        "timeouts": _object(
            {
                "per_try_seconds": _SECONDS,
                "total_seconds": _SECONDS,
            }
        ),
        "retries": _object(
            {
                "max_attempts": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": MAX_ATTEMPTS_LIMIT,
                },
                "budget_percent": {"type": "number", "minimum": 0, "maximum": 100},
                "backoff_base_ms": {"type": "integer", "minimum": 0, "maximum": 1000},
                "backoff_max_ms": {"type": "integer", "minimum": 0, "maximum": 10_000},
            }
        ),
        "outlier_detection": _object(
            {
                "consecutive_failures": {"type": "integer", "minimum": 1, "maximum": 1000},
                "base_ejection_seconds": {"type": "number", "minimum": 1, "maximum": 3600},
                "max_ejection_seconds": {"type": "number", "minimum": 1, "maximum": 86_400},
                "max_ejected_percent": {"type": "integer", "minimum": 0, "maximum": 100},
                "failure_statuses": {"enum": list(FAILURE_STATUSES)},
            }
        ),
        "panic_threshold_percent": {"type": "integer", "minimum": 0, "maximum": 100},
        "rewrite_redirects": {"type": "boolean"},
        "mtls": {"enum": [*MTLS_MODES, None]},
        "intentions": {**_INTENTIONS, "type": ["object", "null"]},
    }
)


# A string, or an unterminated one up to the end: the optional closing quote keeps the scan
# linear (a required one makes each stray quote rescan the rest of the body).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
# What RFC 8259 counts as whitespace between tokens; str.strip() alone would take more.
_JSON_WHITESPACE = " \t\n\r"


def parse_json_body(
    raw: bytes | None, limit: int = MAX_REGISTRY_BODY, *, required: str | None = None
) -> Any:
    """Decode a JSON body, refusing oversized, too deeply nested or malformed input with a
    clear message. The text must be UTF-8, as RFC 8259 asks of JSON between systems.

    An absent body reads as ``{}``. Where the document itself matters (a policy replaces the
    stored one whole, so nothing read as ``{}`` would wipe it), ``required`` says what to send,
    and an absent body, or one of nothing but JSON whitespace, is refused.
    """
    if not raw and required is None:
        return {}
    raw = raw or b""
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body is {len(raw)} bytes; the limit is {limit}")
    try:
        text = raw.decode("utf-8-sig")
        if required is not None and not text.strip(_JSON_WHITESPACE):
            raise InvalidRequest(f"request body is empty: send {required}")
        _check_depth(text)
        return json.loads(text, parse_constant=_not_a_number, object_pairs_hook=_unique_keys)
    except ValueError as exc:  # bad UTF-8, bad JSON, or a number past int()'s digit limit
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object naming a key twice means two things to two readers (Python keeps the last,
    others the first): refused, rather than silently one of them."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key {key[:64]!r} appears twice in one object")
        found[key] = value
    return found


def _not_a_number(name: str) -> None:
    """Python's parser takes NaN and Infinity, which JSON does not have, and which every
    range check lets through (each comparison with NaN is false)."""
    raise ValueError(f"{name} is not a JSON number")


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


# Every schema compiled so far, by name: once per cold start each.
_COMPILED: dict[str, Callable[[Any], Any]] = {}


def _compiled(name: str, schema: dict[str, Any] | None = None) -> Callable[[Any], Any]:
    found = _COMPILED.get(name)
    if found is None:
        given = (
            schema
            or {
                "register": REGISTER_SCHEMA,
                "heartbeat": HEARTBEAT_SCHEMA,
                "policy": POLICY_SCHEMA,
            }[name]
        )
        found = _COMPILED[name] = cast(Callable[[Any], Any], fastjsonschema.compile(given))
    return found


# What a pattern means, in words, for the fields whose rule is a regular expression: by the
# field's path without its indices, else by its top-level field.
_PATTERN_RULES = {
    "intentions.rules.from": FROM_WORDS,
    "intentions.rules.path_prefix": PATH_PREFIX_WORDS,
    "version": rule("version"),
    "aliases": f"alias and version names of {rule('version')}; header names of 1-64 "
    "token characters",
    "hash_on": "names of 1-64 token characters (RFC 9110)",
    "zone": "1-64 characters of a-z, 0-9 and '-'",
    "metadata": f"keys of 1-{MAX_METADATA_KEY} characters of A-Z, a-z, 0-9, '.', '_', '/', '-'",
    "task_arn": "an ECS task ARN, arn:aws:ecs:<region>:<account>:task/<cluster>/<task id>",
}


# An array index in a field's path ("intentions.rules[3].from").
_INDEX = re.compile(r"\[[0-9]+\]")


# What a choice between shapes means, in words.
_ONE_OF_RULES = {
    "hash_on": 'must be exactly one of {"header": NAME}, {"cookie": NAME} or '
    '{"client_ip": true}, names of 1-64 token characters',
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


def check_document(body: Any, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """``body`` checked against ``schema`` (compiled once, under ``name``), with the same
    messages as the registry's own bodies."""
    return _check_schema(body, name, schema)


def _check_schema(
    body: Any, schema_name: str, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    _check_text(body)
    try:
        _compiled(schema_name, schema)(body)
    except fastjsonschema.JsonSchemaValueException as exc:
        name = exc.name or "data"
        field = name.removeprefix("data").lstrip(".") or "body"
        rule = _PATTERN_RULES.get(_INDEX.sub("", field)) or _PATTERN_RULES.get(
            field.split(".", 1)[0]
        )
        if exc.rule in ("pattern", "propertyNames") and rule:
            raise InvalidRequest(f"invalid body: {field} is not valid: use {rule}") from None
        if exc.rule == "oneOf" and field in _ONE_OF_RULES:
            raise InvalidRequest(f"invalid body: {field} {_ONE_OF_RULES[field]}") from None
        detail = exc.message.removeprefix(name).strip()
        raise InvalidRequest(f"invalid body: {field} {detail}") from None
    return cast(dict[str, Any], body)


def parse_registration(
    service: str, instance_id: str, body: Any, addresses: AddressPolicy
) -> Registration:
    check_name("service", service)
    check_name("instance_id", instance_id)
    fields = _check_schema(body, "register")
    registration = Registration(
        service=service,
        instance_id=instance_id,
        version=fields["version"],
        host=normalize_host(fields["host"], addresses),
        port=int(fields["port"]),
        weight=int(fields.get("weight", DEFAULT_WEIGHT)),
        zone=fields.get("zone"),
        metadata=dict(fields.get("metadata", {})),
        lease_seconds=int(fields.get("lease_seconds", DEFAULT_LEASE_SECONDS)),
        status=fields.get("status", "UP"),
        task_arn=fields.get("task_arn"),
        tls=fields.get("tls", False),
    )
    size = instance_json_size(registration)
    if size > MAX_INSTANCE_JSON:
        raise PayloadTooLarge(
            f"the instance is {size} bytes as JSON (non-ASCII escaped); the limit is "
            f"{MAX_INSTANCE_JSON}: shorten its metadata"
        )
    return registration


def instance_json_size(registration: Registration) -> int:
    """Bytes the registration's own fields take in an instance list (a Eureka client's record
    is not listed there)."""
    fields = dataclasses.asdict(registration)
    del fields["eureka"], fields["eureka_dirty"]
    return len(json.dumps(fields, separators=(",", ":")))


class Heartbeat(NamedTuple):
    """A checked heartbeat: the status to set (None: unchanged) and the figures it carries
    (None: the stored ones stay)."""

    status: Status | None
    figures: Figures | None


def parse_heartbeat(body: Any, received_at: float) -> Heartbeat:
    """The heartbeat's body, its figures stamped ``received_at`` (the registry's clock)."""
    fields = _check_schema(body, "heartbeat")
    figures = fields.get("figures")
    if figures is not None:
        for problem in _figures_problems(figures):
            raise InvalidRequest(f"invalid body: {problem}")
    return Heartbeat(
        status=cast("Status | None", fields.get("status")),
        figures=None if figures is None else from_wire(figures, received_at),
    )


def _figures_problems(figures: dict[str, Any]) -> list[str]:
    return [
        problem
        for port in ("in", "out")
        if figures.get(port) is not None
        for problem in _calls_problems(f"figures.{port}", figures[port])
    ]


def _calls_problems(name: str, calls: dict[str, Any]) -> list[str]:
    """What the schema cannot say of a port's figures: its errors are some of its requests,
    and its percentiles are given exactly when it counted calls, the median not above the
    99th."""
    requests, errors = calls["requests"], calls["errors"]
    given = [calls["p50_ms"] is not None, calls["p99_ms"] is not None]
    problems = []
    if errors > requests:
        problems.append(f"{name}.errors ({errors}) is more than its requests ({requests})")
    if requests and not all(given):
        problems.append(f"{name} counts {requests} requests: give p50_ms and p99_ms")
    elif not requests and any(given):
        problems.append(f"{name} counts no request: p50_ms and p99_ms must be null")
    elif requests and calls["p50_ms"] > calls["p99_ms"]:
        problems.append(f"{name}.p50_ms is above its p99_ms")
    return problems


def parse_policy(service: str, body: Any) -> Policy:
    """A routing policy document, checked whole: its shape and ranges by the schema, then
    what a schema cannot say. Refused before anything is stored."""
    check_name("service", service)
    fields = _check_schema(body, "policy")
    if len(json.dumps(fields, separators=(",", ":"))) > MAX_POLICY_JSON:
        raise PayloadTooLarge(f"the policy is larger than {MAX_POLICY_JSON} bytes as JSON")
    policy = from_json(fields)
    for problem in _policy_problems(fields, policy):
        raise InvalidRequest(f"invalid policy: {problem}")
    return policy


def _policy_problems(doc: dict[str, Any], policy: Policy) -> list[str]:
    problems = []
    aliases = doc.get("aliases") or {}
    for name, alias in aliases.items():
        if sum(alias["split"].values()) <= 0:
            problems.append(f"alias {name!r} splits nothing: give a version a weight above 0")
        targets = [*alias["split"], *(rule["version"] for rule in alias.get("match") or ())]
        chained = sorted({t for t in targets if t in aliases})
        if chained:
            problems.append(f"alias {name!r} names alias {chained[0]!r}: name versions only")
    hashing = doc.get("strategy") == "consistent_hash"
    if hashing and not doc.get("hash_on"):
        problems.append("strategy consistent_hash needs hash_on (a header, a cookie or client_ip)")
    if doc.get("hash_on") and not hashing:
        problems.append("hash_on applies to strategy consistent_hash only")
    per_try, total = policy.timeouts.per_try_seconds, policy.timeouts.total_seconds
    if per_try is not None and total is not None and per_try > total:
        problems.append("timeouts.per_try_seconds is longer than timeouts.total_seconds")
    if policy.retries.backoff_base_ms > policy.retries.backoff_max_ms:
        problems.append("retries.backoff_base_ms is longer than retries.backoff_max_ms")
    ejection = policy.outlier_detection
    if ejection.base_ejection_seconds > ejection.max_ejection_seconds:
        problems.append(
            "outlier_detection.base_ejection_seconds is longer than max_ejection_seconds"
        )
    return problems + _intention_problems(policy)


def _intention_problems(policy: Policy) -> list[str]:
    """What the schema cannot say of intentions: a path prefix must be in the form request
    paths are compared in, or it would never match one."""
    rules = () if policy.intentions is None else policy.intentions.rules
    found = ((i, prefix_problem(r.path_prefix)) for i, r in enumerate(rules) if r.path_prefix)
    return [
        f"intentions.rules[{index}].path_prefix is not valid: {problem}"
        for index, problem in found
        if problem
    ]
