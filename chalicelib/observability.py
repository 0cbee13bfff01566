"""Logger and Metrics, made once here and attached once by the app's middleware."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from chalicelib.eureka import paths as eureka_paths

SERVICE = "lambdamesh"
NAMESPACE = "LambdaMesh"

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
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    if error:
        metrics.add_metric(name=f"Error.{error}", unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()
    metrics.clear_metrics()


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


@dataclass
class RouteRecord:
    """What one routed request did, filled in as the gateway goes."""

    upstream: str
    version: str
    status: int = 0
    upstream_ms: float | None = None
    retries: int = 0
    ejections: int = 0
    panic: bool = False


def record_route(record: RouteRecord) -> None:
    """The routed request's metrics by upstream service and version, as one EMF document
    printed to the log: no network call on the hot path. (Metrics of their own, since the
    request's shared set has no such dimensions; ``service`` is Powertools' own dimension.)"""
    route = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    route.add_dimension(name="upstream", value=record.upstream)
    route.add_dimension(name="version", value=record.version)
    route.add_metric(name="GatewayRequests", unit=MetricUnit.Count, value=1)
    route.add_metric(name=f"Status{record.status // 100}xx", unit=MetricUnit.Count, value=1)
    if record.upstream_ms is not None:
        route.add_metric(
            name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=record.upstream_ms
        )
    for name, count in (
        ("Retries", record.retries),
        ("Ejections", record.ejections),
        ("PanicEntries", int(record.panic)),
    ):
        if count:
            route.add_metric(name=name, unit=MetricUnit.Count, value=count)
    route.flush_metrics()
    route.clear_metrics()
