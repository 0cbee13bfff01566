"""The breakdown as the command prints it: a text table, JSON for scripts, Markdown for docs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from lambdamesh.cost import eureka
from lambdamesh.cost.inputs import CostInputs
from lambdamesh.cost.model import (
    ASSUMPTIONS,
    CERTIFICATE_ASSUMPTIONS,
    EUREKA_ASSUMPTIONS,
    Breakdown,
    Line,
)
from lambdamesh.cost.traffic import (
    HOURS_PER_MONTH,
    SECONDS_PER_MONTH,
    client_lane,
    events_a_month,
    issues_a_month,
    issues_per_sidecar_second,
    polls_a_month,
    polls_per_second,
    renewal_seconds,
    sidecar_lane,
    stops_a_month,
)
from lambdamesh.prices import PRICES, READ_ON, PriceTable

LANE_NAMES = {"rest": "REST API", "url": "function URL"}


def _line(entry: Line) -> dict[str, Any]:
    return {"item": entry.item, "basis": entry.basis, "monthly": round(entry.monthly, 6)}


def _eureka_json(breakdown: Breakdown) -> dict[str, Any]:
    """The Eureka clients' volumes and what they add, beside the comparison with servers."""
    inputs = breakdown.inputs
    used = eureka.month(inputs)
    return {
        "clients": inputs.eureka_clients,
        "lane": eureka.lane(inputs),
        "calls_per_month": round(used.calls, 3),
        "renews_per_month": round(used.renews, 3),
        "deltas_per_month": round(used.deltas, 3),
        "full_fetches_per_month": round(used.full_fetches, 3),
        "environments": eureka.environments(inputs),
        "service_queries_per_second": round(eureka.view_queries_per_second(inputs), 6),
        "service_queries_per_fetch": round(eureka.views_per_fetch(inputs), 6),
        "response_gb_per_month": round(used.response_bytes / 1024**3, 3),
        "dynamodb_added": round(breakdown.eureka_dynamodb, 6),
        "monthly": round(breakdown.eureka_monthly, 6),
        "per_client": {k: round(v, 6) for k, v in breakdown.per_eureka_client.items()},
        "servers": {
            "lines": [_line(entry) for entry in breakdown.eureka_servers],
            "monthly": round(breakdown.eureka_servers_monthly, 6),
            "in_total": False,
        },
    }


def _certificates_json(breakdown: Breakdown) -> dict[str, Any]:
    """The mesh certificates' volumes and what they add, in all and per sidecar."""
    inputs = breakdown.inputs
    return {
        "sidecars": inputs.mesh_sidecars,
        "lane": sidecar_lane(inputs),
        "cert_seconds": inputs.cert_seconds,
        "renewal_seconds": renewal_seconds(inputs),
        "issues_per_month": round(issues_a_month(inputs), 3),
        "issues_per_sidecar_month": round(issues_per_sidecar_second(inputs) * SECONDS_PER_MONTH, 3),
        "monthly": round(breakdown.certificates_monthly, 6),
        "per_sidecar": {k: round(v, 6) for k, v in breakdown.per_mesh_sidecar.items()},
    }


def _assumptions(inputs: CostInputs) -> list[str]:
    """The model's assumptions, and those of the parts priced only when asked for."""
    found = list(ASSUMPTIONS)
    if inputs.eureka_clients:
        found += EUREKA_ASSUMPTIONS
    if inputs.mesh_sidecars:
        found += CERTIFICATE_ASSUMPTIONS
    return found


