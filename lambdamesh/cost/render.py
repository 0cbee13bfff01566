"""The breakdown as the command prints it: a text table, JSON for scripts, Markdown for docs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from lambdamesh.cost.inputs import CostInputs
from lambdamesh.cost.model import ASSUMPTIONS, Breakdown, Line
from lambdamesh.cost.traffic import (
    HOURS_PER_MONTH,
    client_lane,
    events_a_month,
    polls_a_month,
    polls_per_second,
    sidecar_lane,
    stops_a_month,
)
from lambdamesh.prices import PRICES, READ_ON, PriceTable

LANE_NAMES = {"rest": "REST API", "url": "function URL"}


def to_json(breakdown: Breakdown, prices: PriceTable = PRICES) -> dict[str, Any]:
    def line(entry: Line) -> dict[str, Any]:
        return {"item": entry.item, "basis": entry.basis, "monthly": round(entry.monthly, 6)}

    inputs = breakdown.inputs
    sidecars = inputs.outbound_sidecars
    return {
        "inputs": asdict(inputs),
        "region": prices.region,
        "hours_per_month": HOURS_PER_MONTH,
        "lanes": {
            "heartbeats_and_polls": sidecar_lane(inputs),
            "routed_and_east_west": client_lane(inputs),
        },
        "lines": [line(entry) for entry in breakdown.lines],
        "total": round(breakdown.total, 6),
        "cloud_map": {
            "lines": [line(entry) for entry in breakdown.cloud_map],
            "registry_only": round(breakdown.cloud_map_registry_only, 6),
            "with_discovery": round(breakdown.cloud_map_with_discovery, 6),
        },
        "per_instance_heartbeat": {
            key: round(value, 6) for key, value in breakdown.per_instance_heartbeat.items()
        },
        "per_instance": {key: round(value, 6) for key, value in breakdown.per_instance.items()},
        "task_churn": {
            "tasks_replaced_per_month": round(stops_a_month(inputs), 3),
            "stop_events_per_month": round(events_a_month(inputs), 3),
        },
        "outbound": {
            "polls_per_second": round(polls_per_second(inputs), 6),
            "polls_per_month": round(polls_a_month(inputs), 3),
            "dynamodb_reads_added": round(breakdown.polls_dynamodb_reads, 6),
            "monthly": round(breakdown.polls_monthly, 6),
            "per_sidecar": round(breakdown.polls_monthly / sidecars, 6) if sidecars else 0.0,
        },
        "east_west": {
            "lines": [line(entry) for entry in breakdown.east_west],
            "through_gateway": round(breakdown.east_west_through_gateway, 6),
            "saving": round(breakdown.east_west_saving, 6),
            "in_total": False,
        },
        "assumptions": list(ASSUMPTIONS),
        "prices": {
            name: {**asdict(price), "read_on": READ_ON} for name, price in prices.all().items()
        },
    }


def _rows(lines: tuple[Line, ...]) -> list[tuple[str, str, str]]:
    return [(entry.item, entry.basis, f"${entry.monthly:,.2f}") for entry in lines]


def _signed(amount: float) -> str:
    return f"-${-amount:,.2f}" if amount < 0 else f"${amount:,.2f}"


def _lane_text(inputs: CostInputs) -> str:
    if inputs.lane != "mixed":
        return f"lane {inputs.lane}"
    return "lane mixed (routed requests on rest, heartbeats and polls on url)"


def render(breakdown: Breakdown) -> str:
    inputs = breakdown.inputs
    rows = [
        ("item", "basis", "per month"),
        *_rows(breakdown.lines),
        ("total", "", f"${breakdown.total:,.2f}"),
        ("", "", ""),
        ("Cloud Map, same instances", "(a registry only: it does no routing)", ""),
        *_rows(breakdown.cloud_map),
        (
            "Cloud Map total",
            "registry only / with discovery calls",
            f"${breakdown.cloud_map_registry_only:,.2f} / "
            f"${breakdown.cloud_map_with_discovery:,.2f}",
        ),
    ]
    if breakdown.east_west:
        rows += [
            ("", "", ""),
            (
                f"{inputs.east_west_rps:g} east-west req/s",
                "through the gateway instead (not in the total)",
                "",
            ),
            *_rows(breakdown.east_west),
            (
                "East-west total",
                "through the gateway / the outbound port's polls / saving",
                f"${breakdown.east_west_through_gateway:,.2f} / "
                f"${breakdown.polls_monthly:,.2f} / {_signed(breakdown.east_west_saving)}",
            ),
        ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    table = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}".rstrip() for a, b, c in rows]
    beat = breakdown.per_instance_heartbeat
    header = (
        f"{inputs.instances} instances, heartbeat {inputs.heartbeat_seconds:g} s, "
        f"{inputs.requests_per_second:g} routed req/s, {_lane_text(inputs)}, DynamoDB "
        f"{inputs.billing}, Lambda {inputs.memory_mb} MB {inputs.architecture}; "
        f"{PRICES.region} list prices read {READ_ON} (lambdamesh/prices.py)"
    )
    sidecars = inputs.outbound_sidecars
    if sidecars:
        header += (
            f"\noutbound port: {sidecars} sidecars x {inputs.called_services} called "
            f"service(s), refresh {inputs.refresh_seconds:g} s = "
            f"{polls_per_second(inputs):,.2f} polls/s; "
            f"{inputs.east_west_rps:g} east-west req/s task to task"
        )
    one = breakdown.per_instance
    footer = (
        f"heartbeats alone, per instance-month: ${beat['total_without_logs']:.4f} "
        f"(+ ${beat['logs']:.4f} of logs); Cloud Map: "
        f"${PRICES.cloud_map_instance_month.amount:.4f}"
    )
    whole = (
        f"one instance, every variable cost: ${one['total']:.4f} a month (heartbeats "
        f"${one['heartbeats'] + one['heartbeat_logs']:.4f}, task churn "
        f"${one['task_churn'] + one['task_churn_logs']:.4f}, logs included)"
    )
    notes = [footer, whole]
    if sidecars:
        notes.append(
            f"outbound port polls: ${breakdown.polls_monthly:,.2f} a month "
            f"(${breakdown.polls_dynamodb_reads:,.2f} of it DynamoDB reads), "
            f"${breakdown.polls_monthly / sidecars:.4f} per sidecar-month"
        )
    return "\n".join([header, "", *table, "", *notes, "assumptions: docs/cost.md"])


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown_rows(breakdown: Breakdown) -> list[tuple[str, str, str]]:
    """What the table adds below the total, none of it in the total: the comparisons and
    the per-instance heartbeat figure."""
    beat = breakdown.per_instance_heartbeat
    rows = [
        (
            "Cloud Map, same instances (not in the total)",
            "registry only / with a DiscoverInstances call per routed request",
            f"${breakdown.cloud_map_registry_only:,.2f} / "
            f"${breakdown.cloud_map_with_discovery:,.2f}",
        ),
        (
            "Heartbeats alone, per instance-month (not in the total)",
            f"through the {LANE_NAMES[sidecar_lane(breakdown.inputs)]}, without logs / logs",
            f"${beat['total_without_logs']:.4f} / ${beat['logs']:.4f}",
        ),
        (
            "One instance, every variable cost (not in the total)",
            "heartbeats, task churn and their logs",
            f"${breakdown.per_instance['total']:.4f}",
        ),
    ]
    if breakdown.east_west:
        rows.append(
            (
                f"{breakdown.inputs.east_west_rps:g} east-west req/s (not in the total)",
                "through the gateway / the outbound port's polls / saving",
                f"${breakdown.east_west_through_gateway:,.2f} / "
                f"${breakdown.polls_monthly:,.2f} / {_signed(breakdown.east_west_saving)}",
            )
        )
    return rows


def render_markdown(breakdown: Breakdown) -> str:
    """The breakdown as a Markdown table, so the docs' tables are the command's output."""
    rows = [
        *_rows(breakdown.lines),
        ("**Total**", "", f"**${breakdown.total:,.2f}**"),
        *_markdown_rows(breakdown),
    ]
    table = ["| Item | Basis | Per month |", "| --- | --- | ---: |"]
    table += ["|" + "|".join(f" {_cell(c)} " if c else " " for c in row) + "|" for row in rows]
    return "\n".join(table)
