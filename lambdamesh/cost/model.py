"""The model: every line of the monthly bill, priced from `lambdamesh.prices`.

Pure functions over a frozen `CostInputs`: the volumes come from `traffic.py`, the prices
from the table, and `ASSUMPTIONS` says what is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from lambdamesh.cost import eureka
from lambdamesh.cost.inputs import CostInputs
from lambdamesh.cost.traffic import (
    CHURN_WRITE_UNITS,
    HOURS_PER_MONTH,
    SECONDS_PER_MONTH,
    churn_read_units,
    client_lane,
    events_a_month,
    heartbeats_a_month,
    issues_a_month,
    issues_per_sidecar_second,
    polls_a_month,
    read_units_per_second,
    renewal_seconds,
    rest_calls_a_month,
    routed_a_month,
    sidecar_lane,
    stops_a_month,
    write_units_per_second,
)
from lambdamesh.prices import PRICES, PriceTable, Tier

GB = 1024**3

ASSUMPTIONS = (
    "a month is 730 hours; traffic is steady (no peaks beyond the provisioned headroom)",
    "one Lambda serves heartbeats, routing-view polls and routed requests: on the rest and "
    "url lanes all through that lane; on the mixed lane heartbeats and polls through the "
    "function URL (the sidecars' LAMBDAMESH_URL) and routed requests, and the east-west "
    "comparison, through the REST API",
    "a heartbeat is one conditional UpdateItem: --write-units-per-heartbeat write units",
    "a routed request reads no DynamoDB in steady state: each warm Lambda caches a "
    "service's instance list for LAMBDAMESH_CACHE_SECONDS, so list reads are at most one per "
    "cache period per warm Lambda per service (never more than the requests and polls); "
    "warm Lambdas = requests/s x routed duration + polls/s x poll duration, rounded up",
    "the sidecar outbound port polls GET /registry/services/{service}/routing for each "
    "called service every --refresh-seconds: polls = sidecars x called services x seconds / "
    "refresh. A 304 still invokes the Lambda (and API Gateway on the rest lane) and writes "
    "--poll-log-bytes of logs (its EMF record and Lambda's own lines; the request line is at "
    "DEBUG): If-None-Match saves response bytes, not invocations. Polls read the "
    "same cached view as routed requests, so their DynamoDB reads are folded into the list "
    "reads above",
    "east-west calls through the outbound port go task to task in the VPC and cost nothing "
    "here; the comparison prices them as routed requests (API Gateway, Lambda at the routed "
    "duration, list reads, logs) and is not added to the total",
    "provisioned capacity = peak rate / auto scaling target utilization, rounded up, at "
    "least 1 unit each for reads and writes",
    "the signing key is read once per cold start: Secrets Manager API calls and endpoint "
    "data are negligible and not counted",
    "free tiers, request and response data transfer, log storage, custom metrics, the "
    "tasks and any NAT gateway are not counted",
    "a rate limit of scope global costs one conditional UpdateItem (1 write unit) per "
    "limit counted per request (--global-limit-writes: 2 with a service and a consumer "
    "limit) and adds --global-limit-ms to the request's billed duration; the write a full "
    "window refuses (one per container per window) is not counted",
    "Cloud Map does no routing: its line is a registry price only; with DiscoverInstances "
    "per routed request it adds $1.00 per million calls",
)
# Said only where Eureka clients are priced (--eureka-clients above 0).
EUREKA_ASSUMPTIONS = (
    "Eureka clients call through the lane --eureka-lane names: the clients' (the REST API on "
    "the rest and mixed lanes) or the sidecars' (the function URL on the url and mixed "
    "lanes). A renew is a heartbeat (one conditional UpdateItem of --eureka-item-bytes, "
    "--heartbeat-ms, --heartbeat-log-bytes); a fetch Queries the catalog and each service, and "
    "a delta the change journal too, each Query eventually consistent and adding "
    "--eureka-dynamodb-ms; --eureka-full-share of the fetches read the full registry, and each "
    "replaced client (every --task-lifetime-hours) registers, fetches the full registry, "
    "registers DOWN and cancels",
    "the gateway's cache absorbs a service's Query only when one execution environment reads "
    "the service again within --cache-seconds: the fetches are assumed spread over every busy "
    "environment (Little's law, each fetch counted as reading every service), so fewer fetches "
    "a cache period than environments are absorbed not at all",
    "Eureka's fetch responses (a full registry is about 1.6 KB per instance in XML) are not "
    "priced: data transfer is not counted",
    "Eureka servers on EC2 (the comparison) are priced by their instance-hours alone: no EBS "
    "volume, load balancer, public address or data transfer",
)
# Said only where mesh certificates are priced (--mesh-sidecars above 0).
CERTIFICATE_ASSUMPTIONS = (
    "each mesh sidecar asks POST /registry/services/{service}/certificate at its task's start "
    "and at half of each certificate's life (--cert-seconds): a task living --task-lifetime-"
    "hours issues ceil(lifetime / half-life), since the renewal at its end is its "
    "replacement's first; each issue is a Lambda invocation on the sidecars' lane (--cert-ms, "
    "--cert-log-bytes) that reads no DynamoDB",
    "the mesh CA is one more Secrets Manager secret, and each issue is counted as reading it "
    "(GetSecretValue): the function keeps the CA for 5 minutes, so this is an upper bound, "
    "reached while issues reach an execution environment less often than every 5 minutes",
    "not counted: the gateway's own certificate (issued inside a routed request, once per "
    "execution environment per half-life), the first issue's import of cryptography (once per "
    "execution environment) and the issues' share of the warm Lambdas",
)


@dataclass(frozen=True)
class Line:
    item: str
    basis: str
    monthly: float


@dataclass(frozen=True)
class Breakdown:
    inputs: CostInputs
    lines: tuple[Line, ...]
    cloud_map: tuple[Line, ...]
    per_instance_heartbeat: dict[str, float]
    # Every variable cost of one instance, logs and task churn included.
    per_instance: dict[str, float] = field(default_factory=dict)
    # What the outbound port's polls add to the total: their lines plus the list reads they
    # add to the DynamoDB reads line.
    polls_monthly: float = 0.0
    polls_dynamodb_reads: float = 0.0
    # Not in the total: what the east-west calls would cost routed through the gateway.
    east_west: tuple[Line, ...] = ()
    # What the Eureka clients add to the total (their lines and their share of the DynamoDB
    # lines), that share, one client's part, and Eureka servers on EC2 for comparison.
    eureka_monthly: float = 0.0
    eureka_dynamodb: float = 0.0
    per_eureka_client: dict[str, float] = field(default_factory=dict)
    eureka_servers: tuple[Line, ...] = ()
    # What mesh certificates add to the total (their lines), and one sidecar's part.
    certificates_monthly: float = 0.0
    per_mesh_sidecar: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(line.monthly for line in self.lines)

    @property
    def east_west_through_gateway(self) -> float:
        return sum(line.monthly for line in self.east_west)

    @property
    def east_west_saving(self) -> float:
        """The gateway route's cost less the polls that replace it (negative: a loss)."""
        return self.east_west_through_gateway - self.polls_monthly

    @property
    def eureka_servers_monthly(self) -> float:
        return sum(line.monthly for line in self.eureka_servers)

    @property
    def cloud_map_registry_only(self) -> float:
        return self.cloud_map[0].monthly

    @property
    def cloud_map_with_discovery(self) -> float:
        return sum(line.monthly for line in self.cloud_map)


