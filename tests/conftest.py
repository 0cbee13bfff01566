"""Fixtures shared by every tier: an embedded moto DynamoDB server and tokens."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    """moto's server: a real DynamoDB HTTP endpoint on loopback, shared by the session."""
    from lambdamesh.devserver import EmbeddedDynamoDB

    server = EmbeddedDynamoDB()
    url = server.start()
    yield url
    server.stop()


@pytest.fixture(scope="session")
def table_name() -> str:
    """One table per session: creating one costs a third of a second on moto."""
    return f"registry-{uuid.uuid4().hex[:12]}"
