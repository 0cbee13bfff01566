"""What `lambdamesh cost` is told: each input declared once, with its flag, help and range.

A field of `CostInputs` carries its `Input` in its metadata; the checks here and the
command's flags (`command.py`) are read from it, so a new input cannot lack either.
"""

from __future__ import annotations

import math
from dataclasses import Field, dataclass, field, fields
from typing import Any

from chalicelib.errors import LambdaMeshError

# The sidecar's default LAMBDAMESH_HEARTBEAT_SECONDS (lambdamesh_sidecar/variables.py).
DEFAULT_HEARTBEAT_SECONDS = 60.0
# Where calls reach the function: `rest` (API Gateway's REST API) or `url` (the Lambda
# function URL) for every call, or `mixed`, the recommended deployment: clients through the
# REST API, the sidecars (heartbeats, routing-view polls) through the function URL.
LANES = ("rest", "url", "mixed")
BILLINGS = ("on-demand", "provisioned")
# Which lane Eureka clients call: the clients' (routed requests') or the sidecars'.
EUREKA_LANES = ("clients", "sidecars")
ARCHITECTURES = ("x86_64", "arm64")
# Lambda's longest run, 15 minutes: no call bills more.
LAMBDA_TIMEOUT_MS = 900_000
# Eureka's default renew and registry fetch intervals (renewalIntervalInSecs,
# registryFetchIntervalSeconds), which py-eureka-client and eureka-js-client keep.
DEFAULT_EUREKA_SECONDS = 30.0
# DynamoDB's largest item, 400 KB.
MAX_ITEM_BYTES = 400 * 1024
# A mesh certificate's life, LAMBDAMESH_MESH_CERT_SECONDS: its default and range
# (chalicelib/config.py: Settings.mesh_cert_seconds, MIN_ and MAX_MESH_CERT_SECONDS).
DEFAULT_CERT_SECONDS = 24 * 3600
MIN_CERT_SECONDS = 60
MAX_CERT_SECONDS = 7 * 24 * 3600
_INPUT = "lambdamesh.cost.input"


class CostInputError(LambdaMeshError):
    status = 400
    code = "bad_cost_input"


@dataclass(frozen=True)
class Input:
    """How one input is asked for and checked. `high` may name another field, whose value
    is then the bound; `choices`, when set, replace the range; `default` is the flag's
    default where the field has none."""

    flag: str
    help: str
    low: float = 0
    high: float | str = math.inf
    choices: tuple[str, ...] = ()
    default: float | None = None


def _flag(
    flag: str,
    help: str,
    low: float = 0,
    high: float | str = math.inf,
    *,
    choices: tuple[str, ...] = (),
    default: float | None = None,
) -> dict[str, Input]:
    return {_INPUT: Input(flag, help, low, high, choices, default)}


