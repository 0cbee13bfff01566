"""`lambdamesh cost`: what a mesh costs a month at list prices, beside Cloud Map.

Pure functions over a frozen `CostInputs`; every price comes from `lambdamesh.prices`. The
figures are a model, not a bill: every input that is a guess is a field with a default and a
flag, and `ASSUMPTIONS` says what is left out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from chalicelib.errors import LambdaMeshError
from lambdamesh.prices import PRICES, READ_ON, PriceTable, Tier

# The sidecar's default LAMBDAMESH_HEARTBEAT_SECONDS (lambdamesh_sidecar/config.py).
DEFAULT_HEARTBEAT_SECONDS = 60.0
HOURS_PER_MONTH = 730  # AWS's own convention for monthly estimates
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
GB = 1024**3
# Where calls reach the function: `rest` (API Gateway's REST API) or `url` (the Lambda
# function URL) for every call, or `mixed`, the recommended deployment: clients through the
# REST API, the sidecars (heartbeats, routing-view polls) through the function URL.
LANES = ("rest", "url", "mixed")
LANE_NAMES = {"rest": "REST API", "url": "function URL"}
BILLINGS = ("on-demand", "provisioned")
ARCHITECTURES = ("x86_64", "arm64")

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


class CostInputError(LambdaMeshError):
    status = 400
    code = "bad_cost_input"


@dataclass(frozen=True)
class CostInputs:
    instances: int
    heartbeat_seconds: float
    requests_per_second: float
    lane: str = "rest"
    billing: str = "on-demand"
    memory_mb: int = 512
    architecture: str = "arm64"
    # Measured: the heartbeat handler's CPU time stretched to 512 MB's CPU share, plus its
    # DynamoDB wait (docs/benchmarks.md#memory-sizing).
    heartbeat_ms: float = 15.0
    routed_ms: float = 30.0
    write_units_per_heartbeat: float = 1.0
    read_units_per_list: float = 1.0
    cache_seconds: float = 1.0
    services: int = 1
    availability_zones: int = 2
    secrets: int = 1
    # Application log bytes of a routed request, measured: its request line, the request's
    # EMF document and the routed request's own (tests/bench/bench_log_bytes.py).
    log_bytes_per_invocation: float = 875.0
    # A successful heartbeat logs nothing at INFO (chalicelib/observability.py); before it
    # did, 576 B (a request line and an EMF document), measured the same way.
    heartbeat_log_bytes: float = 0.0
    # Lambda's own START/END/REPORT lines, on every invocation: none with the merge template's
    # SystemLogLevel WARN; about 350 B where they are ingested (`chalice deploy`).
    platform_log_bytes: float = 0.0
    target_utilization: float = 0.70
    # The sidecar outbound port (0 sidecars: off). A poll is a cached read answered 200 or
    # 304, about a heartbeat's work without the write: billed like one until measured.
    outbound_sidecars: int = 0
    called_services: int = 1
    refresh_seconds: float = 5.0
    poll_ms: float = 15.0
    # A poll's application log bytes, measured: its EMF document; its request line is logged
    # at DEBUG (Lambda's own lines are platform_log_bytes).
    poll_log_bytes: float = 200.0
    east_west_rps: float = 0.0
    # Routed requests a second to services whose exposure sets a rate limit of scope global:
    # each adds one conditional write per limit counted (service, and consumer when set)
    # and that write's wait to the request's duration.
    global_limit_rps: float = 0.0
    global_limit_writes: int = 1
    global_limit_ms: float = 5.0
    # Task churn: each instance's task is replaced this often (deployments, scaling, crashes).
    # A new task registers (one write, and one to the task index); a stopping one sends
    # ECS's events, events_per_stop of them with desiredStatus STOPPED (RUNNING, STOPPING,
    # DEPROVISIONING, STOPPED), each an invocation and a read of the task index; the first
    # deletes the instance (one write) and logs one line.
    task_lifetime_hours: float = 24.0
    events_per_stop: float = 4.0
    event_ms: float = 15.0
    # Measured: the new task's registration (493 B: request line, EMF) and the stop's removal
    # (717 B: its line and EMF document); the other events of the stop log nothing at INFO.
    churn_log_bytes: float = 1210.0

    def __post_init__(self) -> None:
        for problem in _problems(self):
            raise CostInputError(problem)


def _problems(inputs: CostInputs) -> list[str]:
    ranges: list[tuple[str, float, float, float]] = [
        ("instances", inputs.instances, 0, math.inf),
        ("heartbeat", inputs.heartbeat_seconds, 0.2, 300),
        ("requests-per-second", inputs.requests_per_second, 0, math.inf),
        ("memory", inputs.memory_mb, 128, 10_240),
        ("heartbeat-ms", inputs.heartbeat_ms, 0, 900_000),
        ("routed-ms", inputs.routed_ms, 0, 900_000),
        ("write-units-per-heartbeat", inputs.write_units_per_heartbeat, 0, math.inf),
        ("read-units-per-list", inputs.read_units_per_list, 0, math.inf),
        ("cache-seconds", inputs.cache_seconds, 0, 60),
        ("services", inputs.services, 1, math.inf),
        ("availability-zones", inputs.availability_zones, 1, 6),
        ("secrets", inputs.secrets, 0, math.inf),
        ("log-bytes", inputs.log_bytes_per_invocation, 0, math.inf),
        ("heartbeat-log-bytes", inputs.heartbeat_log_bytes, 0, math.inf),
        ("platform-log-bytes", inputs.platform_log_bytes, 0, math.inf),
        ("poll-log-bytes", inputs.poll_log_bytes, 0, math.inf),
        ("target-utilization", inputs.target_utilization, 0.2, 0.9),
        ("outbound-sidecars", inputs.outbound_sidecars, 0, math.inf),
        ("called-services", inputs.called_services, 1, math.inf),
        ("refresh-seconds", inputs.refresh_seconds, 1, 300),
        ("poll-ms", inputs.poll_ms, 0, 900_000),
        ("east-west-rps", inputs.east_west_rps, 0, math.inf),
        ("global-limit-rps", inputs.global_limit_rps, 0, inputs.requests_per_second),
        ("global-limit-writes", inputs.global_limit_writes, 1, 2),
        ("global-limit-ms", inputs.global_limit_ms, 0, 29_000),
        ("task-lifetime-hours", inputs.task_lifetime_hours, 0, 100_000),
        ("events-per-stop", inputs.events_per_stop, 0, 20),
        ("event-ms", inputs.event_ms, 0, 900_000),
        ("churn-log-bytes", inputs.churn_log_bytes, 0, math.inf),
    ]
    found = [
        f"--{name} must be between {low:g} and {high:g}, not {value:g}"
        if high != math.inf
        else f"--{name} must be at least {low:g}, not {value:g}"
        for name, value, low, high in ranges
        if not low <= value <= high or math.isnan(value)
    ]
    choices = [
        ("lane", inputs.lane, LANES),
        ("billing", inputs.billing, BILLINGS),
        ("architecture", inputs.architecture, ARCHITECTURES),
    ]
    found += [
        f"--{name} must be one of {', '.join(allowed)}, not {value!r}"
        for name, value, allowed in choices
        if value not in allowed
    ]
    if inputs.called_services > inputs.services:
        found.append(
            f"--called-services must be at most --services ({inputs.services}), "
            f"not {inputs.called_services}: a sidecar calls services of the mesh"
        )
    if inputs.east_west_rps > 0 and inputs.outbound_sidecars == 0:
        found.append(
            "--east-west-rps needs --outbound-sidecars above 0: east-west calls go through "
            "the sidecars' outbound port"
        )
    return found


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


def heartbeats_a_month(inputs: CostInputs) -> float:
    return inputs.instances * SECONDS_PER_MONTH / inputs.heartbeat_seconds


def routed_a_month(inputs: CostInputs) -> float:
    return inputs.requests_per_second * SECONDS_PER_MONTH


def polls_per_second(inputs: CostInputs) -> float:
    """Routing-view polls from the sidecars' outbound ports: one per called service per
    refresh period per sidecar."""
    return inputs.outbound_sidecars * inputs.called_services / inputs.refresh_seconds


def polls_a_month(inputs: CostInputs) -> float:
    return polls_per_second(inputs) * SECONDS_PER_MONTH


def sidecar_lane(inputs: CostInputs) -> str:
    """The lane heartbeats and routing-view polls arrive on: the sidecars' LAMBDAMESH_URL."""
    return "url" if inputs.lane == "mixed" else inputs.lane


