"""The registry's plain data: what callers of the storage and registry modules hold.

``Instance`` and ``ServiceView``, which routing reads too, live in
``lambdamesh_routing.instances``; ``Registration``, which only the registry's writes make, in
``chalicelib.registration``, imported when it is first asked for here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from lambdamesh_routing.instances import STATUSES, Instance, ServiceView, Status
from lambdamesh_routing.policy import Policy

if TYPE_CHECKING:
    from chalicelib.registration import Registration

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


def __getattr__(name: str) -> object:
    """``Registration`` on its first use (PEP 562)."""
    if name == "Registration":
        from chalicelib.registration import Registration

        return Registration
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