@dataclass(frozen=True)
class CostInputs:
    instances: int = field(metadata=_flag("--instances", "registered instances"))
    heartbeat_seconds: float = field(
        metadata=_flag(
            "--heartbeat",
            "heartbeat interval in s, 0.2..300, like the sidecar's",
            0.2,
            300,
            default=DEFAULT_HEARTBEAT_SECONDS,
        )
    )
    requests_per_second: float = field(
        metadata=_flag("--requests-per-second", "routed requests a second")
    )
    lane: str = field(
        default="rest",
        metadata=_flag(
            "--lane",
            "rest (API Gateway), url (function URL) or mixed (routed requests on rest, "
            "the sidecars' heartbeats and polls on url)",
            choices=LANES,
        ),
    )
    billing: str = field(
        default="on-demand",
        metadata=_flag("--billing", "DynamoDB: on-demand or provisioned", choices=BILLINGS),
    )
    memory_mb: int = field(
        default=512, metadata=_flag("--memory", "Lambda memory in MB", 128, 10_240)
    )
    architecture: str = field(
        default="arm64",
        metadata=_flag("--architecture", "x86_64 or arm64", choices=ARCHITECTURES),
    )
    # Measured: the heartbeat handler's CPU time stretched to 512 MB's CPU share, plus its
    # DynamoDB wait (docs/benchmarks.md#memory-sizing).
    heartbeat_ms: float = field(
        default=15.0,
        metadata=_flag("--heartbeat-ms", "billed Lambda ms per heartbeat", 0, LAMBDA_TIMEOUT_MS),
    )
    routed_ms: float = field(
        default=30.0,
        metadata=_flag("--routed-ms", "billed Lambda ms per routed request", 0, LAMBDA_TIMEOUT_MS),
    )
    write_units_per_heartbeat: float = field(
        default=1.0,
        metadata=_flag("--write-units-per-heartbeat", "DynamoDB write units per heartbeat"),
    )
    read_units_per_list: float = field(
        default=1.0,
        metadata=_flag("--read-units-per-list", "DynamoDB read units per instance-list read"),
    )
    cache_seconds: float = field(
        default=1.0, metadata=_flag("--cache-seconds", "LAMBDAMESH_CACHE_SECONDS", 0, 60)
    )
    services: int = field(default=1, metadata=_flag("--services", "number of services", 1))
    availability_zones: int = field(
        default=2,
        metadata=_flag("--availability-zones", "AZs of the Secrets Manager endpoint", 1, 6),
    )
    secrets: int = field(default=1, metadata=_flag("--secrets", "Secrets Manager secrets"))
    # Application log bytes of a routed request, measured: its request line, the request's
    # EMF document and the routed request's own (tests/bench/bench_log_bytes.py).
    log_bytes_per_invocation: float = field(
        default=875.0,
        metadata=_flag("--log-bytes", "application log bytes per routed request"),
    )
    # A successful heartbeat logs nothing at INFO (chalicelib/observability.py); before it
    # did, 576 B (a request line and an EMF document), measured the same way.
    heartbeat_log_bytes: float = field(
        default=0.0,
        metadata=_flag(
            "--heartbeat-log-bytes",
            "application log bytes per successful heartbeat (576 before heartbeats went quiet)",
        ),
    )
    # Lambda's own START/END/REPORT lines, on every invocation: none with the merge template's
    # SystemLogLevel WARN; about 350 B where they are ingested (`chalice deploy`).
    platform_log_bytes: float = field(
        default=0.0,
        metadata=_flag(
            "--platform-log-bytes",
            "Lambda's START/END/REPORT bytes per invocation: 0 with SystemLogLevel WARN (the "
            "merge template), about 350 where ingested (chalice deploy)",
        ),
    )
    target_utilization: float = field(
        default=0.70,
        metadata=_flag(
            "--target-utilization", "provisioned auto scaling target, 0.2..0.9", 0.2, 0.9
        ),
    )
    # The sidecar outbound port (0 sidecars: off). A poll is a cached read answered 200 or
    # 304, about a heartbeat's work without the write: billed like one until measured.
    outbound_sidecars: int = field(
        default=0,
        metadata=_flag("--outbound-sidecars", "sidecars with LAMBDAMESH_OUTBOUND_PORT on; 0 = off"),
    )
    called_services: int = field(
        default=1,
        metadata=_flag("--called-services", "distinct services each such sidecar calls", 1),
    )
    refresh_seconds: float = field(
        default=5.0,
        metadata=_flag("--refresh-seconds", "LAMBDAMESH_OUTBOUND_REFRESH_SECONDS, 1..300", 1, 300),
    )
    poll_ms: float = field(
        default=15.0,
        metadata=_flag(
            "--poll-ms",
            "billed Lambda ms per routing-view poll (200 or 304)",
            0,
            LAMBDA_TIMEOUT_MS,
        ),
    )
    # A poll's application log bytes, measured: its EMF document; its request line is logged
    # at DEBUG (Lambda's own lines are platform_log_bytes).
    poll_log_bytes: float = field(
        default=200.0,
        metadata=_flag(
            "--poll-log-bytes", "CloudWatch Logs bytes per poll (its request line is at DEBUG)"
        ),
    )
    east_west_rps: float = field(
        default=0.0,
        metadata=_flag(
            "--east-west-rps",
            "service-to-service calls a second through the sidecars, priced through the "
            "gateway for comparison",
        ),
    )
    # Mesh certificates (docs/mtls.md; 0 sidecars: off): a sidecar serving its inbound or
    # outbound port asks the registry for one at its task's start and again at half of each
    # one's life; each issue is an invocation on the sidecars' lane.
    mesh_sidecars: int = field(
        default=0,
        metadata=_flag(
            "--mesh-sidecars",
            "sidecars holding a mesh certificate (LAMBDAMESH_INBOUND_PORT or "
            "LAMBDAMESH_OUTBOUND_PORT on); 0 = off",
        ),
    )
    cert_seconds: int = field(
        default=DEFAULT_CERT_SECONDS,
        metadata=_flag(
            "--cert-seconds",
            "LAMBDAMESH_MESH_CERT_SECONDS, 60..604800; renewed at half of it",
            MIN_CERT_SECONDS,
            MAX_CERT_SECONDS,
        ),
    )
    # A warm issue, measured (tests/bench/bench_handler.py): 0.3-0.5 ms of CPU with its log
    # lines, 1-2 ms at 512 MB's CPU share; plus the mesh CA's Secrets Manager read, a round
    # trip in the region, whenever the function's 5-minute copy has lapsed (not measurable
    # here).
    cert_ms: float = field(
        default=20.0,
        metadata=_flag("--cert-ms", "billed Lambda ms per certificate issue", 0, LAMBDA_TIMEOUT_MS),
    )
    # Measured (tests/bench/bench_log_bytes.py): the line (308 B for a service named
    # `orders`; each letter of a name adds 3 B), its request line (281 B) and its EMF document.
    cert_log_bytes: float = field(
        default=790.0,
        metadata=_flag(
            "--cert-log-bytes",
            "application log bytes per certificate issue (its line, request line and EMF)",
        ),
    )
    # Routed requests a second to services whose exposure sets a rate limit of scope global:
    # each adds one conditional write per limit counted (service, and consumer when set)
    # and that write's wait to the request's duration.
    global_limit_rps: float = field(
        default=0.0,
        metadata=_flag(
            "--global-limit-rps",
            "routed requests a second to services with a rate limit of scope global",
            0,
            "requests_per_second",
        ),
    )
    global_limit_writes: int = field(
        default=1,
        metadata=_flag(
            "--global-limit-writes",
            "counters each such request writes: 1, or 2 with service and consumer limits",
            1,
            2,
        ),
    )
    global_limit_ms: float = field(
        default=5.0,
        metadata=_flag(
            "--global-limit-ms",
            "billed Lambda ms a counter write adds to such a request",
            0,
            29_000,
        ),
    )
    # Task churn: each instance's task is replaced this often (deployments, scaling, crashes).
    # A new task registers (one write, and one to the task index); a stopping one sends
    # ECS's events, events_per_stop of them with desiredStatus STOPPED (RUNNING, STOPPING,
    # DEPROVISIONING, STOPPED), each an invocation and a read of the task index; the first
    # deletes the instance (one write) and logs one line.
    task_lifetime_hours: float = field(
        default=24.0,
        metadata=_flag(
            "--task-lifetime-hours",
            "how long a task lives before it is replaced (deployments, scaling, crashes); "
            "0 leaves task churn out",
            0,
            100_000,
        ),
    )
    events_per_stop: float = field(
        default=4.0,
        metadata=_flag(
            "--events-per-stop",
            "ECS task state change events with desiredStatus STOPPED per task stopped",
            0,
            20,
        ),
    )
    event_ms: float = field(
        default=15.0,
        metadata=_flag("--event-ms", "billed Lambda ms per stop event", 0, LAMBDA_TIMEOUT_MS),
    )
    # Measured: the new task's registration (493 B: request line, EMF) and the stop's removal
    # (717 B: its line and EMF document); the other events of the stop log nothing at INFO.
    churn_log_bytes: float = field(
        default=1210.0,
        metadata=_flag(
            "--churn-log-bytes",
            "application log bytes per task replaced (its registration and its removal)",
        ),
    )
    # Eureka clients (chalicelib/eureka): each renews its lease and fetches the registry, its
    # delta or all of it. What each call does is counted in `eureka.py`.
    eureka_clients: int = field(
        default=0,
        metadata=_flag(
            "--eureka-clients",
            "Eureka client instances (py-eureka-client, Java, eureka-js-client) registered "
            "and fetching; 0 = none",
        ),
    )
    eureka_lane: str = field(
        default="clients",
        metadata=_flag(
            "--eureka-lane",
            "the lane Eureka clients call: clients (the REST API on the mixed lane, as "
            "docs/eureka.md configures them) or sidecars (the function URL on it)",
            choices=EUREKA_LANES,
        ),
    )
    eureka_renew_seconds: float = field(
        default=DEFAULT_EUREKA_SECONDS,
        metadata=_flag(
            "--eureka-renew-seconds",
            "their renew interval in s (Eureka's renewalIntervalInSecs), 1..300",
            1,
            300,
        ),
    )
    eureka_fetch_seconds: float = field(
        default=DEFAULT_EUREKA_SECONDS,
        metadata=_flag(
            "--eureka-fetch-seconds",
            "their registry fetch interval in s (registryFetchIntervalSeconds; "
            "py-eureka-client fetches with each renew), 1..3600",
            1,
            3600,
        ),
    )
    eureka_full_share: float = field(
        default=0.0,
        metadata=_flag(
            "--eureka-full-share",
            "share of their fetches that read the full registry, 0..1: 0 for py-eureka-client "
            "and Java (deltas after the first), 1 for eureka-js-client's default",
            0,
            1,
        ),
    )
    # Measured: py-eureka-client's record as stored, 586-590 B by DynamoDB's item-size rules
    # (tests/bench/bench_eureka.py); a renew writes ceil(size / 1 KB) units.
    eureka_item_bytes: float = field(
        default=600.0,
        metadata=_flag(
            "--eureka-item-bytes",
            "DynamoDB size of a Eureka client's instance item in bytes",
            1,
            MAX_ITEM_BYTES,
        ),
    )
    # A DynamoDB call's client-side CPU at 512 MB (a service's Query: 8 ms, measured by
    # tests/bench/bench_eureka.py) plus a round trip in the region (not measurable here).
    eureka_dynamodb_ms: float = field(
        default=14.0,
        metadata=_flag(
            "--eureka-dynamodb-ms",
            "billed Lambda ms each DynamoDB call of a Eureka fetch or registration adds",
            0,
            LAMBDA_TIMEOUT_MS,
        ),
    )
    # Measured: a fetch's EMF document; its request line is at DEBUG, as a poll's.
    eureka_fetch_log_bytes: float = field(
        default=200.0,
        metadata=_flag(
            "--eureka-fetch-log-bytes",
            "application log bytes per Eureka fetch, full or delta (its request line is at DEBUG)",
        ),
    )
    # Measured: a replaced client's registration, its DOWN registration and its cancel.
    eureka_churn_log_bytes: float = field(
        default=1411.0,
        metadata=_flag(
            "--eureka-churn-log-bytes",
            "application log bytes per Eureka client replaced (two registrations and a cancel)",
        ),
    )
    eureka_servers: int = field(
        default=2,
        metadata=_flag(
            "--eureka-servers",
            "Eureka servers on EC2 in the comparison, one per AZ (not in the total)",
            1,
        ),
    )

    def __post_init__(self) -> None:
        for problem in problems(self):
            raise CostInputError(problem)


