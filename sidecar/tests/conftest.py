"""Makes ``lambdamesh_sidecar``, the ``lambdamesh_routing`` it imports and the shared fakes
importable without installing anything."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
for _path in (_TESTS.parent.parent, _TESTS.parent, _TESTS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from inbound_kit import start  # noqa: E402, F401 - the inbound ports fixture
from sidecar_testkit import FakeApp, FakeRegistryServer  # noqa: E402


@pytest.fixture
def registry_server() -> Iterator[FakeRegistryServer]:
    server = FakeRegistryServer()
    yield server
    server.close()


@pytest.fixture
def app() -> Iterator[FakeApp]:
    listener = FakeApp()
    yield listener
    listener.close()
