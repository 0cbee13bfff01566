"""`lambdamesh cost`: the arithmetic against figures worked by hand, and the command's edges."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from dataclasses import MISSING, fields, replace
from pathlib import Path

import pytest

from chalicelib.eureka.fetches import DELTA_WINDOW_SECONDS
from lambdamesh.cost import (
    CostInputError,
    CostInputs,
    Line,
    add_cost_command,
    cost_command,
    declared,
    estimate,
    eureka,
    polls_a_month,
    render_markdown,
    tiered,
    warm_lambdas,
)
from lambdamesh.prices import PRICES, Tier
from lambdamesh_sidecar.variables import DEFAULT_HEARTBEAT_SECONDS

DOCS = Path(__file__).resolve().parents[2] / "docs"

# 2 instances at 10 s and 1 routed request a second, over a 730-hour month (2,628,000 s):
# 525,600 heartbeats + 2,628,000 routed = 3,153,600 invocations; 512 MB x86_64;
# 10 ms a heartbeat and 30 ms a request = 84,096 s = 42,048 GB-s; logs left out.
SMALL = CostInputs(
    instances=2,
    heartbeat_seconds=10,
    requests_per_second=1,
    log_bytes_per_invocation=0,
    poll_log_bytes=0,
    architecture="x86_64",
    heartbeat_ms=10,
    task_lifetime_hours=0,
)
SMALL_MESH = ("--instances", "10", "--heartbeat", "15", "--requests-per-second", "5")
# SMALL plus the outbound port: 100 sidecars each polling 3 services every 5 s = 60 polls a
# second = 157,680,000 a month, each billed 15 ms (the heartbeat's default) and, on the REST
# lane, one API Gateway call; the 3.15 M calls above stay in API Gateway's first band.
POLLING = replace(SMALL, services=3, outbound_sidecars=100, called_services=3, poll_ms=15)
POLLS = 157_680_000


def lines(inputs: CostInputs) -> dict[str, float]:
    return {line.item: line.monthly for line in estimate(inputs).lines}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="lambdamesh")
    add_cost_command(parser.add_subparsers(dest="command"))
    code = cost_command(parser.parse_args(["cost", *argv]))
    out, err = capsys.readouterr()
    return code, out, err


def test_small_mesh_matches_the_hand_computed_figures() -> None:
    got = lines(SMALL)

    assert got["API Gateway (REST)"] == pytest.approx(3_153_600 * 3.50e-6)  # 11.0376
    assert got["Lambda requests"] == pytest.approx(0.63072)
    assert got["Lambda duration"] == pytest.approx(42_048 * 0.0000166667)  # 0.7008
    assert got["DynamoDB writes (on-demand)"] == pytest.approx(525_600 * 0.625e-6)  # 0.3285
    # one warm Lambda (1 req/s x 30 ms, rounded up), one service, 1 s cache: one read a second
    assert got["DynamoDB reads (on-demand)"] == pytest.approx(2_628_000 * 0.125e-6)
    assert got["Secrets Manager"] == pytest.approx(0.40)
    assert got["Secrets Manager endpoint"] == pytest.approx(2 * 730 * 0.01)  # 14.60
    assert got["CloudWatch Logs"] == 0
    assert estimate(SMALL).total == pytest.approx(28.026121, abs=1e-5)


def test_provisioned_capacity_is_sized_from_the_rate_with_headroom_and_a_floor_of_one() -> None:
    got = lines(CostInputs(**{**vars(SMALL), "billing": "provisioned"}))

    # 0.2 writes/s / 70 % rounds up to 1 WCU; 1 read/s / 70 % = 1.43 rounds up to 2 RCU
    assert got["DynamoDB writes (provisioned)"] == pytest.approx(1 * 730 * 0.00065)
    assert got["DynamoDB reads (provisioned)"] == pytest.approx(2 * 730 * 0.00013)
    assert "DynamoDB writes (on-demand)" not in got


def test_an_idle_table_still_pays_for_one_provisioned_unit_each_way() -> None:
    idle = CostInputs(
        instances=0, heartbeat_seconds=10, requests_per_second=0, billing="provisioned"
    )

    got = lines(idle)

    assert got["DynamoDB writes (provisioned)"] == pytest.approx(730 * 0.00065)
    assert got["DynamoDB reads (provisioned)"] == pytest.approx(730 * 0.00013)


def test_the_function_url_lane_has_no_api_gateway_line_and_the_same_lambda_lines() -> None:
    url = lines(CostInputs(**{**vars(SMALL), "lane": "url"}))
    rest = lines(SMALL)

    assert "API Gateway (REST)" not in url
    assert url["Lambda requests"] == rest["Lambda requests"]
    assert estimate(SMALL).total - sum(url.values()) == pytest.approx(11.0376)


def test_arm64_bills_duration_at_the_arm_rate() -> None:
    got = lines(CostInputs(**{**vars(SMALL), "architecture": "arm64"}))

    assert got["Lambda duration"] == pytest.approx(42_048 * 0.0000133334)


def test_cloud_map_charges_per_instance_and_per_discovery_call() -> None:
    breakdown = estimate(SMALL)

    assert breakdown.cloud_map_registry_only == pytest.approx(2 * 0.10)
    assert breakdown.cloud_map_with_discovery == pytest.approx(0.20 + 2_628_000 * 1e-6)


def test_logs_are_billed_per_ingested_gigabyte() -> None:
    got = lines(CostInputs(**{**vars(SMALL), "log_bytes_per_invocation": 1024}))

    # 2,628,000 routed requests; the 525,600 successful heartbeats log nothing by default.
    assert got["CloudWatch Logs"] == pytest.approx(2_628_000 * 1024 / 1024**3 * 0.50)


def test_heartbeat_and_platform_log_bytes_are_billed_on_their_calls() -> None:
    quiet = CostInputs(**{**vars(SMALL), "heartbeat_log_bytes": 576})
    platform = CostInputs(**{**vars(SMALL), "platform_log_bytes": 350})

    assert lines(quiet)["CloudWatch Logs"] == pytest.approx(525_600 * 576 / 1024**3 * 0.50)
    assert lines(platform)["CloudWatch Logs"] == pytest.approx(3_153_600 * 350 / 1024**3 * 0.50)
    assert estimate(quiet).per_instance_heartbeat["logs"] == pytest.approx(
        262_800 * 576 / 1024**3 * 0.50
    )


def test_task_churn_matches_the_hand_computed_figures() -> None:
    # 10 instances each replaced every 73 h: 100 tasks a month; each a registration and 4
    # stop events (500 invocations), 15 ms each, 7 write units and 1 + 4 x 0.5 read units.
    churn = CostInputs(
        instances=10, heartbeat_seconds=60, requests_per_second=0, task_lifetime_hours=73
    )
    still = replace(churn, task_lifetime_hours=0)

    got, base = lines(churn), lines(still)

    assert got["Task churn: Lambda requests"] == pytest.approx(500 * 0.20e-6)
    assert got["Task churn: Lambda duration"] == pytest.approx(500 * 0.015 * 0.5 * 0.0000133334)
    assert got["Task churn: CloudWatch Logs"] == pytest.approx(100 * 1210 / 1024**3 * 0.50)
    writes = got["DynamoDB writes (on-demand)"] - base["DynamoDB writes (on-demand)"]
    reads = got["DynamoDB reads (on-demand)"] - base["DynamoDB reads (on-demand)"]
    assert writes == pytest.approx(700 * 0.625e-6)
    assert reads == pytest.approx(300 * 0.125e-6)
    assert "Task churn: Lambda requests" not in base
    per = estimate(churn).per_instance
    assert per["task_churn"] == pytest.approx(
        50 * 0.20e-6 + 50 * 0.015 * 0.5 * 0.0000133334 + 70 * 0.625e-6 + 30 * 0.125e-6
    )


def test_one_instance_at_the_defaults_costs_at_most_half_of_cloud_map() -> None:
    """The goal the defaults were chosen for: every variable cost of one instance, logs and
    task churn included, on demand through the function URL, at most $0.05 a month."""
    defaults = CostInputs(
        instances=1,
        heartbeat_seconds=DEFAULT_HEARTBEAT_SECONDS,
        requests_per_second=0,
        lane="url",
    )

    per = estimate(defaults).per_instance

    assert per["total"] <= 0.05
    assert per["total"] <= per["cloud_map"] / 2
    assert per["heartbeat_logs"] == 0


def test_api_gateway_volume_bands_each_bill_at_their_own_rate() -> None:
    tiers = (Tier(10, 2.0), Tier(30, 1.0), Tier(None, 0.5))

    assert tiered(5, tiers) == 10
    assert tiered(40, tiers) == 10 * 2.0 + 20 * 1.0 + 10 * 0.5
    assert tiered(400e6, PRICES.api_gateway_rest_tiers) == pytest.approx(
        333e6 * 3.50e-6 + 67e6 * 2.80e-6
    )


def test_heartbeats_alone_at_15_s_through_the_function_url_cost_what_the_model_says() -> None:
    on_demand = CostInputs(
        instances=1,
        heartbeat_seconds=15,
        requests_per_second=0,
        lane="url",
        architecture="x86_64",
        heartbeat_ms=10,
    )
    provisioned = CostInputs(**{**vars(on_demand), "billing": "provisioned"})

    beat = estimate(on_demand).per_instance_heartbeat
    held = estimate(provisioned).per_instance_heartbeat

    # 175,200 heartbeats: $0.03504 of requests, 876 GB-s, 175,200 write units
    assert beat["api_gateway"] == 0
    assert beat["total_without_logs"] == pytest.approx(0.03504 + 0.0146 + 0.1095, abs=1e-4)
    assert held["dynamodb"] == pytest.approx(1 / 15 / 0.7 * 730 * 0.00065)
    assert held["total_without_logs"] == pytest.approx(0.03504 + 0.0146 + 0.04519, abs=1e-4)


def test_json_output_has_lines_totals_cloud_map_and_cited_prices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, *SMALL_MESH, "--lane", "url", "--json")

    document = json.loads(out)
    assert code == 0
    assert document["inputs"]["lane"] == "url"
    assert document["lines"][0]["item"] == "Lambda requests"
    assert document["total"] == pytest.approx(sum(line["monthly"] for line in document["lines"]))
    assert set(document["cloud_map"]) == {"lines", "registry_only", "with_discovery"}
    assert document["cloud_map"]["registry_only"] == pytest.approx(1.0)
    assert {"total", "total_without_logs", "logs"} <= set(document["per_instance_heartbeat"])
    assert all(price["source"].startswith("https://") for price in document["prices"].values())
    assert document["assumptions"]


def test_the_default_output_is_a_table_with_a_total_and_cloud_map(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, *SMALL_MESH)

    assert code == 0
    assert "API Gateway (REST)" in out
    assert re.search(r"^total\s+\$[\d,]+\.\d\d$", out, re.MULTILINE)
    assert "Cloud Map instances" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--instances", "-1"], "--instances must be at least 0"),
        (["--heartbeat", "0.1"], "--heartbeat must be between 0.2 and 300"),
        (["--heartbeat", "301"], "--heartbeat must be between 0.2 and 300"),
        (["--requests-per-second", "-5"], "--requests-per-second must be at least 0"),
        (["--lane", "http"], "--lane must be one of rest, url"),
        (["--billing", "reserved"], "--billing must be one of on-demand, provisioned"),
        (["--architecture", "riscv"], "--architecture must be one of x86_64, arm64"),
        (["--availability-zones", "0"], "--availability-zones must be between 1 and 6"),
        (["--target-utilization", "1"], "--target-utilization must be between 0.2 and 0.9"),
        (["--outbound-sidecars", "-1"], "--outbound-sidecars must be at least 0"),
        (["--called-services", "0"], "--called-services must be at least 1"),
        (["--refresh-seconds", "0.5"], "--refresh-seconds must be between 1 and 300"),
        (["--refresh-seconds", "301"], "--refresh-seconds must be between 1 and 300"),
        (["--poll-ms", "-1"], "--poll-ms must be between 0 and 900000"),
        (["--poll-log-bytes", "-1"], "--poll-log-bytes must be at least 0"),
        (["--mesh-sidecars", "-1"], "--mesh-sidecars must be at least 0"),
        (["--cert-seconds", "59"], "--cert-seconds must be between 60 and 604800"),
        (["--cert-seconds", "604801"], "--cert-seconds must be between 60 and 604800"),
        (["--cert-ms", "-1"], "--cert-ms must be between 0 and 900000"),
        (["--cert-log-bytes", "-1"], "--cert-log-bytes must be at least 0"),
        (
            ["--outbound-sidecars", "5", "--east-west-rps", "-1"],
            "--east-west-rps must be at least 0",
        ),
        (["--called-services", "2"], "--called-services must be at most --services (1), not 2"),
        (["--east-west-rps", "10"], "--east-west-rps needs --outbound-sidecars above 0"),
        (["--global-limit-rps", "6"], "--global-limit-rps must be between 0 and 5, not 6"),
        (["--global-limit-writes", "3"], "--global-limit-writes must be between 1 and 2"),
        (["--eureka-clients", "-1"], "--eureka-clients must be at least 0"),
        (["--eureka-renew-seconds", "0.5"], "--eureka-renew-seconds must be between 1 and 300"),
        (["--eureka-fetch-seconds", "3601"], "--eureka-fetch-seconds must be between 1 and 3600"),
        (["--eureka-full-share", "1.5"], "--eureka-full-share must be between 0 and 1"),
        (["--eureka-item-bytes", "0"], "--eureka-item-bytes must be between 1 and 409600"),
        (["--eureka-lane", "url"], "--eureka-lane must be one of clients, sidecars"),
        (["--eureka-servers", "0"], "--eureka-servers must be at least 1"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    base = {"--instances": "10", "--heartbeat": "15", "--requests-per-second": "5"}
    base.update(zip(argv[::2], argv[1::2], strict=True))

    code, out, err = run(capsys, *[item for pair in base.items() for item in pair])

    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert message in err


def test_inputs_refuse_a_heartbeat_the_sidecar_would_refuse() -> None:
    with pytest.raises(CostInputError, match="heartbeat"):
        CostInputs(instances=1, heartbeat_seconds=0, requests_per_second=0)


def test_the_outbound_port_off_changes_no_line_whatever_its_other_inputs() -> None:
    three = replace(SMALL, services=3)
    idle = replace(three, called_services=3, refresh_seconds=1, poll_ms=500)

    assert estimate(idle).lines == estimate(three).lines
    assert estimate(SMALL).total == pytest.approx(28.026121, abs=1e-5)
    assert estimate(SMALL).east_west == ()
    assert estimate(SMALL).polls_monthly == 0
    assert not any(line.item.startswith("Outbound") for line in estimate(SMALL).lines)


def test_the_default_table_does_not_mention_the_outbound_port(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out, _ = run(capsys, *SMALL_MESH)

    assert "utbound" not in out
    assert "east-west" not in out.lower()


def test_polls_are_sidecars_times_called_services_over_the_refresh_period() -> None:
    assert polls_a_month(POLLING) == pytest.approx(POLLS)  # 100 x 3 / 5 s x 2,628,000 s
    assert polls_a_month(replace(POLLING, refresh_seconds=1)) == pytest.approx(5 * POLLS)
    assert polls_a_month(replace(POLLING, called_services=1)) == pytest.approx(POLLS / 3)


def test_each_poll_is_a_lambda_invocation_and_an_api_gateway_call_on_the_rest_lane() -> None:
    got = lines(POLLING)

    assert got["Outbound polls: API Gateway (REST)"] == pytest.approx(551.88)  # 157.68 M x 3.50
    assert got["Outbound polls: Lambda requests"] == pytest.approx(31.536)  # 157.68 M x 0.20
    # 157.68 M x 15 ms x 0.5 GB = 1,182,600 GB-s at the x86_64 rate
    assert got["Outbound polls: Lambda duration"] == pytest.approx(1_182_600 * 0.0000166667)
    assert got["Outbound polls: CloudWatch Logs"] == 0  # SMALL leaves logs out
    # the mesh's own lines are those of the mesh without the port, DynamoDB reads aside
    assert got["API Gateway (REST)"] == pytest.approx(11.0376)
    assert got["Lambda requests"] == pytest.approx(0.63072)


def test_poll_logs_are_billed_at_their_own_size_per_poll() -> None:
    got = lines(replace(POLLING, poll_log_bytes=1024, log_bytes_per_invocation=4096))

    assert got["Outbound polls: CloudWatch Logs"] == pytest.approx(POLLS * 1024 / 1024**3 * 0.50)


def test_on_the_function_url_lane_polls_cost_no_api_gateway_and_the_same_lambda() -> None:
    rest, url = lines(POLLING), lines(replace(POLLING, lane="url"))

    assert "Outbound polls: API Gateway (REST)" not in url
    assert url["Outbound polls: Lambda requests"] == rest["Outbound polls: Lambda requests"]
    assert url["Outbound polls: Lambda duration"] == rest["Outbound polls: Lambda duration"]
    assert estimate(POLLING).total - estimate(replace(POLLING, lane="url")).total == (
        pytest.approx(11.0376 + 551.88)
    )


def test_polls_are_charged_at_the_api_gateway_band_they_push_the_month_into() -> None:
    # 500 sidecars x 3 / 5 s = 788.4 M polls on top of 3,153,600 calls: 333 M at $3.50 a
    # million, 458,553,600 at $2.80, less the mesh's own 3,153,600 at $3.50
    got = lines(replace(POLLING, outbound_sidecars=500))

    assert got["Outbound polls: API Gateway (REST)"] == pytest.approx(
        1165.5 + 458_553_600 * 2.80e-6 - 11.0376
    )


def test_polls_share_the_cached_list_reads_and_keep_lambdas_warm() -> None:
    breakdown = estimate(POLLING)
    reads = lines(POLLING)["DynamoDB reads (on-demand)"]

    # 1 req/s x 30 ms + 60 polls/s x 15 ms = 0.93 busy: one warm Lambda reading 3 services
    # once a second = 3 reads/s, where routed requests alone read 1/s (no more than they are)
    assert warm_lambdas(POLLING) == 1
    assert reads == pytest.approx(3 * 2_628_000 * 0.125e-6)
    assert breakdown.polls_dynamodb_reads == pytest.approx(2 * 2_628_000 * 0.125e-6)
    assert breakdown.polls_monthly == pytest.approx(551.88 + 31.536 + 19.71 + 0.657, abs=1e-3)
    # 200 sidecars at 1 s: 600 polls/s x 15 ms + 0.03 = 9.03 busy: 10 warm Lambdas
    assert warm_lambdas(replace(POLLING, outbound_sidecars=200, refresh_seconds=1)) == 10
    # no cache: every poll and request reads, 61 a second
    uncached = lines(replace(POLLING, cache_seconds=0))
    assert uncached["DynamoDB reads (on-demand)"] == pytest.approx(61 * 2_628_000 * 0.125e-6)


def test_east_west_calls_are_priced_through_the_gateway_beside_the_total_not_in_it() -> None:
    direct = replace(POLLING, east_west_rps=100)
    breakdown = estimate(direct)
    got = {line.item: line.monthly for line in breakdown.east_west}

    # 100 req/s = 262.8 M calls a month, 30 ms each (the routed duration)
    assert got["Through the gateway: API Gateway (REST)"] == pytest.approx(919.80)
    assert got["Through the gateway: Lambda requests"] == pytest.approx(52.56)
    assert got["Through the gateway: Lambda duration"] == pytest.approx(3_942_000 * 0.0000166667)
    # 101 req/s x 30 ms = 3.03: 4 warm Lambdas x 3 services = 12 reads/s instead of 1
    assert got["Through the gateway: DynamoDB reads (on-demand)"] == pytest.approx(
        11 * 2_628_000 * 0.125e-6
    )
    assert got["Through the gateway: CloudWatch Logs"] == 0
    assert breakdown.east_west_through_gateway == pytest.approx(1041.6736, abs=1e-3)
    assert breakdown.east_west_saving == pytest.approx(1041.6736 - 603.783, abs=1e-3)
    assert breakdown.total == pytest.approx(estimate(POLLING).total)


def test_light_east_west_traffic_can_cost_less_than_the_polls_replacing_it() -> None:
    breakdown = estimate(replace(POLLING, east_west_rps=10))

    assert breakdown.east_west_through_gateway < breakdown.polls_monthly
    assert breakdown.east_west_saving < 0


def test_json_and_table_carry_the_poll_lines_and_the_east_west_comparison(
    capsys: pytest.CaptureFixture[str],
) -> None:
    outbound = ("--services", "3", "--outbound-sidecars", "100", "--called-services", "3")
    argv = (*SMALL_MESH, *outbound, "--east-west-rps", "100")

    code, out, _ = run(capsys, *argv, "--json")
    _, table, _ = run(capsys, *argv)

    document = json.loads(out)
    items = [line["item"] for line in document["lines"]]
    assert code == 0
    assert "Outbound polls: API Gateway (REST)" in items
    assert "Outbound polls: Lambda requests" in items
    assert document["total"] == pytest.approx(sum(line["monthly"] for line in document["lines"]))
    assert document["outbound"]["polls_per_month"] == pytest.approx(POLLS)
    assert document["outbound"]["polls_per_second"] == pytest.approx(60)
    assert document["inputs"]["refresh_seconds"] == 5
    comparison = document["east_west"]
    assert comparison["in_total"] is False
    assert [line["item"].removeprefix("Through the gateway: ") for line in comparison["lines"]] == [
        "API Gateway (REST)",
        "Lambda requests",
        "Lambda duration",
        "DynamoDB reads (on-demand)",
        "CloudWatch Logs",
    ]
    assert comparison["through_gateway"] == pytest.approx(
        sum(line["monthly"] for line in comparison["lines"])
    )
    assert comparison["saving"] == pytest.approx(
        comparison["through_gateway"] - document["outbound"]["monthly"]
    )
    assert "Outbound polls: Lambda duration" in table
    assert re.search(r"^East-west total .* \$[\d,.]+ / \$[\d,.]+ / \$[\d,.]+$", table, re.M)


def test_json_without_the_outbound_port_has_empty_outbound_sections(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out, _ = run(capsys, *SMALL_MESH, "--json")

    document = json.loads(out)
    assert document["outbound"]["monthly"] == 0
    assert document["east_west"]["lines"] == []


def test_a_global_rate_limit_costs_a_write_per_counter_per_request_and_its_wait() -> None:
    """1 of SMALL's requests a second under a service and a consumer limit: 2 writes a
    request, 5,256,000 write units a month; 5 ms each, 13,140 s at 512 MB = 6,570 GB-s."""
    limited = replace(SMALL, global_limit_rps=1, global_limit_writes=2)

    got = lines(limited)

    assert got["Global rate limits: DynamoDB writes (on-demand)"] == pytest.approx(
        5_256_000 * 0.625e-6
    )
    assert got["Global rate limits: Lambda duration"] == pytest.approx(6_570 * 0.0000166667)
    added = estimate(limited).total - estimate(SMALL).total
    assert added == pytest.approx(5_256_000 * 0.625e-6 + 6_570 * 0.0000166667)


def test_provisioned_global_limit_writes_are_sized_like_the_heartbeats() -> None:
    limited = replace(SMALL, billing="provisioned", requests_per_second=2, global_limit_rps=1.4)

    got = lines(limited)

    # 1.4 writes a second at 70 % utilisation: 2 WCU, all month
    assert got["Global rate limits: DynamoDB writes (provisioned)"] == pytest.approx(
        2 * 730 * PRICES.dynamodb_wcu_hour.amount
    )


def test_no_global_limit_adds_no_line() -> None:
    assert not [item for item in lines(SMALL) if item.startswith("Global")]


# SMALL's heartbeats, 525,600 a month, at $3.50 a million: what API Gateway bills for them on
# the rest lane and not on the mixed one.
HEARTBEATS_ON_REST = 525_600 * 3.50e-6


def test_the_mixed_lane_bills_api_gateway_for_the_routed_requests_alone() -> None:
    mixed, rest = lines(replace(SMALL, lane="mixed")), lines(SMALL)

    assert mixed["API Gateway (REST)"] == pytest.approx(2_628_000 * 3.50e-6)  # 9.198
    assert {k: v for k, v in mixed.items() if k != "API Gateway (REST)"} == {
        k: v for k, v in rest.items() if k != "API Gateway (REST)"
    }
    assert estimate(SMALL).total - estimate(replace(SMALL, lane="mixed")).total == (
        pytest.approx(HEARTBEATS_ON_REST)
    )


def test_on_the_mixed_lane_polls_go_with_the_heartbeats_to_the_function_url() -> None:
    mixed = estimate(replace(POLLING, lane="mixed"))
    url = estimate(replace(POLLING, lane="url"))
    got = {line.item: line.monthly for line in mixed.lines}

    assert "Outbound polls: API Gateway (REST)" not in got
    assert got["API Gateway (REST)"] == pytest.approx(2_628_000 * 3.50e-6)
    assert mixed.polls_monthly == pytest.approx(url.polls_monthly)
    assert mixed.total == pytest.approx(url.total + 2_628_000 * 3.50e-6)


def test_on_the_mixed_lane_east_west_calls_are_compared_through_the_rest_api() -> None:
    mixed = estimate(replace(POLLING, lane="mixed", east_west_rps=100))
    rest = estimate(replace(POLLING, east_west_rps=100))
    url = estimate(replace(POLLING, lane="url", east_west_rps=100))
    got = {line.item: line.monthly for line in mixed.east_west}

    # 262.8 M calls on top of the 2.628 M routed requests: all in API Gateway's first band
    assert got["Through the gateway: API Gateway (REST)"] == pytest.approx(919.80)
    assert mixed.east_west_through_gateway == pytest.approx(rest.east_west_through_gateway)
    assert mixed.east_west_saving == pytest.approx(url.east_west_saving + 919.80, abs=1e-6)


def test_heartbeats_alone_on_the_mixed_lane_cost_what_they_cost_on_the_function_url() -> None:
    mixed = estimate(replace(SMALL, lane="mixed")).per_instance_heartbeat
    url = estimate(replace(SMALL, lane="url")).per_instance_heartbeat
    rest = estimate(SMALL).per_instance_heartbeat

    assert mixed == url
    assert mixed["api_gateway"] == 0
    # one instance's 262,800 heartbeats a month at $3.50 a million
    assert rest["total"] - mixed["total"] == pytest.approx(262_800 * 3.50e-6)


def test_json_and_table_say_which_lane_each_kind_of_call_takes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, *SMALL_MESH, "--lane", "mixed", "--json")
    _, table, _ = run(capsys, *SMALL_MESH, "--lane", "mixed")
    _, url, _ = run(capsys, *SMALL_MESH, "--lane", "url", "--json")

    document = json.loads(out)
    assert code == 0
    assert document["inputs"]["lane"] == "mixed"
    assert document["lanes"] == {"heartbeats_and_polls": "url", "routed_and_east_west": "rest"}
    assert document["lines"][0]["item"] == "API Gateway (REST)"
    assert document["lines"][0]["monthly"] == pytest.approx(13_140_000 * 3.50e-6)
    beat = document["per_instance_heartbeat"]
    assert beat == json.loads(url)["per_instance_heartbeat"]
    assert "lane mixed (routed requests on rest, heartbeats and polls on url)" in table
    assert re.search(r"^API Gateway \(REST\) +13\.14 M routed requests .* \$45\.99$", table, re.M)
    assert f"per instance-month: ${beat['total_without_logs']:.4f}" in table


def test_the_markdown_table_has_every_line_the_total_and_the_comparisons() -> None:
    breakdown = estimate(replace(POLLING, lane="mixed", east_west_rps=100))

    rows = render_markdown(breakdown).splitlines()

    assert rows[:2] == ["| Item | Basis | Per month |", "| --- | --- | ---: |"]
    count = len(breakdown.lines)
    for line, row in zip(breakdown.lines, rows[2 : 2 + count], strict=True):
        assert row == f"| {line.item} | {line.basis} | ${line.monthly:,.2f} |"
    assert rows[2 + count] == f"| **Total** | | **${breakdown.total:,.2f}** |"
    assert rows[-4].startswith("| Cloud Map, same instances (not in the total) |")
    assert rows[-3].startswith("| Heartbeats alone, per instance-month (not in the total) |")
    assert "through the function URL" in rows[-3]
    assert rows[-2].startswith("| One instance, every variable cost (not in the total) |")
    assert rows[-1].startswith("| 100 east-west req/s (not in the total) |")
    assert len(rows) == 2 + count + 1 + 4
    assert all(len(re.findall(r"(?<!\\)\|", row)) == 4 for row in rows)


def test_a_pipe_in_a_markdown_cell_is_escaped() -> None:
    breakdown = replace(estimate(SMALL), lines=(Line("a | b", "c|d", 1.0),))

    assert "| a \\| b | c\\|d | $1.00 |" in render_markdown(breakdown).splitlines()


def test_json_and_markdown_cannot_both_be_asked_for(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        run(capsys, *SMALL_MESH, "--json", "--markdown")

    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def documented_table(path: Path, heading: str) -> tuple[list[str], str]:
    """The `lambdamesh cost` command a section of the docs states, and the table under it."""
    text = path.read_text(encoding="utf-8")
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"^```\w*\n(lambdamesh cost .*?)\n```$", section, re.S | re.M)
    assert found, f"{path.name}: no lambdamesh cost command under {heading!r}"
    argv = shlex.split(found.group(1).replace("\\\n", " "))[2:]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    return argv, table


@pytest.mark.parametrize(
    ("document", "heading"),
    [
        ("deploy.md", "## What it costs"),
        ("cost.md", "## The recommended deployment: the mixed lane"),
        ("cost.md", "## A small mesh"),
        ("cost.md", "## A large mesh"),
        ("cost.md", "## Sidecar outbound port"),
        ("cost.md", "## Eureka clients"),
        ("cost.md", "## Mesh certificates"),
    ],
)
def test_the_cost_tables_in_the_docs_are_the_commands_output(
    capsys: pytest.CaptureFixture[str], document: str, heading: str
) -> None:
    argv, table = documented_table(DOCS / document, heading)

    code, out, _ = run(capsys, *argv)

    assert code == 0
    assert "--markdown" in argv
    assert out.rstrip("\n") == table


def test_the_recommended_deployments_tables_are_priced_on_the_mixed_lane() -> None:
    for document, heading in (
        ("deploy.md", "## What it costs"),
        ("cost.md", "## The recommended deployment: the mixed lane"),
        ("cost.md", "## A small mesh"),
    ):
        argv, _ = documented_table(DOCS / document, heading)
        assert argv[argv.index("--lane") + 1] == "mixed", (document, heading)


def test_the_deploy_guides_mesh_heartbeats_at_the_sidecars_default() -> None:
    argv, _ = documented_table(DOCS / "deploy.md", "## What it costs")

    assert float(argv[argv.index("--heartbeat") + 1]) == DEFAULT_HEARTBEAT_SECONDS


def flag_default(name: str) -> object:
    """The value a flag takes when it is not given: the field's default, else the flag's."""
    field_ = next(each for each in fields(CostInputs) if each.name == name)
    spec = dict(declared())[field_]
    return spec.default if field_.default is MISSING else field_.default


def test_every_input_is_a_flag_whose_help_states_its_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The flags are read from the declaration: no field of CostInputs can lack one."""
    monkeypatch.setenv("COLUMNS", "1000")
    parser = argparse.ArgumentParser(prog="lambdamesh")
    commands = parser.add_subparsers(dest="command")
    add_cost_command(commands)

    args = parser.parse_args(["cost", "--instances", "1", "--requests-per-second", "0"])
    text = " ".join(commands.choices["cost"].format_help().split())

    for each in fields(CostInputs):
        spec = dict(declared())[each]
        assert spec.flag.startswith("--") and spec.help, each.name
        assert hasattr(args, each.name), each.name
        if each.name in {"instances", "requests_per_second"}:
            assert f"{spec.flag} {each.name.upper()} {spec.help}" in text
        else:
            assert getattr(args, each.name) == flag_default(each.name)
            assert f"{spec.help} (default: {flag_default(each.name)})" in text, each.name


