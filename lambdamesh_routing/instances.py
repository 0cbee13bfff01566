"""An instance as routing sees it, and a service's routing view: plain data.

The gateway builds these from DynamoDB; the sidecar's outbound port from the registry's
routing view (``GET /registry/services/{service}/routing``). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lambdamesh_routing.policy import Policy

# DOWN: the app failed its readiness check. DRAINING: the task is stopping; it finishes what
# it has but takes nothing new. Only UP instances are routed to.
Status = Literal["UP", "DOWN", "DRAINING"]
STATUSES: tuple[Status, ...] = ("UP", "DOWN", "DRAINING")


@dataclass(frozen=True)
class Instance:
    service: str
    instance_id: str
    version: str
    host: str
    port: int
    weight: int
    zone: str | None
    metadata: dict[str, str]
    status: Status
    lease_seconds: int
    expires_at: float
    registered_at: float
    updated_at: float
    # Put out of rotation by an operator (``lambdamesh drain``): its heartbeats cannot undo it.
    # None where it was not read (the answers to a registration or a heartbeat, which read
    # nothing beyond the instance's own item).
    drained: bool | None = None
    # The ECS task that registered it (its sidecar read it from the task metadata endpoint):
    # ECS's stop event for that task removes it. None for instances registered outside ECS.
    task_arn: str | None = None

    def is_live(self, now: float) -> bool:
        """Liveness is decided from the stored expiry, never from whether TTL has deleted it."""
        return self.expires_at > now

    def is_routable(self, now: float) -> bool:
        return self.status == "UP" and not self.drained and self.is_live(now)

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "service": self.service,
            "instance_id": self.instance_id,
            "version": self.version,
            "host": self.host,
            "port": self.port,
            "weight": self.weight,
            "zone": self.zone,
            "metadata": dict(self.metadata),
            "status": self.status,
            **({} if self.drained is None else {"drained": self.drained}),
            "lease_seconds": self.lease_seconds,
            "expires_at": round(self.expires_at, 3),
            "expires_in": round(max(0.0, self.expires_at - now), 3),
            "live": self.is_live(now),
            "registered_at": round(self.registered_at, 3),
            "updated_at": round(self.updated_at, 3),
            **({} if self.task_arn is None else {"task_arn": self.task_arn}),
        }


@dataclass(frozen=True)
class ServiceView:
    """What the gateway reads of a service in one Query: its instances (marked when an
    operator drained them) and its policy."""

    instances: tuple[Instance, ...]
    policy: Policy | None = None
    # Every drained id, departed instances' included.
    drained: frozenset[str] = frozenset()
