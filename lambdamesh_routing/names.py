"""The names and identifiers an instance carries: service, version, instance id, zone,
metadata keys, ECS task ARN, and their limits. One rule for the registry, the gateway and the
sidecar, which checks its own settings by it so a typo stops it at start-up rather than as the
registry's 400.

Each pattern is a JSON Schema ``pattern`` string (anchored, as JSON Schema patterns match
anywhere otherwise) and, compiled from the same string, a regular expression to ``fullmatch``.
"""

from __future__ import annotations

import re

from lambdamesh_routing import hosts
from lambdamesh_routing.errors import InvalidName

MAX_INSTANCE_ID = 128
MAX_ZONE = 64
MAX_METADATA_ENTRIES = 32
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
MAX_TASK_ARN = 512

# A service name is one DNS label, as a host name would carry it.
SERVICE_PATTERN = hosts.DNS_LABEL_PATTERN
VERSION_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,30}[a-z0-9])?$"
INSTANCE_PATTERN = rf"^[a-z0-9]([a-z0-9._-]{{0,{MAX_INSTANCE_ID - 2}}}[a-z0-9])?$"
ZONE_PATTERN = rf"^[a-z0-9-]{{1,{MAX_ZONE}}}$"
METADATA_KEY_PATTERN = rf"^[A-Za-z0-9._/-]{{1,{MAX_METADATA_KEY}}}$"
# An ECS task ARN, long form (task/<cluster>/<id>) or the old short form (task/<id>): the
# sidecar reads it from the task metadata endpoint, and ECS's stop event for it removes the
# instance, matched by the same rule.
TASK_ARN_PATTERN = (
    r"^arn:aws[a-z-]{0,16}:ecs:[a-z0-9-]{1,32}:[0-9]{12}:task/([A-Za-z0-9_-]{1,255}/)?"
    r"[A-Za-z0-9-]{1,64}$"
)

SERVICE_RULE = re.compile(SERVICE_PATTERN)
VERSION_RULE = re.compile(VERSION_PATTERN)
INSTANCE_ID_RULE = re.compile(INSTANCE_PATTERN)
ZONE_RULE = re.compile(ZONE_PATTERN)
METADATA_KEY_RULE = re.compile(METADATA_KEY_PATTERN)
TASK_ARN_RULE = re.compile(TASK_ARN_PATTERN)

_NAMES = {
    "service": (SERVICE_RULE, "1-63 characters of a-z, 0-9 and '-'"),
    "version": (VERSION_RULE, "1-32 characters of a-z, 0-9, '.', '_' and '-'"),
    "instance_id": (
        INSTANCE_ID_RULE,
        f"1-{MAX_INSTANCE_ID} characters of a-z, 0-9, '.', '_' and '-'",
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
