"""The names a route carries: service, version, instance id. One rule for the registry, the
gateway and the sidecar's outbound port."""

from __future__ import annotations

import re

from lambdamesh_routing.errors import InvalidName

SERVICE_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
VERSION_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,30}[a-z0-9])?$"
INSTANCE_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$"

_NAMES = {
    "service": (re.compile(SERVICE_PATTERN), "1-63 characters of a-z, 0-9 and '-'"),
    "version": (re.compile(VERSION_PATTERN), "1-32 characters of a-z, 0-9, '.', '_' and '-'"),
    "instance_id": (
        re.compile(INSTANCE_PATTERN),
        "1-128 characters of a-z, 0-9, '.', '_' and '-'",
    ),
}


def check_name(kind: str, value: str) -> str:
    pattern, rule = _NAMES[kind]
    if not pattern.fullmatch(value):
        raise InvalidName(f"{kind} {value[:80]!r} is not valid: use {rule}")
    return value


def rule(kind: str) -> str:
    """The rule for ``kind``, in words."""
    return _NAMES[kind][1]
