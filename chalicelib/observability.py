"""Logger and Metrics, made once here and attached once by the app's middleware.

Each request's own metrics (its count and error code; a routed request's figures by upstream
and version) are printed as one CloudWatch EMF document each by ``print_document``, which
writes what Powertools' Metrics would print for them (a test compares the two) without
building and validating a Powertools provider per request: that took about 20 microseconds
of each routed request's CPU time. They are printed before the invocation returns, never
held back for a later one: Lambda may freeze a container after any invocation and reclaim it
without a signal. The rare figures (DynamoDB's write units, sampled; stopped tasks'
removals) go through Powertools.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from chalicelib.eureka import paths as eureka_paths
from lambdamesh_routing.emf import NAMESPACE, emf_document

SERVICE = "lambdamesh"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

# Answers that come by the thousand and say nothing new: sidecars polling a routing view
# (each outbound port, every few seconds, per service it calls). Their line is logged at DEBUG;
# their metrics are kept, so polls are still counted.
QUIET_ROUTE = "/registry/services/{service}/routing"
QUIET_STATUSES = frozenset({200, 304})
# Eureka clients' registry fetches, the full registry or its delta, are such polls too.
QUIET_ROUTES = frozenset({QUIET_ROUTE, *eureka_paths.POLL_ROUTES})
# The registry's most frequent request, one per instance per interval, whose log bytes were
# most of what an instance cost: a successful heartbeat writes nothing at INFO, neither a
# line nor a metrics document. Lambda's own Invocations metric and the table's consumed write
# capacity count heartbeats; a failed one is logged and counted like any request.
# A Eureka client's renew is a heartbeat too.
HEARTBEAT_ROUTE = "/registry/services/{service}/instances/{instance_id}/heartbeat"
# DynamoDB's own figure for a heartbeat's write (``record_write_units``), sampled: at most one
# document per metric per execution environment in this many seconds.
WRITE_UNITS_SAMPLE_SECONDS = 900.0
_last_sample: dict[str, float] = {}

# CloudWatch's unit names, as Powertools' MetricUnit spells them.
COUNT = "Count"
MILLISECONDS = "Milliseconds"
# Every document's dimension, last, as Powertools adds it.
REQUEST_DIMENSIONS = {"service": SERVICE}
# Powertools' switches, read at each document as its Metrics reads them: the first when it
# is set, else the second.
METRICS_DISABLED = "POWERTOOLS_METRICS_DISABLED"
DEV_MODE = "POWERTOOLS_DEV"
_TRUE = frozenset({"1", "y", "yes", "t", "true", "on"})


def record_request(
    request_id: str, method: str, route: str, status: int, body: Any, started: float
) -> None:
    """One structured log line and the request's metrics, flushed as EMF at once."""
    error = body.get("error", {}).get("code") if isinstance(body, dict) else None
    renew = method == "PUT" and route in eureka_paths.INSTANCE_ROUTES
    heartbeat = (route == HEARTBEAT_ROUTE or renew) and status == 200
    quiet = heartbeat or (route in QUIET_ROUTES and status in QUIET_STATUSES)
    (logger.debug if quiet else logger.info)(
        "request",
        extra={
            "request_id": request_id,
            "method": method,
            "route": route,
            "status": status,
            "error_code": error,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
    if heartbeat:
        if metrics.metric_set:  # a sampled write-unit figure
            metrics.flush_metrics()
        metrics.clear_metrics()
        return
    if metrics.metric_set:
        # A sampled write-unit figure goes out in the same document, as Powertools gathers it.
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        if error:
            metrics.add_metric(name=f"Error.{error}", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()
        metrics.clear_metrics()
        return
    figures: list[tuple[str, str, float]] = [("Requests", COUNT, 1.0)]
    if error:
        figures.append((f"Error.{error}", COUNT, 1.0))
    print_document(REQUEST_DIMENSIONS, figures)


def record_write_units(name: str, units: float, now: float | None = None) -> None:
    """DynamoDB's own count of the write units a call consumed, flushed with the request's
    metrics: once per ``WRITE_UNITS_SAMPLE_SECONDS`` per execution environment, since every
    heartbeat costs the same."""
    now = time.monotonic() if now is None else now
    last = _last_sample.get(name)
    if last is not None and now - last < WRITE_UNITS_SAMPLE_SECONDS:
        return
    _last_sample[name] = now
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=units)


def record_task_removals(count: int) -> None:
    """Instances removed because ECS said their task stopped, as one EMF document."""
    removals = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    removals.add_metric(name="TaskStopRemovals", unit=MetricUnit.Count, value=count)
    removals.flush_metrics()


class RouteRecord:
    """What one routed request did, filled in as the gateway goes."""

    __slots__ = ("ejections", "panic", "retries", "status", "upstream", "upstream_ms", "version")

    def __init__(
        self,
        upstream: str,
        version: str,
        status: int = 0,
        upstream_ms: float | None = None,
        retries: int = 0,
        ejections: int = 0,
        panic: bool = False,
    ) -> None:
        self.upstream = upstream
        self.version = version
        self.status = status
        self.upstream_ms = upstream_ms
        self.retries = retries
        self.ejections = ejections
        self.panic = panic


def record_route(record: RouteRecord) -> None:
    """The routed request's metrics by upstream service and version, as one EMF document
    printed to the log: no network call on the hot path. (A document of their own, since the
    request's count has no such dimensions; ``service`` is Powertools' own dimension.)"""
    figures: list[tuple[str, str, float]] = [
        ("GatewayRequests", COUNT, 1.0),
        (f"Status{record.status // 100}xx", COUNT, 1.0),
    ]
    if record.upstream_ms is not None:
        figures.append(("UpstreamLatency", MILLISECONDS, record.upstream_ms))
    for name, count in (
        ("Retries", record.retries),
        ("Ejections", record.ejections),
        ("PanicEntries", int(record.panic)),
    ):
        if count:
            figures.append((name, COUNT, count))
    print_document(
        {"upstream": record.upstream, "version": record.version, **REQUEST_DIMENSIONS}, figures
    )


def metrics_disabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether Powertools' switches turn metrics off, read at each document (as Powertools
    reads them at each flush), so they can be changed without a new process."""
    disabled = environ.get(METRICS_DISABLED)
    if disabled is not None:
        return disabled.lower() in _TRUE
    return environ.get(DEV_MODE, "false").lower() in _TRUE


def print_document(
    dimensions: Mapping[str, str], figures: Sequence[tuple[str, str, float]]
) -> None:
    """Print one EMF document to the log, unless Powertools' switches turn metrics off."""
    if metrics_disabled():
        return
    document = emf_document(dimensions, figures, int(time.time() * 1000))
    print(json.dumps(document, separators=(",", ":")))