def to_json(breakdown: Breakdown, prices: PriceTable = PRICES) -> dict[str, Any]:
    line = _line
    inputs = breakdown.inputs
    sidecars = inputs.outbound_sidecars
    clients = inputs.eureka_clients
    document = {
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
        "assumptions": _assumptions(inputs),
        "prices": {
            name: {**asdict(price), "read_on": READ_ON} for name, price in prices.all().items()
        },
    }
    if clients:
        document["eureka"] = _eureka_json(breakdown)
    if inputs.mesh_sidecars:
        document["certificates"] = _certificates_json(breakdown)
    return document


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
    if breakdown.eureka_servers:
        rows += [
            ("", "", ""),
            ("Eureka servers instead", "(not in the total)", ""),
            *_rows(breakdown.eureka_servers),
            (
                "Eureka total",
                "the clients here / Eureka servers on EC2",
                f"${breakdown.eureka_monthly:,.2f} / ${breakdown.eureka_servers_monthly:,.2f}",
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
    if inputs.eureka_clients:
        header += "\n" + _eureka_text(inputs)
    if inputs.mesh_sidecars:
        header += "\n" + _certificates_text(inputs)
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
    if inputs.eureka_clients:
        notes.append(_eureka_note(breakdown))
    if inputs.mesh_sidecars:
        notes.append(_certificates_note(breakdown))
    return "\n".join([header, "", *table, "", *notes, "assumptions: docs/cost.md"])


def _certificates_text(inputs: CostInputs) -> str:
    return (
        f"mesh certificates: {inputs.mesh_sidecars} sidecars, a {inputs.cert_seconds:,} s "
        f"certificate renewed every {renewal_seconds(inputs):,.0f} s, through the "
        f"{LANE_NAMES[sidecar_lane(inputs)]}: {issues_a_month(inputs):,.0f} issues a month"
    )


def _certificates_note(breakdown: Breakdown) -> str:
    one = breakdown.per_mesh_sidecar
    return (
        f"mesh certificates: ${breakdown.certificates_monthly:,.2f} a month "
        f"(${PRICES.secret_month.amount:.2f} of it the mesh CA's secret), ${one['total']:.4f} "
        f"per sidecar-month (${one['mesh_ca_reads']:.4f} of it the mesh CA's reads)"
    )


def _eureka_text(inputs: CostInputs) -> str:
    return (
        f"Eureka clients: {inputs.eureka_clients}, renew {inputs.eureka_renew_seconds:g} s, "
        f"fetch {inputs.eureka_fetch_seconds:g} s ({inputs.eureka_full_share:.0%} full), "
        f"through the {LANE_NAMES[eureka.lane(inputs)]}: "
        f"{eureka.fetches_per_second(inputs):,.2f} fetches/s reading "
        f"{eureka.views_per_fetch(inputs):,.1f} of {inputs.services} services each "
        f"through the cache"
    )


def _eureka_note(breakdown: Breakdown) -> str:
    one = breakdown.per_eureka_client
    return (
        f"Eureka clients: ${breakdown.eureka_monthly:,.2f} a month "
        f"(${breakdown.eureka_dynamodb:,.2f} of it DynamoDB), ${one['total']:.4f} per "
        f"client-month (renews ${one['renews']:.4f}, fetches ${one['fetches']:.4f}, "
        f"replacements ${one['replacements']:.4f}, logs ${one['logs']:.4f})"
    )


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
    return rows + _certificate_rows(breakdown) + _eureka_rows(breakdown)


def _certificate_rows(breakdown: Breakdown) -> list[tuple[str, str, str]]:
    """One mesh sidecar's certificates: the lines above, per sidecar, without the secret."""
    if not breakdown.per_mesh_sidecar:
        return []
    inputs, one = breakdown.inputs, breakdown.per_mesh_sidecar
    issues = issues_per_sidecar_second(inputs) * SECONDS_PER_MONTH
    return [
        (
            "One mesh sidecar's certificates, per month (not in the total)",
            f"{issues:,.1f} issues through the {LANE_NAMES[sidecar_lane(inputs)]}, "
            "the mesh CA's reads included, its secret not",
            f"${one['total']:.4f}",
        )
    ]


def _eureka_rows(breakdown: Breakdown) -> list[tuple[str, str, str]]:
    """What the Eureka clients add, one client's part, and Eureka servers instead."""
    if not breakdown.eureka_servers:
        return []
    one, servers = breakdown.per_eureka_client, breakdown.eureka_servers[0]
    return [
        (
            f"{breakdown.inputs.eureka_clients} Eureka clients (in the total)",
            "their lines above and their DynamoDB units",
            f"${breakdown.eureka_monthly:,.2f}",
        ),
        (
            "One Eureka client, every variable cost (not in the total)",
            "renews / fetches / replacements / logs",
            f"${one['renews']:.4f} / ${one['fetches']:.4f} / ${one['replacements']:.4f} / "
            f"${one['logs']:.4f} = ${one['total']:.4f}",
        ),
        (
            "Eureka servers on EC2 instead (not in the total)",
            servers.basis,
            f"${breakdown.eureka_servers_monthly:,.2f}",
        ),
    ]


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