def tiered(units: float, tiers: tuple[Tier, ...]) -> float:
    """The price of `units` a month across volume bands, each band at its own rate."""
    cost, floor = 0.0, 0.0
    for tier in tiers:
        ceiling = math.inf if tier.up_to is None else tier.up_to
        cost += max(0.0, min(units, ceiling) - floor) * tier.amount
        floor = ceiling
    return cost


def provisioned_units(rate: float, target: float) -> int:
    return max(1, math.ceil(rate / target - 1e-9))


def _gb_second_price(inputs: CostInputs, prices: PriceTable) -> float:
    if inputs.architecture == "arm64":
        return prices.lambda_gb_second_arm64.amount
    return prices.lambda_gb_second_x86_64.amount


def _millions(count: float) -> str:
    return f"{count / 1e6:,.2f} M"


def _api_gateway(inputs: CostInputs, prices: PriceTable) -> list[Line]:
    if client_lane(inputs) == "url":
        return []
    calls = rest_calls_a_month(inputs)
    what = "calls"
    if sidecar_lane(inputs) != "rest":
        what = "routed requests (no heartbeats or polls)"
    basis = f"{_millions(calls)} {what}, tiered from $3.50 per million"
    return [Line("API Gateway (REST)", basis, tiered(calls, prices.api_gateway_rest_tiers))]


