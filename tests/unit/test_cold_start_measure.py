"""What a cold start pays for, and what the cold-start bench counts as the project's own.

The bench (``tests/bench/bench_handler.py``) compares ``import app`` with the import of its
dependencies alone; the value types every cold start or every routed request creates are
named tuples, whose classes cost a cold start far less to create than frozen dataclasses.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from chalicelib.console import Arrival
from chalicelib.exposure.checks import Admission, Preflighted
from chalicelib.exposure.document import Exposure, StoredExposure
from chalicelib.exposure.keys import ApiKey
from chalicelib.gateway import ProxyRequest, ProxyResponse
from chalicelib.instances import StoredPolicy
from chalicelib.route_matching import RouteMatch, RoutePattern
from chalicelib.upstream import UpstreamResponse
from lambdamesh_routing.attempts import Failed
from lambdamesh_routing.outliers import Selection
from lambdamesh_routing.policy import (
    Alias,
    HashOn,
    MatchRule,
    OutlierDetection,
    Policy,
    Retries,
    Timeouts,
)
from lambdamesh_routing.router import Call
from tests.bench.coldstart_probe import own

ROOT = Path(__file__).resolve().parents[2]


def shipped_top_level_names() -> set[str]:
    """What Chalice packages of this repository: app.py, chalicelib/ and vendor/'s entries."""
    vendored = {path.name.removesuffix(".py") for path in (ROOT / "vendor").iterdir()}
    return {"app", "chalicelib", *vendored}


def test_the_cold_start_baseline_leaves_out_every_module_of_the_project() -> None:
    names = shipped_top_level_names()

    assert "lambdamesh_routing" in names
    assert all(own(name) and own(f"{name}.sub") for name in names)
    assert not any(own(name) for name in ("botocore", "chalice", "pynamodb", "jwt", "urllib3"))


@pytest.mark.parametrize(
    "value_type",
    [
        Alias,
        HashOn,
        MatchRule,
        OutlierDetection,
        Policy,
        Retries,
        Timeouts,
        Call,
        Selection,
        Failed,
        ProxyRequest,
        ProxyResponse,
        UpstreamResponse,
        Admission,
        Preflighted,
        Arrival,
        RouteMatch,
        RoutePattern,
        Exposure,
        StoredExposure,
        ApiKey,
        StoredPolicy,
    ],
)
def test_the_value_types_of_a_cold_start_are_named_tuples(value_type: type) -> None:
    assert issubclass(value_type, tuple) and hasattr(value_type, "_fields")
    assert not dataclasses.is_dataclass(value_type)
