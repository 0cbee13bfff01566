"""The deployment tier: what `chalice package` builds and what `infra/` deploys, checked offline.

Templates go to moto's CloudFormation, a real HTTP endpoint on loopback; linters (cfn-lint,
checkov, hadolint) run as the tools they are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server of its own for this tier (every service moto has, on one port)."""
    from lambdamesh.devserver import EmbeddedDynamoDB

    server = EmbeddedDynamoDB()
    url = server.start()
    yield url
    server.stop()


@pytest.fixture(scope="session")
def checkov() -> Path:
    """checkov lives in a venv of its own (`make install` builds it): its pins clash with ours."""
    path = Path(os.environ.get("LAMBDAMESH_CHECKOV") or ROOT / ".venv-tools" / "bin" / "checkov")
    if not path.is_file():
        pytest.fail(f"checkov not found at {path}: run `make install` (it builds .venv-tools)")
    return path