def _lambda(inputs: CostInputs, prices: PriceTable) -> list[Line]:
    heartbeats, routed = heartbeats_a_month(inputs), routed_a_month(inputs)
    invocations = heartbeats + routed
    seconds = (heartbeats * inputs.heartbeat_ms + routed * inputs.routed_ms) / 1000
    gb_seconds = seconds * inputs.memory_mb / 1024
    rate = _gb_second_price(inputs, prices)
    return [
        Line(
            "Lambda requests",
            f"{_millions(invocations)} at $0.20 per million",
            invocations * prices.lambda_request.amount,
        ),
        Line(
            "Lambda duration",
            f"{gb_seconds:,.0f} GB-s ({inputs.memory_mb} MB {inputs.architecture}) at ${rate:.10f}",
            gb_seconds * rate,
        ),
    ]


def _dynamodb(inputs: CostInputs, prices: PriceTable) -> list[Line]:
    writes = write_units_per_second(inputs) + eureka.write_units_per_second(inputs)
    reads = read_units_per_second(inputs) + eureka.read_units_per_second(inputs)
    if inputs.billing == "provisioned":
        target = inputs.target_utilization
        wcu, rcu = provisioned_units(writes, target), provisioned_units(reads, target)
        share = f"{target:.0%} target"
        return [
            Line(
                "DynamoDB writes (provisioned)",
                f"{wcu} WCU ({writes:,.2f}/s at {share}) x {HOURS_PER_MONTH} h",
                wcu * HOURS_PER_MONTH * prices.dynamodb_wcu_hour.amount,
            ),
            Line(
                "DynamoDB reads (provisioned)",
                f"{rcu} RCU ({reads:,.2f}/s at {share}) x {HOURS_PER_MONTH} h",
                rcu * HOURS_PER_MONTH * prices.dynamodb_rcu_hour.amount,
            ),
        ]
    write_units, read_units = writes * SECONDS_PER_MONTH, reads * SECONDS_PER_MONTH
    lists = "instance lists, routed and polls" if inputs.outbound_sidecars else "instance lists"
    lists += ", task churn"
    written = "heartbeats, task churn"
    if inputs.eureka_clients:
        lists += ", Eureka fetches and registrations"
        written += ", Eureka renews and registrations"
    return [
        Line(
            "DynamoDB writes (on-demand)",
            f"{_millions(write_units)} write units ({written}) at $0.625 per million",
            write_units * prices.dynamodb_write_request.amount,
        ),
        Line(
            "DynamoDB reads (on-demand)",
            f"{_millions(read_units)} read units ({lists}) at $0.125 per million",
            read_units * prices.dynamodb_read_request.amount,
        ),
    ]


def _key_store(inputs: CostInputs, prices: PriceTable) -> list[Line]:
    zones = inputs.availability_zones
    return [
        Line(
            "Secrets Manager",
            f"{inputs.secrets} secret(s) at $0.40",
            inputs.secrets * prices.secret_month.amount,
        ),
        Line(
            "Secrets Manager endpoint",
            f"{zones} AZ x {HOURS_PER_MONTH} h at $0.01",
            zones * HOURS_PER_MONTH * prices.endpoint_az_hour.amount,
        ),
    ]


def _logs(inputs: CostInputs, prices: PriceTable) -> list[Line]:
    heartbeats, routed = heartbeats_a_month(inputs), routed_a_month(inputs)
    platform = inputs.platform_log_bytes
    total = heartbeats * (inputs.heartbeat_log_bytes + platform) + routed * (
        inputs.log_bytes_per_invocation + platform
    )
    gigabytes = total / GB
    basis = (
        f"{gigabytes:,.2f} GB ({inputs.heartbeat_log_bytes:g} B a heartbeat, "
        f"{inputs.log_bytes_per_invocation:g} B a routed request"
        + (f", + {platform:g} B of Lambda's own lines a call" if platform else "")
        + ") at $0.50"
    )
    return [Line("CloudWatch Logs", basis, gigabytes * prices.logs_ingested_gb.amount)]


