"""The deployment tier: what `chalice package` builds and what `infra/` deploys, checked offline.

Templates go to moto's CloudFormation, a real HTTP endpoint on loopback; linters (cfn-lint,
checkov, hadolint) run as the tools they are.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.deploy.infra_fixtures import REGION

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


@pytest.fixture(scope="session")
def moto_endpoint(dynamodb_endpoint: str) -> str:
    """The session's moto server: it answers every service moto has, not DynamoDB alone."""
    return dynamodb_endpoint


Client = Callable[[str], Any]


@pytest.fixture(scope="module")
def aws(moto_endpoint: str) -> Client:
    """boto3 clients of moto's server, in the region the infra stacks deploy to."""

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=moto_endpoint, region_name=REGION)

    return client


@pytest.fixture(scope="session")
def checkov() -> Path:
    """checkov lives in a venv of its own (`make install` builds it): its pins clash with ours."""
    path = Path(os.environ.get("LAMBDAMESH_CHECKOV") or ROOT / ".venv-tools" / "bin" / "checkov")
    if not path.is_file():
        pytest.fail(f"checkov not found at {path}: run `make install` (it builds .venv-tools)")
    return path