def test_the_docs_assumptions_name_declared_flags_at_their_defaults() -> None:
    text = (DOCS / "cost.md").read_text(encoding="utf-8")
    section = text.split("\n## Assumptions (each one a flag)\n", 1)[1].split("\n## ", 1)[0]
    by_flag = {spec.flag: each.name for each, spec in declared()}
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]

    assert rows
    for row in rows:
        _, default, flag = (cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:4])
        named = re.search(r"`(--[a-z-]+)", flag)
        assert named, row
        name = by_flag[named.group(1)]
        number = re.match(r"([\d.]+)( %)?", default)
        if number:
            scale = 100 if number.group(2) else 1
            assert float(number.group(1)) / scale == pytest.approx(flag_default(name)), row
        else:
            assert default.split()[0] == flag_default(name), row


# 10 Eureka clients over 2 services, at Eureka's 30 s, all fetching deltas, no cache, no task
# churn, no sidecar: 876,000 renews and 876,000 deltas a month (10 / 30 s x 2,628,000 s).
EUREKA = CostInputs(
    instances=0,
    heartbeat_seconds=60,
    requests_per_second=0,
    services=2,
    eureka_clients=10,
    cache_seconds=0,
    task_lifetime_hours=0,
)
RENEWS = 876_000


def test_eureka_clients_match_the_hand_computed_figures() -> None:
    got, none = lines(EUREKA), lines(replace(EUREKA, eureka_clients=0))

    # 1,752,000 calls, each through API Gateway (the rest lane) and a Lambda invocation
    assert got["Eureka clients: API Gateway (REST)"] == pytest.approx(1_752_000 * 3.50e-6)
    assert got["Eureka clients: Lambda requests"] == pytest.approx(1_752_000 * 0.20e-6)
    # a renew: 15 ms (a heartbeat's); a delta: 3 ms, 10 instances x 0.06 ms, and 4 Queries
    # (the catalog, 2 services, the journal) x 14 ms = 59.6 ms; at 512 MB
    gb_seconds = (RENEWS * 0.015 + RENEWS * 0.0596) * 0.5
    assert got["Eureka clients: Lambda duration"] == pytest.approx(gb_seconds * 0.0000133334)
    # a renew writes its 600 B item: one unit; a delta's 4 Queries read under 4 KB each,
    # eventually consistent: half a unit each
    writes = got["DynamoDB writes (on-demand)"] - none["DynamoDB writes (on-demand)"]
    reads = got["DynamoDB reads (on-demand)"] - none["DynamoDB reads (on-demand)"]
    assert writes == pytest.approx(RENEWS * 0.625e-6)
    assert reads == pytest.approx(RENEWS * 4 * 0.5 * 0.125e-6)
    # renews log nothing at INFO; a delta its 200 B EMF document
    assert got["Eureka clients: CloudWatch Logs"] == pytest.approx(RENEWS * 200 / 1024**3 * 0.50)
    breakdown = estimate(EUREKA)
    assert breakdown.eureka_dynamodb == pytest.approx(writes + reads)
    assert breakdown.total - estimate(replace(EUREKA, eureka_clients=0)).total == (
        pytest.approx(breakdown.eureka_monthly)
    )


