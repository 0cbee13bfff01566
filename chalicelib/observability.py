"""Logger and Metrics, made once here and attached once by the app's middleware."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

SERVICE = "lambdamesh"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="LambdaMesh", service=SERVICE)