def _churn(inputs: CostInputs, prices: PriceTable) -> list[Line]:
    """Task churn's invocations and logs: each new task's registration, and the stop events
    ECS sends for the old one (their DynamoDB units are in the DynamoDB lines)."""
    stops, events = stops_a_month(inputs), events_a_month(inputs)
    if stops == 0:
        return []
    invocations = stops + events
    seconds = (stops * inputs.heartbeat_ms + events * inputs.event_ms) / 1000
    gb_seconds = seconds * inputs.memory_mb / 1024
    log_bytes = stops * inputs.churn_log_bytes + invocations * inputs.platform_log_bytes
    gigabytes = log_bytes / GB
    basis = (
        f"{stops:,.0f} tasks replaced, each instance's every {inputs.task_lifetime_hours:g} h: "
        f"a registration and {inputs.events_per_stop:g} stop events each"
    )
    return _invocation_lines(
        "Task churn",
        (invocations, f"{_millions(invocations)} ({basis})"),
        (gb_seconds, f"{inputs.event_ms:g} ms an event"),
        (gigabytes, f"{gigabytes:,.3f} GB ({inputs.churn_log_bytes:g} B a task replaced)"),
        inputs,
        prices,
    )


def _invocation_lines(
    kind: str,
    calls: tuple[float, str],
    duration: tuple[float, str],
    logs: tuple[float, str],
    inputs: CostInputs,
    prices: PriceTable,
) -> list[Line]:
    """Lambda requests, duration and logs of one kind of call: (amount, how it is said) of
    calls, GB-seconds and gigabytes."""
    return [
        Line(
            f"{kind}: Lambda requests",
            f"{calls[1]} at $0.20 per million",
            calls[0] * prices.lambda_request.amount,
        ),
        Line(
            f"{kind}: Lambda duration",
            f"{duration[0]:,.0f} GB-s ({duration[1]})",
            duration[0] * _gb_second_price(inputs, prices),
        ),
        Line(
            f"{kind}: CloudWatch Logs",
            f"{logs[1]} at $0.50",
            logs[0] * prices.logs_ingested_gb.amount,
        ),
    ]


def _global_limits(inputs: CostInputs, prices: PriceTable) -> list[Line]:
    """What rate limits of scope global add: their counter writes and their wait."""
    rate = inputs.global_limit_rps
    if rate == 0:
        return []
    writes = rate * inputs.global_limit_writes
    calls = rate * SECONDS_PER_MONTH
    gb_seconds = calls * inputs.global_limit_ms / 1000 * inputs.memory_mb / 1024
    if inputs.billing == "provisioned":
        wcu = provisioned_units(writes, inputs.target_utilization)
        dynamodb = Line(
            "Global rate limits: DynamoDB writes (provisioned)",
            f"{wcu} WCU ({writes:,.2f}/s) x {HOURS_PER_MONTH} h",
            wcu * HOURS_PER_MONTH * prices.dynamodb_wcu_hour.amount,
        )
    else:
        units = writes * SECONDS_PER_MONTH
        dynamodb = Line(
            "Global rate limits: DynamoDB writes (on-demand)",
            f"{_millions(units)} write units ({inputs.global_limit_writes} a request) "
            "at $0.625 per million",
            units * prices.dynamodb_write_request.amount,
        )
    return [
        dynamodb,
        Line(
            "Global rate limits: Lambda duration",
            f"{gb_seconds:,.0f} GB-s ({inputs.global_limit_ms:g} ms a request)",
            gb_seconds * _gb_second_price(inputs, prices),
        ),
    ]


def _without_outbound(inputs: CostInputs) -> CostInputs:
    return replace(inputs, outbound_sidecars=0, east_west_rps=0.0)