def test_eureka_clients_at_zero_change_no_line_whatever_their_other_inputs() -> None:
    idle = replace(
        SMALL,
        eureka_renew_seconds=1,
        eureka_fetch_seconds=1,
        eureka_full_share=1,
        eureka_item_bytes=300_000,
        eureka_dynamodb_ms=500,
        eureka_lane="sidecars",
        eureka_servers=9,
    )

    breakdown = estimate(idle)

    assert breakdown.lines == estimate(SMALL).lines
    assert breakdown.total == pytest.approx(28.026121, abs=1e-5)
    assert breakdown.eureka_monthly == 0
    assert breakdown.per_eureka_client == {}
    assert breakdown.eureka_servers == ()
    assert not any(line.item.startswith("Eureka") for line in breakdown.lines)


def test_the_default_outputs_do_not_mention_eureka(capsys: pytest.CaptureFixture[str]) -> None:
    _, table, _ = run(capsys, *SMALL_MESH)
    _, out, _ = run(capsys, *SMALL_MESH, "--json")
    _, markdown, _ = run(capsys, *SMALL_MESH, "--markdown")

    document = json.loads(out)
    assert "Eureka" not in table
    assert "Eureka" not in markdown
    assert "eureka" not in document
    assert not any("Eureka" in text for text in document["assumptions"])


