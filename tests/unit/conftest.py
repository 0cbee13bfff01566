"""Unit tier: pure functions over plain data, in-memory fakes, no I/O.

Instances are made as the routing tier makes them (``chalicelib.instances.Instance`` is the
routing package's).
"""

from __future__ import annotations

from tests.routing.conftest import NOW, MakeInstance, make_instance, now

__all__ = ["NOW", "MakeInstance", "make_instance", "now"]