def _polls(inputs: CostInputs, prices: PriceTable) -> list[Line]:
    """The outbound port's polls, each a Lambda invocation whether it answers 200 or 304."""
    polls = polls_a_month(inputs)
    if polls == 0:
        return []
    found: list[Line] = []
    if sidecar_lane(inputs) == "rest":
        # Polls share the account's monthly volume bands with the mesh's other calls: they
        # are charged at the bands they push the total into.
        others = rest_calls_a_month(inputs)
        tiers = prices.api_gateway_rest_tiers
        found.append(
            Line(
                "Outbound polls: API Gateway (REST)",
                f"{_millions(polls)} polls, tiered on top of the calls above",
                tiered(others + polls, tiers) - tiered(others, tiers),
            )
        )
    gb_seconds = polls * inputs.poll_ms / 1000 * inputs.memory_mb / 1024
    poll_bytes = inputs.poll_log_bytes + inputs.platform_log_bytes
    gigabytes = polls * poll_bytes / GB
    return found + _invocation_lines(
        "Outbound polls",
        (polls, f"{_millions(polls)} polls (200 or 304)"),
        (gb_seconds, f"{inputs.poll_ms:g} ms a poll"),
        (gigabytes, f"{gigabytes:,.2f} GB ({poll_bytes:g} B a poll)"),
        inputs,
        prices,
    )


def _rest_calls_before_eureka(inputs: CostInputs) -> float:
    """The month's REST API calls the Eureka clients' calls come on top of."""
    polls = polls_a_month(inputs) if sidecar_lane(inputs) == "rest" else 0.0
    return rest_calls_a_month(inputs) + polls


def _eureka(inputs: CostInputs, prices: PriceTable) -> list[Line]:
    """The Eureka clients' calls; their DynamoDB units are in the DynamoDB lines."""
    if inputs.eureka_clients == 0:
        return []
    used = eureka.month(inputs)
    found: list[Line] = []
    if eureka.lane(inputs) == "rest":
        # Charged at the volume bands the clients' calls push the month into, as polls are.
        others, tiers = _rest_calls_before_eureka(inputs), prices.api_gateway_rest_tiers
        found.append(
            Line(
                "Eureka clients: API Gateway (REST)",
                f"{_millions(used.calls)} renews, fetches and registrations, tiered on top of "
                "the calls above",
                tiered(others + used.calls, tiers) - tiered(others, tiers),
            )
        )
    seconds = used.renew_seconds + used.fetch_seconds + used.churn_seconds
    gb_seconds = seconds * inputs.memory_mb / 1024
    gigabytes = used.log_bytes / GB
    calls = (
        f"{_millions(used.calls)} ({_millions(used.renews)} renews, {_millions(used.fetches)} "
        f"fetches, {used.full_fetches:,.0f} of them full)"
    )
    return found + _invocation_lines(
        "Eureka clients",
        (used.calls, calls),
        (
            gb_seconds,
            f"{inputs.heartbeat_ms:g} ms a renew, {eureka.delta_ms(inputs):,.0f} a delta, "
            f"{eureka.full_ms(inputs):,.0f} a full fetch; a fetch Queries "
            f"{eureka.views_per_fetch(inputs):,.1f} of {inputs.services} services, "
            f"{inputs.eureka_dynamodb_ms:g} ms a Query",
        ),
        (gigabytes, f"{gigabytes:,.2f} GB ({inputs.eureka_fetch_log_bytes:g} B a fetch)"),
        inputs,
        prices,
    )


def _rest_calls_before_certificates(inputs: CostInputs) -> float:
    """The month's REST API calls the certificate issues come on top of."""
    calls = _rest_calls_before_eureka(inputs)
    if inputs.eureka_clients and eureka.lane(inputs) == "rest":
        calls += eureka.month(inputs).calls
    return calls


def _issues_basis(inputs: CostInputs, issues: float) -> str:
    after = "renewed every"
    if inputs.task_lifetime_hours:
        after = "asked for at each task's start and every"
    return (
        f"{issues:,.0f} issues ({inputs.mesh_sidecars} sidecars; a {inputs.cert_seconds:,} s "
        f"certificate, {after} {renewal_seconds(inputs):,.0f} s)"
    )