def test_a_hundred_eureka_clients_cost_more_than_none_in_every_line_they_use() -> None:
    hundred = replace(EUREKA, eureka_clients=100, services=20, cache_seconds=1)
    none = replace(hundred, eureka_clients=0)

    got, base = lines(hundred), lines(none)

    assert estimate(hundred).total > estimate(none).total
    for item in ("DynamoDB writes (on-demand)", "DynamoDB reads (on-demand)"):
        assert got[item] > base[item], item
    assert {item for item in got if item.startswith("Eureka clients: ")} == {
        "Eureka clients: API Gateway (REST)",
        "Eureka clients: Lambda requests",
        "Eureka clients: Lambda duration",
        "Eureka clients: CloudWatch Logs",
    }
    assert all(got[item] > 0 for item in got if item.startswith("Eureka clients: "))


def test_a_renew_writes_a_unit_per_kilobyte_of_the_eureka_item() -> None:
    def renew_writes(item_bytes: float) -> float:
        quiet = replace(EUREKA, eureka_fetch_seconds=3600, eureka_item_bytes=item_bytes)
        return eureka.write_units_per_second(quiet) * 2_628_000

    assert renew_writes(600) == pytest.approx(RENEWS)
    assert renew_writes(1024) == pytest.approx(RENEWS)
    assert renew_writes(1025) == pytest.approx(2 * RENEWS)
    assert eureka.write_units_per_second(replace(EUREKA, eureka_renew_seconds=60)) == (
        pytest.approx(eureka.write_units_per_second(EUREKA) / 2)
    )