def client_lane(inputs: CostInputs) -> str:
    """The lane routed requests arrive on, and east-west calls would through the gateway."""
    return "rest" if inputs.lane == "mixed" else inputs.lane


def rest_calls_a_month(inputs: CostInputs) -> float:
    """The calls API Gateway bills, polls aside: those of each kind whose lane is REST."""
    calls = routed_a_month(inputs) if client_lane(inputs) == "rest" else 0.0
    if sidecar_lane(inputs) == "rest":
        calls += heartbeats_a_month(inputs)
    return calls


def warm_lambdas(inputs: CostInputs) -> int:
    """Concurrent executions routed traffic and polls keep busy (Little's law), at least one."""
    polls = polls_per_second(inputs)
    if inputs.requests_per_second == 0 and polls == 0:
        return 0
    busy = inputs.requests_per_second * inputs.routed_ms / 1000 + polls * inputs.poll_ms / 1000
    return max(1, math.ceil(busy))


def list_reads_per_second(inputs: CostInputs) -> float:
    """Instance-list Queries: routed requests and polls read the same per-Lambda cache, so
    at most one per cache period per warm Lambda per service, never more than they are."""
    readers = inputs.requests_per_second + polls_per_second(inputs)
    if inputs.cache_seconds == 0:
        return readers
    return min(readers, warm_lambdas(inputs) * inputs.services / inputs.cache_seconds)