def _certificates(inputs: CostInputs, prices: PriceTable) -> list[Line]:
    """Mesh certificates: each issue an invocation on the sidecars' lane, and the mesh CA's
    secret, its reads counted at one an issue."""
    if inputs.mesh_sidecars == 0:
        return []
    issues = issues_a_month(inputs)
    found: list[Line] = []
    if sidecar_lane(inputs) == "rest":
        # Charged at the volume bands the issues push the month into, as polls are.
        others, tiers = _rest_calls_before_certificates(inputs), prices.api_gateway_rest_tiers
        found.append(
            Line(
                "Mesh certificates: API Gateway (REST)",
                f"{issues:,.0f} issues, tiered on top of the calls above",
                tiered(others + issues, tiers) - tiered(others, tiers),
            )
        )
    gb_seconds = issues * inputs.cert_ms / 1000 * inputs.memory_mb / 1024
    issue_bytes = inputs.cert_log_bytes + inputs.platform_log_bytes
    gigabytes = issues * issue_bytes / GB
    found += _invocation_lines(
        "Mesh certificates",
        (issues, _issues_basis(inputs, issues)),
        (gb_seconds, f"{inputs.cert_ms:g} ms an issue"),
        (gigabytes, f"{gigabytes:,.3f} GB ({issue_bytes:g} B an issue)"),
        inputs,
        prices,
    )
    return [
        *found,
        Line(
            "Mesh certificates: mesh CA secret",
            "1 more secret at $0.40",
            prices.secret_month.amount,
        ),
        Line(
            "Mesh certificates: mesh CA reads",
            f"{issues:,.0f} GetSecretValue at most (one an issue) at $0.05 per 10,000",
            issues * prices.secret_api_call.amount,
        ),
    ]


def per_mesh_sidecar(inputs: CostInputs, prices: PriceTable = PRICES) -> dict[str, float]:
    """What one more mesh sidecar adds a month by its certificates: no fixed cost (the mesh
    CA's secret), API Gateway at its first band, the CA read at one an issue. Empty without
    mesh sidecars."""
    if inputs.mesh_sidecars == 0:
        return {}
    issues = issues_per_sidecar_second(inputs) * SECONDS_PER_MONTH
    rest = sidecar_lane(inputs) == "rest"
    gb_seconds = issues * inputs.cert_ms / 1000 * inputs.memory_mb / 1024
    log_bytes = issues * (inputs.cert_log_bytes + inputs.platform_log_bytes)
    parts = {
        "api_gateway": issues * prices.api_gateway_rest.amount if rest else 0.0,
        "lambda_requests": issues * prices.lambda_request.amount,
        "lambda_duration": gb_seconds * _gb_second_price(inputs, prices),
        "logs": log_bytes / GB * prices.logs_ingested_gb.amount,
        "mesh_ca_reads": issues * prices.secret_api_call.amount,
    }
    parts["total"] = sum(parts.values())
    return parts


def _unit_prices(inputs: CostInputs, prices: PriceTable) -> tuple[float, float]:
    """What one write unit and one read unit a month cost, provisioned capacity counted as
    its exact share (per unit a second, at the target), on demand per request."""
    if inputs.billing == "provisioned":
        hours = HOURS_PER_MONTH / inputs.target_utilization / SECONDS_PER_MONTH
        return prices.dynamodb_wcu_hour.amount * hours, prices.dynamodb_rcu_hour.amount * hours
    return prices.dynamodb_write_request.amount, prices.dynamodb_read_request.amount


def per_eureka_client(inputs: CostInputs, prices: PriceTable = PRICES) -> dict[str, float]:
    """Every variable cost of one Eureka client a month, its share of all the clients' (the
    cache shares their reads): its renews, its fetches, its replacements, their logs. No fixed
    costs; provisioned capacity as its exact share; API Gateway at its first band. Empty
    without Eureka clients."""
    clients = inputs.eureka_clients
    if clients == 0:
        return {}
    used = eureka.month(inputs)
    per_call = prices.lambda_request.amount
    if eureka.lane(inputs) == "rest":
        per_call += prices.api_gateway_rest.amount
    per_gb_second = _gb_second_price(inputs, prices) * inputs.memory_mb / 1024
    write, read = _unit_prices(inputs, prices)
    replaced = eureka.replaced_per_second(inputs) * SECONDS_PER_MONTH
    churn_reads = replaced * eureka.churn_read_units(inputs)
    fetch_reads = eureka.read_units_per_second(inputs) * SECONDS_PER_MONTH - churn_reads
    renew_writes = eureka.renews_per_second(inputs) * eureka.write_units(inputs.eureka_item_bytes)
    parts = {
        "renews": used.renews * per_call
        + used.renew_seconds * per_gb_second
        + renew_writes * SECONDS_PER_MONTH * write,
        "fetches": used.fetches * per_call
        + used.fetch_seconds * per_gb_second
        + fetch_reads * read,
        "replacements": used.churn_calls * per_call
        + used.churn_seconds * per_gb_second
        + replaced * eureka.churn_write_units(inputs) * write
        + churn_reads * read,
        "logs": used.log_bytes / GB * prices.logs_ingested_gb.amount,
    }
    found = {name: value / clients for name, value in parts.items()}
    found["total"] = sum(found.values())
    return found


