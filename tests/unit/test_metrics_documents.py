"""Each request's EMF documents, printed without Powertools' provider: the same documents
Powertools' Metrics prints, under the same switches."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from chalicelib import observability
from chalicelib.observability import (
    SERVICE,
    RouteRecord,
    metrics,
    metrics_disabled,
    record_request,
    record_route,
)
from lambdamesh_routing.emf import NAMESPACE

ROUTED = "/api/v1/{service}/{version}/{proxy+}"


@pytest.fixture(autouse=True)
def metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setattr(observability, "_last_sample", {})
    metrics.clear_metrics()


def powertools(dimensions: dict[str, str], figures: list[tuple[str, float]]) -> dict[str, Any]:
    """What Powertools' Metrics serialises for these figures (the unit is Milliseconds for
    UpstreamLatency, else Count)."""
    provider = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    for name, value in dimensions.items():
        provider.add_dimension(name=name, value=value)
    for name, figure in figures:
        unit = MetricUnit.Milliseconds if name == "UpstreamLatency" else MetricUnit.Count
        provider.add_metric(name=name, unit=unit, value=figure)
    provider.set_timestamp(int(time.time() * 1000))
    return dict(provider.serialize_metric_set())


def printed(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def same_document(found: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal but for the time they were made, their keys in the same order."""
    found["_aws"]["Timestamp"] = expected["_aws"]["Timestamp"]
    assert found == expected
    assert json.dumps(found) == json.dumps(expected)


@pytest.mark.parametrize(
    ("record", "figures"),
    [
        (
            RouteRecord("orders", "v1", status=200, upstream_ms=12.345),
            [("GatewayRequests", 1), ("Status2xx", 1), ("UpstreamLatency", 12.345)],
        ),
        (
            RouteRecord("orders", "unknown", status=503, retries=2, ejections=1, panic=True),
            [
                ("GatewayRequests", 1),
                ("Status5xx", 1),
                ("Retries", 2),
                ("Ejections", 1),
                ("PanicEntries", 1),
            ],
        ),
    ],
)
def test_a_routed_requests_document_is_the_one_powertools_would_print(
    capsys: pytest.CaptureFixture[str], record: RouteRecord, figures: list[tuple[str, float]]
) -> None:
    record_route(record)

    [document] = printed(capsys)
    same_document(document, powertools({"upstream": "orders", "version": record.version}, figures))


@pytest.mark.parametrize(
    ("status", "body", "figures"),
    [
        (200, b"{}", [("Requests", 1)]),
        (
            404,
            {"error": {"code": "service_not_found"}},
            [("Requests", 1), ("Error.service_not_found", 1)],
        ),
    ],
)
def test_a_requests_count_is_the_document_powertools_would_print(
    capsys: pytest.CaptureFixture[str],
    status: int,
    body: object,
    figures: list[tuple[str, float]],
) -> None:
    record_request("rid", "GET", ROUTED, status, body, time.perf_counter())

    [document] = printed(capsys)
    same_document(document, powertools({}, figures))


def test_a_sampled_write_unit_figure_still_goes_out_with_the_requests_count(
    capsys: pytest.CaptureFixture[str],
) -> None:
    observability.record_write_units("RegisterWriteUnits", 1.0, now=100.0)

    record_request("rid", "PUT", "/registry/services/{service}/instances/{instance_id}", 201, {}, 0)

    [document] = printed(capsys)
    same_document(document, powertools({}, [("RegisterWriteUnits", 1.0), ("Requests", 1)]))
    assert not metrics.metric_set


@pytest.mark.parametrize("disabled", [None, "true", "false", "1", "0", "yes", "off", "TRUE"])
@pytest.mark.parametrize("dev", [None, "true", "false"])
def test_metrics_are_switched_off_exactly_when_powertools_would_switch_its_own_off(
    monkeypatch: pytest.MonkeyPatch, disabled: str | None, dev: str | None
) -> None:
    for name, value in (("POWERTOOLS_METRICS_DISABLED", disabled), ("POWERTOOLS_DEV", dev)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)

    assert metrics_disabled() == is_metrics_disabled()


def test_nothing_is_printed_while_metrics_are_off(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")

    record_route(RouteRecord("orders", "v1", status=200, upstream_ms=1.0))
    record_request("rid", "GET", ROUTED, 404, {"error": {"code": "service_not_found"}}, 0)

    assert capsys.readouterr().out == ""


def test_a_request_builds_no_powertools_provider_for_its_documents(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Building and validating a provider per request cost more than the rest of the
    request's bookkeeping; the documents are written directly."""

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("a Powertools provider was used for a request's documents")

    monkeypatch.setattr(observability, "EphemeralMetrics", refused)
    monkeypatch.setattr(metrics, "add_metric", refused)
    monkeypatch.setattr(metrics, "flush_metrics", refused)

    record_route(RouteRecord("orders", "v1", status=200, upstream_ms=1.0))
    record_request("rid", "GET", ROUTED, 404, {"error": {"code": "service_not_found"}}, 0)

    assert len(printed(capsys)) == 2