# Write units of one task replaced: its registration (the instance and its task-index entry),
# the catalog entry's bump, and the stop's delete (the instance and its index entry).
CHURN_WRITE_UNITS = 5.0
# Read units: the registration's consistent Query of the service's leases (one unit), and
# each stop event's eventually consistent Query of the keys-only task index (half a unit).
REGISTRATION_READ_UNITS = 1.0
EVENT_READ_UNITS = 0.5


def stops_per_second(inputs: CostInputs) -> float:
    """Tasks replaced a second: each instance's task once per lifetime (0: none modelled)."""
    if inputs.task_lifetime_hours == 0:
        return 0.0
    return inputs.instances / (inputs.task_lifetime_hours * 3600)


def stops_a_month(inputs: CostInputs) -> float:
    return stops_per_second(inputs) * SECONDS_PER_MONTH


def events_a_month(inputs: CostInputs) -> float:
    """ECS's task state change events the rule delivers: those with desiredStatus STOPPED."""
    return stops_a_month(inputs) * inputs.events_per_stop


def churn_read_units(inputs: CostInputs) -> float:
    return REGISTRATION_READ_UNITS + inputs.events_per_stop * EVENT_READ_UNITS


def write_units_per_second(inputs: CostInputs) -> float:
    heartbeats = inputs.instances / inputs.heartbeat_seconds * inputs.write_units_per_heartbeat
    return heartbeats + stops_per_second(inputs) * CHURN_WRITE_UNITS