def _eureka_servers(inputs: CostInputs, prices: PriceTable) -> tuple[Line, ...]:
    """What running Eureka's own servers on EC2 would cost instead: their instance-hours."""
    if inputs.eureka_clients == 0:
        return ()
    servers, hour = inputs.eureka_servers, prices.ec2_t3_small_hour.amount
    return (
        Line(
            "Eureka servers on EC2",
            f"{servers} x t3.small on demand x {HOURS_PER_MONTH} h at ${hour:g} "
            "(instance-hours only)",
            servers * HOURS_PER_MONTH * hour,
        ),
    )


def _reads_line(inputs: CostInputs, prices: PriceTable) -> float:
    return _dynamodb(inputs, prices)[1].monthly


def _east_west(inputs: CostInputs, prices: PriceTable) -> tuple[Line, ...]:
    """What the east-west calls would add routed through the gateway as ordinary routed
    requests, to the mesh without the outbound port: each line the difference it makes."""
    if inputs.east_west_rps == 0:
        return ()
    base = _without_outbound(inputs)
    routed = replace(base, requests_per_second=base.requests_per_second + inputs.east_west_rps)
    calls = inputs.east_west_rps * SECONDS_PER_MONTH
    gb_seconds = calls * inputs.routed_ms / 1000 * inputs.memory_mb / 1024
    call_bytes = inputs.log_bytes_per_invocation + inputs.platform_log_bytes
    gigabytes = calls * call_bytes / GB
    bases = {
        "API Gateway (REST)": f"{_millions(calls)} calls, tiered on top of the mesh's",
        "Lambda requests": f"{_millions(calls)} at $0.20 per million",
        "Lambda duration": f"{gb_seconds:,.0f} GB-s ({inputs.routed_ms:g} ms a call)",
        "DynamoDB reads": "list reads of the extra warm Lambdas",
        "CloudWatch Logs": f"{gigabytes:,.2f} GB ({call_bytes:g} B a call)",
    }

    def priced(mesh: CostInputs) -> dict[str, float]:
        lines = [
            *_api_gateway(mesh, prices),
            *_lambda(mesh, prices),
            *_dynamodb(mesh, prices)[1:],
            *_logs(mesh, prices),
        ]
        return {line.item: line.monthly for line in lines}

    before, after = priced(base), priced(routed)
    return tuple(
        Line(
            f"Through the gateway: {item}",
            next(text for name, text in bases.items() if item.startswith(name)),
            monthly - before[item],
        )
        for item, monthly in after.items()
    )


def _cloud_map(inputs: CostInputs, prices: PriceTable) -> tuple[Line, ...]:
    calls = routed_a_month(inputs)
    return (
        Line(
            "Cloud Map instances",
            f"{inputs.instances} x $0.10",
            inputs.instances * prices.cloud_map_instance_month.amount,
        ),
        Line(
            "Cloud Map DiscoverInstances",
            f"{_millions(calls)} calls (one per routed request) at $1.00 per million",
            calls * prices.cloud_map_discovery_call.amount,
        ),
    )


def per_instance_heartbeat(inputs: CostInputs, prices: PriceTable = PRICES) -> dict[str, float]:
    """What one more instance adds a month by heartbeating alone: no fixed costs, and
    provisioned capacity counted as its exact share rather than rounded to whole units."""
    beats = SECONDS_PER_MONTH / inputs.heartbeat_seconds
    gb_seconds = beats * inputs.heartbeat_ms / 1000 * inputs.memory_mb / 1024
    if inputs.billing == "provisioned":
        wcu = inputs.write_units_per_heartbeat / inputs.heartbeat_seconds
        dynamodb = wcu / inputs.target_utilization * HOURS_PER_MONTH
        dynamodb *= prices.dynamodb_wcu_hour.amount
    else:
        dynamodb = beats * inputs.write_units_per_heartbeat
        dynamodb *= prices.dynamodb_write_request.amount
    rest = sidecar_lane(inputs) == "rest"
    parts = {
        "api_gateway": beats * prices.api_gateway_rest.amount if rest else 0.0,
        "lambda_requests": beats * prices.lambda_request.amount,
        "lambda_duration": gb_seconds * _gb_second_price(inputs, prices),
        "dynamodb": dynamodb,
        "logs": beats
        * (inputs.heartbeat_log_bytes + inputs.platform_log_bytes)
        / GB
        * prices.logs_ingested_gb.amount,
    }
    parts["total_without_logs"] = sum(v for k, v in parts.items() if k != "logs")
    parts["total"] = parts["total_without_logs"] + parts["logs"]
    return parts


