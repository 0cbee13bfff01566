"""`lambdamesh cost --mesh-sidecars`: mesh certificates' issues, against figures worked by hand."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from chalicelib import certificates, config
from lambdamesh.cost import CostInputs, estimate, issues_a_month, render, render_markdown, to_json
from lambdamesh.cost.inputs import DEFAULT_CERT_SECONDS, MAX_CERT_SECONDS, MIN_CERT_SECONDS
from lambdamesh.cost.traffic import RENEW_AT
from tests.unit.test_cost import POLLING, SMALL, SMALL_MESH, lines, run

GB = 1024**3
# SMALL (x86_64, 512 MB, logs left out, no task churn) with 100 mesh sidecars at the default
# day-long certificate, renewed every 43,200 s: 100 x 2,628,000 / 43,200 issues a month.
CERTIFYING = replace(SMALL, mesh_sidecars=100, cert_log_bytes=0)
ISSUES = 100 * 2_628_000 / 43_200  # 6,083.33
# Each issue at the defaults: 20 ms at 512 MB.
GB_SECONDS = ISSUES * 0.020 * 0.5
ITEMS = (
    "Mesh certificates: Lambda requests",
    "Mesh certificates: Lambda duration",
    "Mesh certificates: CloudWatch Logs",
    "Mesh certificates: mesh CA secret",
    "Mesh certificates: mesh CA reads",
)


def certificate_lines(inputs: CostInputs) -> dict[str, float]:
    return {k: v for k, v in lines(inputs).items() if k.startswith("Mesh certificates: ")}


def test_issues_are_sidecars_times_the_month_over_half_the_certificates_life() -> None:
    assert issues_a_month(CERTIFYING) == pytest.approx(ISSUES)
    # an hour's certificate, renewed every 30 minutes: 24 times as many, 1,460 a sidecar
    assert issues_a_month(replace(CERTIFYING, cert_seconds=3600)) == pytest.approx(146_000)
    # a week's, renewed every 302,400 s
    week = replace(CERTIFYING, cert_seconds=604_800)
    assert issues_a_month(week) == pytest.approx(100 * 2_628_000 / 302_400)
    assert issues_a_month(replace(CERTIFYING, mesh_sidecars=1)) == pytest.approx(ISSUES / 100)


def test_a_task_issues_one_at_its_start_and_one_every_half_life_while_it_lives() -> None:
    # a day's task with a day's certificate: at its start and 12 h in; the renewal at 24 h is
    # its replacement's first issue, so churn adds none
    daily = replace(CERTIFYING, task_lifetime_hours=24)
    assert issues_a_month(daily) == pytest.approx(ISSUES)
    # a 30 h task: at 0, 12 and 24 h, three issues per 30 h
    assert issues_a_month(replace(daily, task_lifetime_hours=30)) == pytest.approx(
        100 * 3 / (30 * 3600) * 2_628_000
    )
    # an hour's task never renews a day's certificate: one issue an hour
    assert issues_a_month(replace(daily, task_lifetime_hours=1)) == pytest.approx(100 * 730)
    # a 6 h task with an hour's certificate: twelve issues, at 0, 30 min, ... 5 h 30: as if
    # it were never replaced
    six = replace(daily, task_lifetime_hours=6, cert_seconds=3600)
    assert issues_a_month(six) == pytest.approx(146_000)


def test_mesh_certificates_off_change_no_line_whatever_their_other_inputs() -> None:
    idle = replace(SMALL, cert_seconds=60, cert_ms=500, cert_log_bytes=10_000)

    breakdown = estimate(idle)

    assert breakdown.lines == estimate(SMALL).lines
    assert breakdown.total == pytest.approx(28.026121, abs=1e-5)
    assert breakdown.certificates_monthly == 0
    assert breakdown.per_mesh_sidecar == {}
    assert not any(line.item.startswith("Mesh") for line in breakdown.lines)
    document = to_json(breakdown)
    assert "certificates" not in document
    assert document["assumptions"] == to_json(estimate(SMALL))["assumptions"]


def test_the_default_outputs_do_not_mention_certificates(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, table, _ = run(capsys, *SMALL_MESH)
    _, out, _ = run(capsys, *SMALL_MESH, "--json")
    _, markdown, _ = run(capsys, *SMALL_MESH, "--markdown")

    assert "ertificate" not in table
    assert "ertificate" not in markdown
    assert "certificates" not in json.loads(out)
    assert not any("certificate" in text for text in json.loads(out)["assumptions"])


def test_each_issue_is_a_lambda_invocation_with_its_duration_on_the_sidecars_lane() -> None:
    got, base = lines(CERTIFYING), lines(SMALL)

    assert got["Mesh certificates: API Gateway (REST)"] == pytest.approx(ISSUES * 3.50e-6)
    assert got["Mesh certificates: Lambda requests"] == pytest.approx(ISSUES * 0.20e-6)
    assert got["Mesh certificates: Lambda duration"] == pytest.approx(GB_SECONDS * 0.0000166667)
    assert got["Mesh certificates: CloudWatch Logs"] == 0  # logs left out
    # the mesh's own lines are the mesh's without certificates: an issue reads no DynamoDB
    assert {k: v for k, v in got.items() if not k.startswith("Mesh")} == base
    added = estimate(CERTIFYING).total - estimate(SMALL).total
    assert added == pytest.approx(estimate(CERTIFYING).certificates_monthly)


def test_issue_logs_are_billed_at_their_own_size_and_lambdas_lines_on_each() -> None:
    logged = replace(CERTIFYING, cert_log_bytes=1024, log_bytes_per_invocation=4096)
    platform = replace(logged, platform_log_bytes=350)

    assert lines(logged)["Mesh certificates: CloudWatch Logs"] == pytest.approx(
        ISSUES * 1024 / GB * 0.50
    )
    assert lines(platform)["Mesh certificates: CloudWatch Logs"] == pytest.approx(
        ISSUES * (1024 + 350) / GB * 0.50
    )
    assert estimate(platform).per_mesh_sidecar["logs"] == pytest.approx(
        ISSUES / 100 * (1024 + 350) / GB * 0.50
    )


@pytest.mark.parametrize("lane", ["url", "mixed"])
def test_issues_cost_api_gateway_only_where_the_sidecars_call_the_rest_api(lane: str) -> None:
    rest, other = estimate(CERTIFYING), estimate(replace(CERTIFYING, lane=lane))
    got = {line.item: line.monthly for line in other.lines}

    assert "Mesh certificates: API Gateway (REST)" not in got
    assert set(certificate_lines(replace(CERTIFYING, lane=lane))) == set(ITEMS)
    assert other.per_mesh_sidecar["api_gateway"] == 0
    assert rest.per_mesh_sidecar["api_gateway"] == pytest.approx(ISSUES / 100 * 3.50e-6)
    assert rest.certificates_monthly - other.certificates_monthly == pytest.approx(ISSUES * 3.50e-6)


def test_issues_are_charged_at_the_api_gateway_band_the_other_calls_push_the_month_into() -> None:
    # 500 outbound sidecars x 3 / 5 s = 788.4 M polls on top of SMALL's 3.15 M calls: past
    # the first 333 M, so each issue is charged at $2.80 a million
    busy = replace(POLLING, outbound_sidecars=500, mesh_sidecars=100)

    assert lines(busy)["Mesh certificates: API Gateway (REST)"] == pytest.approx(ISSUES * 2.80e-6)


def test_issues_come_on_top_of_the_eureka_clients_calls_on_the_rest_api() -> None:
    # 200 outbound sidecars x 3 / 5 s = 315.36 M polls + 3.15 M calls: under 333 M; 100
    # Eureka clients add 17.52 M renews and fetches, which take the month past it
    polling = replace(POLLING, outbound_sidecars=200, mesh_sidecars=100)
    with_eureka = replace(polling, eureka_clients=100)

    assert lines(polling)["Mesh certificates: API Gateway (REST)"] == pytest.approx(
        ISSUES * 3.50e-6
    )
    assert lines(with_eureka)["Mesh certificates: API Gateway (REST)"] == pytest.approx(
        ISSUES * 2.80e-6
    )


def test_the_mesh_ca_is_one_more_secret_and_each_issue_reads_it_at_most_once() -> None:
    got, base = lines(CERTIFYING), lines(SMALL)

    assert got["Mesh certificates: mesh CA secret"] == pytest.approx(0.40)
    assert got["Mesh certificates: mesh CA reads"] == pytest.approx(ISSUES * 0.05 / 10_000)
    assert got["Secrets Manager"] == base["Secrets Manager"]
    one = estimate(CERTIFYING).per_mesh_sidecar
    assert one["mesh_ca_reads"] == pytest.approx(ISSUES / 100 * 0.05 / 10_000)


def test_one_mesh_sidecar_is_the_sidecars_share_of_what_they_add_without_the_secret() -> None:
    breakdown = estimate(CERTIFYING)
    one = breakdown.per_mesh_sidecar

    assert one["total"] * 100 + 0.40 == pytest.approx(breakdown.certificates_monthly)
    assert one["total"] == pytest.approx(sum(value for key, value in one.items() if key != "total"))


def test_a_sidecar_at_the_defaults_costs_what_the_docs_say() -> None:
    """A day's certificate renewed twice a day, on the mixed lane (the function URL), arm64
    512 MB: 60.83 issues a sidecar-month, each a request, 20 ms, 790 B and a CA read."""
    defaults = replace(
        SMALL, mesh_sidecars=1, lane="mixed", architecture="arm64", cert_log_bytes=790
    )

    one = estimate(defaults).per_mesh_sidecar

    issues = 2_628_000 / 43_200
    assert one["total"] == pytest.approx(
        issues * (0.20e-6 + 0.020 * 0.5 * 0.0000133334 + 790 / GB * 0.50 + 0.05 / 10_000)
    )
    assert f"{one['total']:.4f}" == "0.0003"


def test_json_table_and_markdown_carry_the_certificate_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = (*SMALL_MESH, "--mesh-sidecars", "100", "--cert-seconds", "3600")

    code, out, _ = run(capsys, *argv, "--json")
    _, table, _ = run(capsys, *argv)
    _, markdown, _ = run(capsys, *argv, "--markdown")

    document = json.loads(out)
    section = document["certificates"]
    items = [line["item"] for line in document["lines"]]
    assert code == 0
    assert document["inputs"]["cert_seconds"] == 3600
    assert {"Mesh certificates: API Gateway (REST)", *ITEMS} <= set(items)
    assert section["issues_per_month"] == pytest.approx(146_000)
    assert section["issues_per_sidecar_month"] == pytest.approx(1460)
    assert section["renewal_seconds"] == 1800
    assert section["lane"] == "rest"
    certificate_total = sum(
        line["monthly"] for line in document["lines"] if line["item"].startswith("Mesh")
    )
    assert section["monthly"] == pytest.approx(certificate_total)
    # each figure rounded to 6 places, the sidecar's then multiplied by 100
    assert section["per_sidecar"]["total"] * 100 + 0.40 == pytest.approx(
        section["monthly"], abs=1e-4
    )
    assert document["total"] == pytest.approx(sum(line["monthly"] for line in document["lines"]))
    assert any("certificate" in text for text in document["assumptions"])
    assert "Mesh certificates: mesh CA reads" in table
    assert "146,000 issues a month" in table
    assert f"${section['per_sidecar']['total']:.4f} per sidecar-month" in table
    rows = markdown.splitlines()
    assert "| Mesh certificates: Lambda requests | 146,000 issues" in markdown
    assert rows[-1].startswith("| One mesh sidecar's certificates, per month (not in the total) |")
    assert rows[-1].endswith(f"| ${section['per_sidecar']['total']:.4f} |")


def test_the_table_and_markdown_name_the_lane_the_issues_take() -> None:
    mixed = estimate(replace(CERTIFYING, lane="mixed"))

    assert "through the function URL: 6,083 issues a month" in render(mixed)
    assert "60.8 issues through the function URL" in render_markdown(mixed)


def test_the_renewal_share_and_the_certificates_life_are_the_registrys() -> None:
    assert RENEW_AT == certificates.RENEW_AT
    assert config.Settings().mesh_cert_seconds == DEFAULT_CERT_SECONDS
    assert (MIN_CERT_SECONDS, MAX_CERT_SECONDS) == (
        config.MIN_MESH_CERT_SECONDS,
        config.MAX_MESH_CERT_SECONDS,
    )
