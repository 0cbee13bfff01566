"""Logger and Metrics, made once here and attached once by the app's middleware."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "lambdamesh"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="LambdaMesh", service=SERVICE)


def record_request(
    request_id: str, method: str, route: str, status: int, body: Any, started: float
) -> None:
    """One structured log line and the request's metrics, flushed as EMF at once."""
    error = body.get("error", {}).get("code") if isinstance(body, dict) else None
    logger.info(
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
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    if error:
        metrics.add_metric(name=f"Error.{error}", unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()
    metrics.clear_metrics()


def record_write_units(name: str, units: float) -> None:
    """DynamoDB's own count of the write units a call consumed, flushed with the request's
    metrics."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=units)
