"""CloudWatch's embedded metric format (EMF): one JSON document per log line, from which
CloudWatch Logs extracts the metrics it names. One layout for the Lambda's metrics and the
sidecar's, the one Powertools' Metrics writes (a test holds the Lambda's to it byte for byte).

CloudWatch Logs extracts EMF from any log event it receives, the ``x-amzn-logs-format``
header being optional
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Generation_PutLogEvents.html),
so a container's log lines sent by ECS's ``awslogs`` driver carry them as the Lambda's do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

NAMESPACE = "LambdaMesh"


def emf_document(
    dimensions: Mapping[str, str],
    figures: Sequence[tuple[str, str, float]],
    timestamp_ms: int,
    properties: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """One document (namespace ``NAMESPACE``, one dimension set): ``figures`` are (name,
    unit, value); ``properties`` ride along unextracted, searchable in CloudWatch Logs."""
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit, _ in figures],
                }
            ],
        },
        **dimensions,
        **{name: [float(value)] for name, _, value in figures},
        **(properties or {}),
    }
