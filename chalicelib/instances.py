"""The registry's plain data: what callers of the storage and registry modules hold.

``Instance`` and ``ServiceView``, which routing reads too, live in
``lambdamesh_routing.instances``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from lambdamesh_routing.instances import STATUSES, Instance, ServiceView, Status
from lambdamesh_routing.policy import Policy

__all__ = [
    "STATUSES",
    "Change",
    "Instance",
    "RegisterResult",
    "Registration",
    "ServiceView",
    "Status",
    "StoredPolicy",
]


@dataclass(frozen=True)
class Registration:
    """A validated request to register one instance."""

    service: str
    instance_id: str
    version: str
    host: str
    port: int
    weight: int = 100
    zone: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    lease_seconds: int = 30
    status: Status = "UP"
    task_arn: str | None = None
    # A Eureka client's registration beyond these fields (compact JSON), and its
    # lastDirtyTimestamp: ``chalicelib.eureka``.
    eureka: str | None = None
    eureka_dirty: int | None = None


class RegisterResult(NamedTuple):
    instance: Instance
    created: bool


class StoredPolicy(NamedTuple):
    policy: Policy
    updated_at: float


class Change(NamedTuple):
    """A change to an instance (``action``: ADDED, MODIFIED or DELETED), for Eureka's delta.
    A DELETED one carries the instance as it last was, and what a Eureka client registered."""

    at: float
    service: str
    instance_id: str
    action: str
    last: Instance | None = None
    last_eureka: str | None = None
