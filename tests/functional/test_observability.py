"""What the app tells operators: one log line and CloudWatch EMF metrics per request."""

from __future__ import annotations

import json

import pytest

from lambdamesh.localgateway import TestClient as Client
from tests.helpers import SIGNING_KEY, bearer, service_token


def emitted_json(text: str) -> list[dict[str, object]]:
    found = []
    for line in text.splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def test_each_request_emits_emf_metrics_with_its_error_code(
    client: Client, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()

    client.http.get("/api/v1/nosuch/v1/x")

    metrics = [doc for doc in emitted_json(capsys.readouterr().out) if "_aws" in doc]
    assert metrics, "no EMF document printed"
    [document] = metrics
    assert document["Requests"] == [1.0] or document["Requests"] == 1.0
    assert "Error.service_not_found" in document


def test_each_request_is_logged_once_without_secrets(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    from chalicelib.observability import logger

    token = service_token("orders")
    logger.setLevel("INFO")
    try:
        with caplog.at_level("INFO", logger="lambdamesh"):
            response = client.http.get("/registry/services", headers=bearer(token))
    finally:
        logger.setLevel("WARNING")

    records = [r for r in caplog.records if r.getMessage() == "request"]
    assert len(records) == 1
    fields = vars(records[0])
    assert fields["request_id"] == response.headers["X-Request-Id"]
    assert fields["status"] == 200
    everything = "".join(str(vars(r)) for r in caplog.records)
    assert token not in everything
    assert SIGNING_KEY not in everything