def test_a_delta_reads_one_query_more_than_a_full_fetch_the_change_journal() -> None:
    """The delta is built from every service's view and the journal besides: it reads more
    than a full fetch, and saves response bytes, not reads."""
    deltas, full = EUREKA, replace(EUREKA, eureka_full_share=1)

    per_delta = eureka.read_units_per_second(deltas) / eureka.fetches_per_second(deltas)
    per_full = eureka.read_units_per_second(full) / eureka.fetches_per_second(full)

    assert per_full == pytest.approx(1.5)  # the catalog and 2 services, half a unit each
    assert per_delta == pytest.approx(per_full + 0.5)
    assert eureka.month(full).response_bytes > 10 * eureka.month(deltas).response_bytes
    assert lines(full)["DynamoDB reads (on-demand)"] < lines(deltas)["DynamoDB reads (on-demand)"]


def test_the_full_share_decides_how_many_fetches_read_the_whole_registry() -> None:
    half = eureka.month(replace(EUREKA, eureka_full_share=0.5))

    assert half.full_fetches == pytest.approx(RENEWS / 2)
    assert half.deltas == pytest.approx(RENEWS / 2)
    # a full fetch renders every instance (0.31 ms each) and has no journal to Query
    assert eureka.full_ms(EUREKA) - eureka.delta_ms(EUREKA) == pytest.approx(
        10 * (0.31 - 0.06) - 14
    )


