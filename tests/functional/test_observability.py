"""What the app tells operators: one log line and CloudWatch EMF metrics per request."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest

from lambdamesh.testclient import TestClient as Client
from tests.functional.conftest import Upstream
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

    metrics = [doc for doc in emitted_json(capsys.readouterr().out) if "Requests" in doc]
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


def test_a_routed_request_emits_its_metrics_by_upstream_service_and_version(
    client: Client,
    upstreams: Callable[[str], Upstream],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    upstream = upstreams("orders")
    registered = client.http.put(
        "/registry/services/orders/instances/a",
        headers={"Content-Type": "application/json", **bearer(service_token("orders"))},
        body=json.dumps({"version": "v1", "host": "127.0.0.1", "port": upstream.port}),
    )
    assert registered.status_code == 201
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()

    client.http.get("/api/v1/orders/v1/x")

    documents = [doc for doc in emitted_json(capsys.readouterr().out) if "_aws" in doc]
    [route] = [doc for doc in documents if "GatewayRequests" in doc]
    [directive] = route["_aws"]["CloudWatchMetrics"]  # type: ignore[index]
    assert (route["upstream"], route["version"]) == ("orders", "v1")
    assert [d for d in directive["Dimensions"][0] if d != "service"] == ["upstream", "version"]
    assert route["Status2xx"] in ([1.0], 1.0)
    assert "UpstreamLatency" in route
    assert not any(name in route for name in ("Retries", "Ejections", "PanicEntries"))


@pytest.mark.parametrize(
    ("path", "dimensions"),
    [
        ("/api/v1/orders/made-up-1/x", ("orders", "unknown")),
        ("/api/v1/made-up-service/v1/x", ("unknown", "unknown")),
    ],
)
def test_names_the_registry_does_not_hold_never_become_metric_dimensions(
    client: Client,
    upstreams: Callable[[str], Upstream],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    path: str,
    dimensions: tuple[str, str],
) -> None:
    """Each new dimension value is a custom metric of its own, billed monthly: a client
    making up versions or (where the edge is open) services must not mint them."""
    upstream = upstreams("orders")
    registered = client.http.put(
        "/registry/services/orders/instances/a",
        headers={"Content-Type": "application/json", **bearer(service_token("orders"))},
        body=json.dumps({"version": "v1", "host": "127.0.0.1", "port": upstream.port}),
    )
    assert registered.status_code == 201
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()

    assert client.http.get(path).status_code == 404

    documents = [doc for doc in emitted_json(capsys.readouterr().out) if "_aws" in doc]
    [route] = [doc for doc in documents if "GatewayRequests" in doc]
    assert (route["upstream"], route["version"]) == dimensions


def test_a_sidecars_poll_is_counted_but_logged_only_at_debug(
    client: Client,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from chalicelib.observability import logger

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    path = "/registry/services/orders/routing"
    logger.setLevel("INFO")
    try:
        with caplog.at_level("INFO", logger="lambdamesh"):
            capsys.readouterr()
            read = client.http.get(path, headers=bearer(service_token("billing")))
            tag = {k.lower(): v for k, v in read.headers.items()}["etag"]
            unchanged = client.http.get(
                path, headers={"If-None-Match": tag, **bearer(service_token("billing"))}
            )
            refused = client.http.get(path)
            printed = capsys.readouterr().out
    finally:
        logger.setLevel("WARNING")

    assert (read.status_code, unchanged.status_code, refused.status_code) == (200, 304, 401)
    logged = [vars(r)["status"] for r in caplog.records if r.getMessage() == "request"]
    assert logged == [401]
    counted = [doc for doc in emitted_json(printed) if "Requests" in doc]
    assert len(counted) == 3


@pytest.fixture
def log_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Everything the app's Logger writes, at INFO (its handler keeps the stdout it was made
    with, which pytest's per-test capture does not see)."""
    from chalicelib.observability import logger

    written = io.StringIO()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    before = handler.setStream(written)
    logger.setLevel("INFO")
    try:
        yield written
    finally:
        logger.setLevel("WARNING")
        handler.setStream(before)


def heartbeat(client: Client, instance: str = "a") -> int:
    response = client.http.put(
        f"/registry/services/orders/instances/{instance}/heartbeat",
        headers={"Content-Type": "application/json", **bearer(service_token("orders"))},
        body="{}",
    )
    return response.status_code


def test_successful_heartbeats_write_nothing_but_one_sampled_write_unit_figure(
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    log_stream: io.StringIO,
) -> None:
    from chalicelib import observability

    # Given a registered instance, in an execution environment that has sampled nothing yet
    monkeypatch.setattr(observability, "_last_sample", {})
    registered = client.http.put(
        "/registry/services/orders/instances/a",
        headers={"Content-Type": "application/json", **bearer(service_token("orders"))},
        body=json.dumps({"version": "v1", "host": "127.0.0.1", "port": 8080}),
    )
    assert registered.status_code == 201
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()
    log_stream.truncate(0)
    # When its sidecar heartbeats, again and again, at INFO with metrics on
    assert [heartbeat(client) for _ in range(5)] == [200] * 5
    # Then no line is logged, and stdout holds one document: DynamoDB's figure, sampled
    assert log_stream.getvalue() == ""
    printed = capsys.readouterr().out
    documents = emitted_json(printed)
    assert len(documents) == len(printed.splitlines()) == 1
    [sample] = documents
    units = sample["HeartbeatWriteUnits"]
    values = units if isinstance(units, list) else [units]
    assert len(values) == 1 and isinstance(values[0], int | float)
    assert values[0] > 0  # moto's figure, not DynamoDB's
    assert "Requests" not in sample
    [directive] = sample["_aws"]["CloudWatchMetrics"]  # type: ignore[index]
    assert [m["Name"] for m in directive["Metrics"]] == ["HeartbeatWriteUnits"]


def test_a_failed_heartbeat_is_still_logged_and_counted(
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    log_stream: io.StringIO,
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()

    assert heartbeat(client, "never-registered") == 404

    [line] = [json.loads(x) for x in log_stream.getvalue().splitlines()]
    assert (line["message"], line["status"]) == ("request", 404)
    assert line["error_code"] == "instance_not_found"
    [counted] = [doc for doc in emitted_json(capsys.readouterr().out) if "Requests" in doc]
    assert "Error.instance_not_found" in counted


def test_eureka_renews_are_heartbeats_and_its_registry_fetches_are_quiet_polls(
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    log_stream: io.StringIO,
) -> None:
    from chalicelib import observability
    from tests.functional.test_eureka_api import PY_PATH, py_auth, py_body, register

    monkeypatch.setattr(observability, "_last_sample", {})
    assert register(client, py_body()).status_code == 204
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()
    log_stream.seek(0)
    log_stream.truncate(0)

    renews = [client.http.put(PY_PATH, headers=py_auth()).status_code for _ in range(3)]
    polls = [
        client.http.get(path, headers=py_auth()).status_code
        for path in ("/eureka/apps/", "/eureka/v2/apps/delta")
    ]
    read = client.http.get(PY_PATH, headers=py_auth()).status_code

    assert (renews, polls, read) == ([200] * 3, [200, 200], 200)
    # One INFO line: reading one instance, which is not a poll.
    [line] = [json.loads(x) for x in log_stream.getvalue().splitlines()]
    assert (line["method"], line["route"]) == ("GET", "/eureka/apps/{app_name}/{instance_id}")
    documents = emitted_json(capsys.readouterr().out)
    assert sum("Requests" in d for d in documents) == 3  # the polls and the read are counted
    assert sum("HeartbeatWriteUnits" in d for d in documents) == 1
