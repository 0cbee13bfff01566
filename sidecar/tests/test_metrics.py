"""The instance's figures, in and out by peer, as CloudWatch EMF documents."""

from __future__ import annotations

import io
import json
import random
import threading

from lambdamesh_sidecar.metrics import ANONYMOUS, MAX_PEERS, MAX_SAMPLES, OTHER, CallMetrics


def metrics() -> CallMetrics:
    return CallMetrics("payments", "payments-1", "arn:aws:ecs:us-east-1:1:task/c/t", lambda: 1.5)


def by_peer(documents: list[dict[str, object]]) -> dict[tuple[object, object], dict[str, object]]:
    return {(d["Direction"], d["Peer"]): d for d in documents}


def test_a_period_gives_one_document_per_direction_and_peer() -> None:
    figures = metrics()
    for ms in range(1, 101):
        figures.record("in", "orders", 200, ms / 1000)
    figures.record("in", "orders", 403, 0.001)
    figures.record("in", None, 403, 0.001)
    figures.record("out", "billing", 502, 2.0, failed=True)
    documents = by_peer(figures.documents())
    assert set(documents) == {("in", "orders"), ("in", ANONYMOUS), ("out", "billing")}
    orders = documents["in", "orders"]
    assert orders["Requests"] == [101.0]
    assert (orders["Status2xx"], orders["Status4xx"], orders["Failed"]) == ([100.0], [1.0], [0.0])
    assert orders["LatencyP50"] == [50.0] and orders["LatencyP99"] == [99.0]
    assert documents["out", "billing"]["Failed"] == [1.0]
    # Properties, not dimensions: the instance and its task.
    directive = orders["_aws"]["CloudWatchMetrics"][0]  # type: ignore[index]
    assert directive["Dimensions"] == [["Service", "Direction", "Peer"]]
    assert directive["Namespace"] == "LambdaMesh"
    assert {m["Name"] for m in directive["Metrics"]} <= set(orders)
    assert (orders["Instance"], orders["TaskArn"], orders["Service"]) == (
        "payments-1",
        "arn:aws:ecs:us-east-1:1:task/c/t",
        "payments",
    )
    assert orders["_aws"]["Timestamp"] == 1500  # type: ignore[index]
    # The next period starts empty.
    assert figures.documents() == []


def test_peers_are_bounded_a_period_and_the_rest_counted_together() -> None:
    figures = metrics()
    for n in range(MAX_PEERS + 10):
        figures.record("out", f"made-up-{n}", 404, 0.001)
    documents = by_peer(figures.documents())
    assert len(documents) == MAX_PEERS + 1
    assert documents["out", OTHER]["Requests"] == [10.0]


def test_latency_samples_are_bounded_and_stay_a_fair_sample() -> None:
    figures = CallMetrics("payments", "p-1", rng=random.Random(7))
    for n in range(10 * MAX_SAMPLES):
        figures.record("in", "orders", 200, (n % 100) / 1000)
    [document] = figures.documents()
    assert len(figures._figures) == 0
    assert document["Requests"] == [10.0 * MAX_SAMPLES]
    assert 40.0 <= document["LatencyP50"][0] <= 60.0


def test_flush_writes_one_json_line_per_document_and_run_flushes_at_the_end() -> None:
    figures = metrics()
    figures.record("in", "orders", 200, 0.01)
    out = io.StringIO()
    stop = threading.Event()
    stop.set()
    figures.run(stop, period=3600, out=out)
    [line] = out.getvalue().splitlines()
    assert json.loads(line)["Peer"] == "orders"


def test_each_heartbeat_reports_the_calls_since_the_last_for_each_port_served() -> None:
    now = [100.0]
    figures = CallMetrics("payments", "p-1", clock=lambda: now[0], directions=("in",))
    assert figures.window() == {
        "seconds": 0.0,
        "in": {"requests": 0, "errors": 0, "p50_ms": None, "p99_ms": None},
    }
    for ms in range(1, 11):
        figures.record("in", "orders", 200, ms / 1000)
    figures.record("in", "orders", 503, 0.5, failed=True)
    figures.record("in", "orders", 500, 0.002)
    figures.record("in", "orders", 403, 0.001)
    figures.record("out", "billing", 200, 0.001)  # no outbound port served: not reported
    now[0] += 60
    report = figures.window()
    assert report["seconds"] == 60.0 and set(report) == {"seconds", "in"}
    assert report["in"]["requests"] == 13 and report["in"]["errors"] == 2
    assert report["in"]["p50_ms"] == 5.0 and report["in"]["p99_ms"] == 500.0
    # The EMF periods are counted apart from the heartbeats' windows.
    assert by_peer(figures.documents())["in", "orders"]["Requests"] == [13.0]
    assert figures.window()["in"]["requests"] == 0