def test_a_longer_fetch_interval_lowers_the_fetches_cost_in_proportion() -> None:
    every_30 = estimate(EUREKA).per_eureka_client
    every_60 = estimate(replace(EUREKA, eureka_fetch_seconds=60)).per_eureka_client

    assert every_60["fetches"] == pytest.approx(every_30["fetches"] / 2)
    assert every_60["renews"] == pytest.approx(every_30["renews"])
    assert every_60["logs"] == pytest.approx(every_30["logs"] / 2)  # renews log nothing


def test_a_longer_renew_interval_lowers_the_renews_cost_in_proportion() -> None:
    every_30 = estimate(EUREKA).per_eureka_client
    every_90 = estimate(replace(EUREKA, eureka_renew_seconds=90)).per_eureka_client

    assert every_90["renews"] == pytest.approx(every_30["renews"] / 3)
    assert every_90["fetches"] == pytest.approx(every_30["fetches"])


def test_the_cache_absorbs_no_service_query_while_fetches_are_fewer_than_environments() -> None:
    # 10 clients at 30 s over 20 services: a third of a fetch a second, one environment.
    few = replace(EUREKA, services=20, cache_seconds=1)
    # 100 clients: 3.33 fetches a second, each 342 ms uncached (3 + 100 x 0.31 + 22 x 14
    # ms): 1.14 busy + 3.33 renews x 15 ms = 1.19, so 2 environments, each reading the 20
    # services once a second at most: 40 Queries a second of the 66.7 the fetches ask.
    many = replace(few, eureka_clients=100)

    assert eureka.view_queries_per_second(few) == pytest.approx(10 / 30 * 20)
    assert eureka.environments(many) == 2
    assert eureka.view_queries_per_second(many) == pytest.approx(40)
    assert eureka.view_queries_per_second(replace(many, cache_seconds=0)) == (
        pytest.approx(100 / 30 * 20)
    )
    assert eureka.views_per_fetch(many) == pytest.approx(40 / (100 / 30))


