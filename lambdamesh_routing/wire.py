"""A service's routing view on the wire: what ``GET /registry/services/{service}/routing``
answers and what the sidecar's outbound port reads back.

It carries what routing decides on and nothing that changes with every heartbeat (no expiry
times): liveness is the registry's word at answering time. So the document, and its ETag,
change only when routing would: an instance joins, leaves, lapses, changes status, weight,
address or ``tls``, is drained, or the policy changes. A sidecar polling with
``If-None-Match`` is answered 304 with no body for as long as nothing changed.

Its ``mesh`` says what the service's inbound ports enforce, the policy's values resolved over
the stage's defaults, so that a sidecar needs no stage settings: ``parse_mesh`` reads it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from lambdamesh_routing.instances import STATUSES, Instance, ServiceView
from lambdamesh_routing.intentions import well_formed
from lambdamesh_routing.policy import (
    FAILURE_STATUSES,
    INTENTION_ACTIONS,
    MTLS_MODES,
    STRATEGIES,
    Policy,
    from_json,
)

_ROUTING_FIELDS = ("instance_id", "version", "host", "port", "weight", "zone", "status", "tls")


class MeshSettings(NamedTuple):
    """What a service's inbound ports enforce: the mutual TLS mode (``MTLS_MODES``) and what
    a call no intention matches gets (``INTENTION_ACTIONS``). The defaults are the stage's
    when it sets none, and a view from a registry that sends none."""

    mtls: str = "permissive"
    intentions_default: str = "allow"


# A stage that sets neither LAMBDAMESH_MTLS_DEFAULT nor LAMBDAMESH_INTENTIONS_DEFAULT.
STAGE_DEFAULTS = MeshSettings()


def resolve_mesh(policy: Policy | None, stage: MeshSettings) -> MeshSettings:
    """The policy's mode and intentions default where it sets them, else the stage's."""
    if policy is None:
        return stage
    intentions = policy.intentions
    own_default = None if intentions is None else intentions.default
    return MeshSettings(
        mtls=policy.mtls or stage.mtls,
        intentions_default=own_default or stage.intentions_default,
    )


def view_document(
    service: str, view: ServiceView, now: float, stage: MeshSettings = STAGE_DEFAULTS
) -> dict[str, Any]:
    """The view as JSON, instances in a stable order so equal views spell the same; ``stage``
    is the stage's mesh defaults, which the policy's values override in ``mesh``."""
    instances = sorted(view.instances, key=lambda i: i.instance_id)
    mesh = resolve_mesh(view.policy, stage)
    return {
        "service": service,
        "instances": [
            {
                **{name: getattr(i, name) for name in _ROUTING_FIELDS},
                "drained": bool(i.drained),
                "live": i.is_live(now),
            }
            for i in instances
        ],
        "policy": None if view.policy is None else view.policy.to_json(),
        "mesh": mesh._asdict(),
    }


def parse_mesh(document: Any) -> MeshSettings:
    """What a routing view says the service's inbound ports enforce; the defaults where it
    says nothing (a registry older than ``mesh``), ``ValueError`` for anything else."""
    if not isinstance(document, dict):
        raise ValueError("not a routing view")
    mesh = document.get("mesh")
    if mesh is None:
        return MeshSettings()
    if not isinstance(mesh, dict):
        raise ValueError("a routing view's mesh must be an object")
    parsed = MeshSettings(**{k: mesh[k] for k in MeshSettings._fields if k in mesh})
    if parsed.mtls not in MTLS_MODES or parsed.intentions_default not in INTENTION_ACTIONS:
        raise ValueError("a routing view's mesh is malformed")
    return parsed


def etag(document: Mapping[str, Any]) -> str:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.blake2b(text.encode(), digest_size=16).hexdigest() + '"'


def parse_view(service: str, document: Any) -> ServiceView:
    """The view a document describes; ``ValueError`` when it is not one (a proxy's page, a
    registry of another version): the caller keeps what it had.

    An instance the registry called live is given an expiry that never comes: the caller
    bounds how long it trusts the whole view instead.
    """
    if not isinstance(document, dict) or document.get("service") != service:
        raise ValueError("not a routing view of this service")
    entries = document.get("instances")
    if not isinstance(entries, list):
        raise ValueError("a routing view needs a list of instances")
    policy = document.get("policy")
    if policy is not None and not isinstance(policy, dict):
        raise ValueError("a routing view's policy must be an object or null")
    try:
        return ServiceView(
            tuple(_instance(service, entry) for entry in entries),
            None if policy is None else _policy(policy),
        )
    except (KeyError, TypeError, AttributeError, OverflowError) as exc:
        raise ValueError(f"malformed routing view: {exc!r}") from None


def _policy(document: Mapping[str, Any]) -> Policy:
    """A policy read back, checked as far as routing relies on it: the registry validated it
    when it was stored, but this one came over the network."""
    policy = from_json(document)
    ejection = policy.outlier_detection
    numbers = [
        *policy.retries._asdict().values(),
        *(v for k, v in ejection._asdict().items() if k != "failure_statuses"),
        policy.timeouts.per_try_seconds,
        policy.timeouts.total_seconds,
        policy.panic_threshold_percent,
    ]
    if (
        policy.strategy not in STRATEGIES
        or ejection.failure_statuses not in FAILURE_STATUSES
        or not all(_is_number(n) for n in numbers if n is not None)
        or policy.mtls not in (None, *MTLS_MODES)
        or (policy.intentions is not None and not well_formed(policy.intentions))
    ):
        raise ValueError("a routing view's policy is malformed")
    for alias in policy.aliases.values():
        if sum(weight for _, weight in alias.split) <= 0 or min(w for _, w in alias.split) < 0:
            raise ValueError("a routing view's alias has no positive weight")
    return policy


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _instance(service: str, entry: Mapping[str, Any]) -> Instance:
    status, tls = entry["status"], entry.get("tls", False)
    port, weight = entry["port"], entry["weight"]
    if status not in STATUSES or not _is_int(port) or not 0 < port < 65536:
        raise ValueError(f"malformed instance in a routing view: {entry.get('instance_id')!r}")
    if not _is_int(weight) or weight < 1 or not isinstance(tls, bool):
        raise ValueError(f"malformed instance in a routing view: {entry.get('instance_id')!r}")
    return Instance(
        service=service,
        instance_id=str(entry["instance_id"]),
        version=str(entry["version"]),
        host=str(entry["host"]),
        port=port,
        weight=weight,
        zone=None if entry.get("zone") is None else str(entry["zone"]),
        metadata={},
        status=status,
        lease_seconds=0,
        expires_at=math.inf if entry["live"] is True else 0.0,
        registered_at=0.0,
        updated_at=0.0,
        drained=entry["drained"] is True,
        tls=tls,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
