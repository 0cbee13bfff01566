"""Eureka's names for an instance, and the registry's.

An app is a service: Eureka upper-cases app names and compares them so, and a service name is
a lower-case DNS label, so ``PYORDERS`` is the service ``pyorders`` and an app name that is not
a DNS label in any case is refused. A Eureka instance id is case-sensitive and may hold any
character (py-eureka-client's default is ``10.0.0.7:pyorders:8080``); the registry's ids are
narrower, so an id that does not fit is turned into one that does, the same way every time: its
characters folded into the registry's, and a digest of the original appended, so two Eureka ids
never share a registry id. The original is kept with the instance and is what Eureka clients see.
"""

from __future__ import annotations

import hashlib
import re

from chalicelib.errors import InvalidRequest
from lambdamesh_routing.names import INSTANCE_ID_RULE, MAX_INSTANCE_ID, SERVICE_RULE, rule

# The longest Eureka id taken: Eureka sets no limit; ids are host:app:port in practice.
MAX_EUREKA_ID = 256
_DIGEST_CHARS = 12
_OUTSIDE = re.compile(r"[^a-z0-9._-]+")


def service_of(app: str) -> str:
    """The service an app name stands for; ``InvalidRequest`` when there can be none.

    Only ASCII is lower-cased: Unicode's case mapping takes some other characters into ASCII
    (the Kelvin sign into ``k``), which would give one service many spellings, each a
    different app to Eureka and to anything that compares names as text."""
    service = app.lower() if app.isascii() else app
    if not SERVICE_RULE.fullmatch(service):
        raise InvalidRequest(
            f"app name {app[:80]!r} cannot be a lambdamesh service: use {rule('service')}, "
            "in any case"
        )
    return service


def app_of(service: str) -> str:
    return service.upper()


def registry_id(eureka_id: str) -> str:
    """The registry's instance id for a Eureka instance id: itself when it already fits."""
    if not eureka_id or len(eureka_id) > MAX_EUREKA_ID or not eureka_id.isprintable():
        raise InvalidRequest(
            f"instance id {eureka_id[:80]!r} must be 1-{MAX_EUREKA_ID} printable characters"
        )
    if INSTANCE_ID_RULE.fullmatch(eureka_id):
        return eureka_id
    digest = hashlib.sha256(eureka_id.encode("utf-8")).hexdigest()[:_DIGEST_CHARS]
    room = MAX_INSTANCE_ID - _DIGEST_CHARS - 1
    folded = _OUTSIDE.sub("-", eureka_id.lower()).strip("._-")[:room].rstrip("._-")
    return f"{folded}-{digest}" if folded else digest