def test_each_replaced_client_registers_fetches_the_registry_goes_down_and_cancels() -> None:
    # 10 clients replaced every 73 h: 100 a month, each 3 calls and a full fetch
    churned = replace(EUREKA, task_lifetime_hours=73)

    used, still = eureka.month(churned), eureka.month(EUREKA)

    assert used.churn_calls == pytest.approx(300)
    assert used.full_fetches - still.full_fetches == pytest.approx(100)
    # two registrations (item, catalog, journal) and the cancel (item, a DELETED change of 2)
    assert eureka.churn_write_units(churned) == 9
    assert eureka.churn_read_units(churned) == 2
    assert used.log_bytes - still.log_bytes == pytest.approx(100 * (1411 + 200))


def test_one_eureka_client_is_the_clients_share_of_what_they_add() -> None:
    hundred = replace(EUREKA, eureka_clients=100, services=20, cache_seconds=1)

    breakdown = estimate(hundred)
    one = breakdown.per_eureka_client

    assert one["total"] == pytest.approx(breakdown.eureka_monthly / 100)
    assert one["total"] == pytest.approx(
        one["renews"] + one["fetches"] + one["replacements"] + one["logs"]
    )
    held = estimate(replace(hundred, billing="provisioned")).per_eureka_client
    # provisioned: a client's exact share of a write unit a second at the 70 % target, in
    # place of its 87,600 renews' write requests on demand
    renew_share = 1 / 30 / 0.7 * 730 * PRICES.dynamodb_wcu_hour.amount
    assert held["renews"] - one["renews"] == pytest.approx(renew_share - 87_600 * 0.625e-6)


