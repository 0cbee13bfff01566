"""The ports' benchmark reports: their verdicts against the nginx anchors, with and
without nginx (the figures themselves come from `make bench`)."""

from __future__ import annotations

import pytest

from tests.bench import bench_inbound, bench_sidecar, nginx_anchor
from tests.bench.bench_sidecar import Case, Rest, report

MIB = 1024 * 1024
RESTS = [
    Rest("sidecar without outbound", 0.001, 23 * MIB, 2),
    Rest("sidecar with outbound", 0.001, 26 * MIB, 4),
    Rest("bare interpreter", 0.0, 10 * MIB, 1),
]


def ms(*values: float) -> list[float]:
    return [v / 1000 for v in values]


def test_the_outbound_port_is_judged_against_twice_nginxs_added_time() -> None:
    direct = ms(*[0.20] * 10)
    nginx = ms(*[0.30] * 10)  # adds 0.10 ms
    case = Case("GET /items/1", direct, ms(*[0.39] * 10), nginx)  # adds 0.19 ms: 1.9x

    result = report([case], RESTS)

    rows = result["latency"]
    assert isinstance(rows, list)
    [row] = rows
    assert row["nginx_added_p50_ms"] == pytest.approx(0.1)
    assert row["x_nginx_added_p50"] == pytest.approx(1.9)
    goals = result["goals"]
    assert goals["get_added_p50_x_nginx"]["met"] is True  # type: ignore[index]
    assert goals["get_added_p90_x_nginx"]["met"] is True  # type: ignore[index]


def test_more_than_twice_nginxs_added_time_is_not_met() -> None:
    case = Case("GET /items/1", ms(*[0.20] * 10), ms(*[0.45] * 10), ms(*[0.30] * 10))

    goals = report([case], RESTS)["goals"]

    assert goals["get_added_p50_x_nginx"]["met"] is False  # type: ignore[index]
    assert goals["get_added_p50_x_nginx"]["figure"] == pytest.approx(2.5)  # type: ignore[index]


def test_without_nginx_the_anchor_is_reported_as_not_measured(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(nginx_anchor, "binary", lambda: None)
    case = Case("GET /items/1", ms(*[0.20] * 10), ms(*[0.45] * 10), [])

    result = report([case], RESTS)
    bench_sidecar.print_table(result)

    assert result["goals"]["get_added_p50_x_nginx"]["met"] is None  # type: ignore[index]
    printed = capsys.readouterr().out
    assert "nginx not found: the anchor was skipped" in printed
    assert "not measured (no nginx)" in printed
    with nginx_anchor.reverse_proxy([1]) as port:
        assert port is None


def test_the_inbound_port_is_judged_against_nginx_terminating_the_same_tls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    get = Case("GET /items/1", ms(*[0.20] * 10), ms(*[0.50] * 10), ms(*[0.35] * 10))
    fresh = Case("GET, new TLS connection each", ms(*[0.2] * 10), ms(*[2.6] * 10), ms(*[2.0] * 10))

    result = bench_inbound.report([get, fresh], {"inbound": {"TLSv1.3 TLS_AES_256_GCM_SHA384"}})
    bench_inbound.print_table(result)

    goals = result["goals"]
    # Read on the keep-alive GET only: 0.30 ms added against nginx's 0.15 ms.
    assert goals["get_added_p50_x_nginx"]["figure"] == pytest.approx(2.0)  # type: ignore[index]
    assert goals["get_added_p50_x_nginx"]["met"] is True  # type: ignore[index]
    printed = capsys.readouterr().out
    assert "TLSv1.3 TLS_AES_256_GCM_SHA384" in printed
    assert "GET added p50: inbound port 0.300 ms, nginx 0.15 ms, 2.0x" in printed


def test_without_nginx_the_tls_anchor_is_not_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nginx_anchor, "binary", lambda: None)
    with nginx_anchor.tls_terminator([1], "certificate", "key", "bundle") as port:
        assert port is None
