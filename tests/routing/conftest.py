"""Routing tier: the shared routing decisions, over plain data, with nothing from the gateway or
the sidecar; no I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lambdamesh_routing.instances import Instance

# Wall-clock seconds the instances of these tests are "now" at; leases run out after it.
NOW = 1_700_000_000.0

MakeInstance = Callable[..., Instance]


def _instance(instance_id: str = "i-1", **overrides: Any) -> Instance:
    fields: dict[str, Any] = {
        "service": "orders",
        "instance_id": instance_id,
        "version": "v1",
        "host": f"{instance_id}.orders.internal",
        "port": 8080,
        "weight": 100,
        "zone": None,
        "metadata": {},
        "status": "UP",
        "lease_seconds": 30,
        "expires_at": NOW + 30,
        "registered_at": NOW - 60,
        "updated_at": NOW - 1,
    }
    fields.update(overrides)
    return Instance(**fields)


@pytest.fixture
def make_instance() -> MakeInstance:
    """Build a live, routable instance of orders v1; any field may be overridden."""
    return _instance


@pytest.fixture
def now() -> float:
    """The wall-clock time at which instances from ``make_instance`` are live."""
    return NOW