def per_instance(inputs: CostInputs, prices: PriceTable = PRICES) -> dict[str, float]:
    """Every variable cost of one registered instance a month, logs included: its
    heartbeats, and its share of task churn (its tasks' registrations and stop events). No
    fixed costs, and provisioned capacity as its exact share, as for the heartbeats alone."""
    beat = per_instance_heartbeat(inputs, prices)
    one = replace(inputs, instances=1)
    stops, events = stops_a_month(one), events_a_month(one)
    gb_seconds = (stops * inputs.heartbeat_ms + events * inputs.event_ms) / 1000
    gb_seconds *= inputs.memory_mb / 1024
    writes = stops * CHURN_WRITE_UNITS
    reads = stops * churn_read_units(inputs)
    if inputs.billing == "provisioned":
        hours = HOURS_PER_MONTH / inputs.target_utilization / SECONDS_PER_MONTH
        dynamodb = writes * hours * prices.dynamodb_wcu_hour.amount
        dynamodb += reads * hours * prices.dynamodb_rcu_hour.amount
    else:
        dynamodb = writes * prices.dynamodb_write_request.amount
        dynamodb += reads * prices.dynamodb_read_request.amount
    churn = (
        (stops + events) * prices.lambda_request.amount
        + gb_seconds * _gb_second_price(inputs, prices)
        + dynamodb
    )
    churn_logs = stops * inputs.churn_log_bytes + (stops + events) * inputs.platform_log_bytes
    churn_logs *= prices.logs_ingested_gb.amount / GB
    return {
        "heartbeats": beat["total_without_logs"],
        "heartbeat_logs": beat["logs"],
        "task_churn": churn,
        "task_churn_logs": churn_logs,
        "total": beat["total"] + churn + churn_logs,
        "cloud_map": prices.cloud_map_instance_month.amount,
    }


def estimate(inputs: CostInputs, prices: PriceTable = PRICES) -> Breakdown:
    lines = [
        *_api_gateway(inputs, prices),
        *_lambda(inputs, prices),
        *_dynamodb(inputs, prices),
        *_key_store(inputs, prices),
        *_logs(inputs, prices),
        *_churn(inputs, prices),
        *_global_limits(inputs, prices),
    ]
    polls = _polls(inputs, prices)
    reads_added = 0.0
    if polls:
        reads_added = _reads_line(inputs, prices) - _reads_line(_without_outbound(inputs), prices)
    clients = _eureka(inputs, prices)
    eureka_dynamodb = 0.0
    if clients:
        without = replace(inputs, eureka_clients=0)
        eureka_dynamodb = sum(line.monthly for line in _dynamodb(inputs, prices)) - sum(
            line.monthly for line in _dynamodb(without, prices)
        )
    certificates = _certificates(inputs, prices)
    return Breakdown(
        inputs=inputs,
        lines=(*lines, *polls, *clients, *certificates),
        cloud_map=_cloud_map(inputs, prices),
        per_instance_heartbeat=per_instance_heartbeat(inputs, prices),
        per_instance=per_instance(inputs, prices),
        polls_monthly=sum(line.monthly for line in polls) + reads_added,
        polls_dynamodb_reads=reads_added,
        east_west=_east_west(inputs, prices),
        eureka_monthly=sum(line.monthly for line in clients) + eureka_dynamodb,
        eureka_dynamodb=eureka_dynamodb,
        per_eureka_client=per_eureka_client(inputs, prices),
        eureka_servers=_eureka_servers(inputs, prices),
        certificates_monthly=sum(line.monthly for line in certificates),
        per_mesh_sidecar=per_mesh_sidecar(inputs, prices),
    )