def test_on_the_mixed_lane_eureka_clients_call_the_rest_api_unless_told_the_sidecars() -> None:
    mixed = replace(EUREKA, lane="mixed")

    rest, url = lines(mixed), lines(replace(mixed, eureka_lane="sidecars"))

    assert rest["Eureka clients: API Gateway (REST)"] == pytest.approx(1_752_000 * 3.50e-6)
    assert "Eureka clients: API Gateway (REST)" not in url
    assert eureka.lane(replace(EUREKA, lane="url")) == "url"
    assert estimate(mixed).per_eureka_client["renews"] - estimate(
        replace(mixed, eureka_lane="sidecars")
    ).per_eureka_client["renews"] == pytest.approx(RENEWS / 10 * 3.50e-6)


def test_eureka_servers_on_ec2_are_compared_not_added() -> None:
    breakdown = estimate(EUREKA)
    three = estimate(replace(EUREKA, eureka_servers=3))

    assert breakdown.eureka_servers_monthly == pytest.approx(2 * 730 * 0.0208)
    assert three.eureka_servers_monthly == pytest.approx(3 * 730 * 0.0208)
    assert three.total == pytest.approx(breakdown.total)
    assert PRICES.ec2_t3_small_hour.source.startswith("https://aws.amazon.com/ec2/")


def test_json_markdown_and_table_carry_the_eureka_clients(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = (*SMALL_MESH, "--services", "20", "--eureka-clients", "100")

    code, out, _ = run(capsys, *argv, "--json")
    _, table, _ = run(capsys, *argv)
    _, markdown, _ = run(capsys, *argv, "--markdown")

    document = json.loads(out)
    section = document["eureka"]
    assert code == 0
    assert section["clients"] == 100
    assert section["lane"] == "rest"
    assert section["renews_per_month"] == pytest.approx(8_760_000)
    assert section["per_client"]["total"] == pytest.approx(section["monthly"] / 100, abs=1e-5)
    assert section["servers"]["in_total"] is False
    assert section["servers"]["monthly"] == pytest.approx(30.368)
    assert document["total"] == pytest.approx(sum(line["monthly"] for line in document["lines"]))
    assert any("Eureka" in text for text in document["assumptions"])
    assert "Eureka clients: Lambda duration" in table
    assert re.search(r"^Eureka total .* \$[\d,.]+ / \$30\.37$", table, re.M)
    assert f"${section['per_client']['total']:.4f} per client-month" in table
    rows = markdown.splitlines()
    assert rows[-3].startswith("| 100 Eureka clients (in the total) |")
    assert rows[-2].startswith("| One Eureka client, every variable cost (not in the total) |")
    assert rows[-1].startswith("| Eureka servers on EC2 instead (not in the total) |")


def test_the_delta_window_is_the_one_the_eureka_api_reads() -> None:
    assert eureka.DELTA_WINDOW_SECONDS == DELTA_WINDOW_SECONDS