def read_units_per_second(inputs: CostInputs) -> float:
    lists = list_reads_per_second(inputs) * inputs.read_units_per_list
    return lists + stops_per_second(inputs) * churn_read_units(inputs)


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
    writes, reads = write_units_per_second(inputs), read_units_per_second(inputs)
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
    return [
        Line(
            "DynamoDB writes (on-demand)",
            f"{_millions(write_units)} write units (heartbeats, task churn) at $0.625 per million",
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
    return Breakdown(
        inputs=inputs,
        lines=(*lines, *polls),
        cloud_map=_cloud_map(inputs, prices),
        per_instance_heartbeat=per_instance_heartbeat(inputs, prices),
        per_instance=per_instance(inputs, prices),
        polls_monthly=sum(line.monthly for line in polls) + reads_added,
        polls_dynamodb_reads=reads_added,
        east_west=_east_west(inputs, prices),
    )


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


_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--memory", "memory_mb", int, "Lambda memory in MB"),
    ("--architecture", "architecture", str, "x86_64 or arm64"),
    ("--heartbeat-ms", "heartbeat_ms", float, "billed Lambda ms per heartbeat"),
    ("--routed-ms", "routed_ms", float, "billed Lambda ms per routed request"),
    (
        "--write-units-per-heartbeat",
        "write_units_per_heartbeat",
        float,
        "DynamoDB write units per heartbeat",
    ),
    (
        "--read-units-per-list",
        "read_units_per_list",
        float,
        "DynamoDB read units per instance-list read",
    ),
    ("--cache-seconds", "cache_seconds", float, "LAMBDAMESH_CACHE_SECONDS"),
    ("--services", "services", int, "number of services"),
    ("--availability-zones", "availability_zones", int, "AZs of the Secrets Manager endpoint"),
    ("--secrets", "secrets", int, "Secrets Manager secrets"),
    (
        "--log-bytes",
        "log_bytes_per_invocation",
        float,
        "application log bytes per routed request",
    ),
    (
        "--heartbeat-log-bytes",
        "heartbeat_log_bytes",
        float,
        "application log bytes per successful heartbeat (576 before heartbeats went quiet)",
    ),
    (
        "--platform-log-bytes",
        "platform_log_bytes",
        float,
        "Lambda's START/END/REPORT bytes per invocation: 0 with SystemLogLevel WARN (the "
        "merge template), about 350 where ingested (chalice deploy)",
    ),
    (
        "--target-utilization",
        "target_utilization",
        float,
        "provisioned auto scaling target, 0.2..0.9",
    ),
    (
        "--outbound-sidecars",
        "outbound_sidecars",
        int,
        "sidecars with LAMBDAMESH_OUTBOUND_PORT on; 0 = off",
    ),
    ("--called-services", "called_services", int, "distinct services each such sidecar calls"),
    (
        "--refresh-seconds",
        "refresh_seconds",
        float,
        "LAMBDAMESH_OUTBOUND_REFRESH_SECONDS, 1..300",
    ),
    ("--poll-ms", "poll_ms", float, "billed Lambda ms per routing-view poll (200 or 304)"),
    (
        "--poll-log-bytes",
        "poll_log_bytes",
        float,
        "CloudWatch Logs bytes per poll (its request line is at DEBUG)",
    ),
    (
        "--east-west-rps",
        "east_west_rps",
        float,
        "service-to-service calls a second through the sidecars, priced through the gateway "
        "for comparison",
    ),
    (
        "--global-limit-rps",
        "global_limit_rps",
        float,
        "routed requests a second to services with a rate limit of scope global",
    ),
    (
        "--global-limit-writes",
        "global_limit_writes",
        int,
        "counters each such request writes: 1, or 2 with service and consumer limits",
    ),
    (
        "--global-limit-ms",
        "global_limit_ms",
        float,
        "billed Lambda ms a counter write adds to such a request",
    ),
    (
        "--task-lifetime-hours",
        "task_lifetime_hours",
        float,
        "how long a task lives before it is replaced (deployments, scaling, crashes); "
        "0 leaves task churn out",
    ),
    (
        "--events-per-stop",
        "events_per_stop",
        float,
        "ECS task state change events with desiredStatus STOPPED per task stopped",
    ),
    ("--event-ms", "event_ms", float, "billed Lambda ms per stop event"),
    (
        "--churn-log-bytes",
        "churn_log_bytes",
        float,
        "application log bytes per task replaced (its registration and its removal)",
    ),
)
_DEFAULTS = {field.name: field.default for field in fields(CostInputs)}


def add_cost_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cost = commands.add_parser(
        "cost",
        help="estimate a mesh's monthly AWS bill at list prices, beside Cloud Map's",
        description="Print a monthly breakdown (API Gateway, Lambda, DynamoDB, key store, "
        "logs) from the price table in lambdamesh/prices.py. Every guess is a flag.",
    )
    cost.add_argument("--instances", type=int, required=True, help="registered instances")
    cost.add_argument(
        "--heartbeat",
        type=float,
        default=DEFAULT_HEARTBEAT_SECONDS,
        help="heartbeat interval in s, 0.2..300 (default: %(default)g, the sidecar's)",
    )
    cost.add_argument(
        "--requests-per-second", type=float, required=True, help="routed requests a second"
    )
    cost.add_argument(
        "--lane",
        default="rest",
        help="rest (API Gateway), url (function URL) or mixed (routed requests on rest, "
        "the sidecars' heartbeats and polls on url)",
    )
    cost.add_argument("--billing", default="on-demand", help="DynamoDB: on-demand or provisioned")
    for flag, dest, kind, text in _FLAGS:
        default = _DEFAULTS[dest]
        cost.add_argument(
            flag, dest=dest, type=kind, default=default, help=f"{text} (default: {default})"
        )
    output = cost.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON for scripts")
    output.add_argument(
        "--markdown", action="store_true", help="print the lines as a Markdown table, for docs"
    )


def inputs_from_args(args: argparse.Namespace) -> CostInputs:
    extra = {dest: getattr(args, dest) for _, dest, _, _ in _FLAGS}
    return CostInputs(
        instances=args.instances,
        heartbeat_seconds=args.heartbeat,
        requests_per_second=args.requests_per_second,
        lane=args.lane,
        billing=args.billing,
        **extra,
    )


def cost_command(args: argparse.Namespace) -> int:
    try:
        breakdown = estimate(inputs_from_args(args))
    except CostInputError as exc:
        print(f"lambdamesh cost: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(to_json(breakdown), indent=2))
    elif args.markdown:
        print(render_markdown(breakdown))
    else:
        print(render(breakdown))
    return 0