def declared() -> list[tuple[Field[Any], Input]]:
    """Every field of `CostInputs` with its declaration, in the fields' order."""
    return [(each, _declaration(each)) for each in fields(CostInputs)]


def _declaration(each: Field[Any]) -> Input:
    spec = each.metadata.get(_INPUT)
    if not isinstance(spec, Input):
        raise TypeError(f"CostInputs.{each.name} declares no flag (metadata=_flag(...))")
    return spec


def _out_of_bounds(inputs: CostInputs, value: Any, spec: Input) -> str | None:
    if spec.choices:
        if value in spec.choices:
            return None
        return f"{spec.flag} must be one of {', '.join(spec.choices)}, not {value!r}"
    high = getattr(inputs, spec.high) if isinstance(spec.high, str) else spec.high
    if spec.low <= value <= high:
        return None
    if high == math.inf:
        return f"{spec.flag} must be at least {spec.low:g}, not {value:g}"
    return f"{spec.flag} must be between {spec.low:g} and {high:g}, not {value:g}"


def _inconsistent(inputs: CostInputs) -> list[str]:
    """The rules that tie one input to another."""
    found = []
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


def problems(inputs: CostInputs) -> list[str]:
    """What is wrong with `inputs`, each said as the flag to change: its declared range or
    choices first, in the fields' order, then the rules that tie inputs together."""
    found = [_out_of_bounds(inputs, getattr(inputs, each.name), spec) for each, spec in declared()]
    return [problem for problem in found if problem] + _inconsistent(inputs)
