"""Every variable the sidecar reads, declared once: its name, its range and default where it
has them, and its meaning as ``--help`` and the README show it. The readers are ``config``
(registration and life) and ``outbound_settings`` (the outbound port), over ``environment``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lambdamesh_routing.limits import MAX_LEASE_SECONDS, MAX_WEIGHT, MIN_LEASE_SECONDS, MIN_WEIGHT


@dataclass(frozen=True)
class Bounded:
    """A number the environment may set, within ``low..high``; ``default`` when unset (None:
    unset means absent, or is decided elsewhere)."""

    name: str
    low: float
    high: float
    default: float | None = None
    integer: bool = False

    @property
    def span(self) -> str:
        return f"{self.low:g}..{self.high:g}"

    @property
    def described(self) -> str:
        """The range and the default, as help texts show them."""
        kind = "integer " if self.integer else ""
        default = "" if self.default is None else f" (default {self.default:g})"
        return f"{kind}{self.span}{default}"


ECS_METADATA_VARIABLE = "ECS_CONTAINER_METADATA_URI_V4"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# A crashed task leaves rotation on ECS's stop event (the registry's task-events rule), within
# seconds; the lease only has to catch what ECS cannot see, a hung or cut-off task. So
# heartbeats can be rare: one a minute, which is what keeps an instance within half of Cloud
# Map's price (`lambdamesh cost`), and a lease of two and a half intervals, so one lost
# heartbeat and its retries never drop a healthy instance. A change of readiness is sent at
# once, whatever the interval (LAMBDAMESH_READINESS_SECONDS).
DEFAULT_HEARTBEAT_SECONDS = 60.0
DEFAULT_LEASE_SECONDS = 150
DEFAULT_READINESS_SECONDS = 5.0
LEASE_MARGIN_SECONDS = 1.0
DEFAULT_REQUEST_TIMEOUT_SECONDS = 5.0

# The outbound port (off unless LAMBDAMESH_OUTBOUND_PORT is set), whose address settings are
# the gateway's under this prefix.
OUTBOUND_PREFIX = "LAMBDAMESH_OUTBOUND_"
DEFAULT_OUTBOUND_REFRESH_SECONDS = 5.0
DEFAULT_OUTBOUND_STALE_SECONDS = 60.0
DEFAULT_OUTBOUND_TIMEOUT_SECONDS = 30.0
DEFAULT_OUTBOUND_CONNECT_TIMEOUT_SECONDS = 2.0
DEFAULT_OUTBOUND_MAX_CONNECTIONS = 256

# The inbound port (off unless LAMBDAMESH_INBOUND_PORT is set): mesh TLS from callers, the
# app on loopback behind it.
INBOUND_PREFIX = "LAMBDAMESH_INBOUND_"
DEFAULT_INBOUND_MAX_CONNECTIONS = 512
DEFAULT_INBOUND_MAX_CONCURRENCY = 100
DEFAULT_INBOUND_MAX_QUEUE = 100
DEFAULT_INBOUND_QUEUE_SECONDS = 5.0
DEFAULT_INBOUND_TIMEOUT_SECONDS = 60.0
DEFAULT_INBOUND_REFRESH_SECONDS = 5.0

# The gateway's default LAMBDAMESH_CACHE_SECONDS: how old the instances may be that the
# registry answers a routing view with, and that a gateway routes on.
GATEWAY_CACHE_SECONDS = 1.0
# A routing view's poll (through API Gateway, the Lambda's cold start included), which ends
# after the refresh period began, on top of the ages above.
DRAIN_MARGIN_SECONDS = 2.0
# On SIGTERM: DRAINING for this long, then deregister. Callers still send new requests while
# they route on what they read before DRAINING: a gateway for its cache period, another task's
# outbound port for its refresh period plus that cache. The default outlasts both with the
# default settings. With the rest of the shutdown (at most 15 s) it must fit the container's
# ECS stop timeout.
DEFAULT_DRAIN_SECONDS = (
    DEFAULT_OUTBOUND_REFRESH_SECONDS + GATEWAY_CACHE_SECONDS + DRAIN_MARGIN_SECONDS
)
MAX_DRAIN_SECONDS = 120.0

PORT = Bounded("LAMBDAMESH_PORT", 1, 65535, integer=True)
HEARTBEAT = Bounded("LAMBDAMESH_HEARTBEAT_SECONDS", 0.2, 300, DEFAULT_HEARTBEAT_SECONDS)
LEASE = Bounded(
    "LAMBDAMESH_LEASE_SECONDS",
    MIN_LEASE_SECONDS,
    MAX_LEASE_SECONDS,
    DEFAULT_LEASE_SECONDS,
    integer=True,
)
READINESS = Bounded("LAMBDAMESH_READINESS_SECONDS", 0.2, 60, DEFAULT_READINESS_SECONDS)
WEIGHT = Bounded("LAMBDAMESH_WEIGHT", MIN_WEIGHT, MAX_WEIGHT, integer=True)
REQUEST_TIMEOUT = Bounded(
    "LAMBDAMESH_REQUEST_TIMEOUT_SECONDS", 0.1, 60, DEFAULT_REQUEST_TIMEOUT_SECONDS
)
DRAIN = Bounded("LAMBDAMESH_DRAIN_SECONDS", 0, MAX_DRAIN_SECONDS, DEFAULT_DRAIN_SECONDS)
OUTBOUND_PORT = Bounded("LAMBDAMESH_OUTBOUND_PORT", 1, 65535, integer=True)
OUTBOUND_REFRESH = Bounded(
    "LAMBDAMESH_OUTBOUND_REFRESH_SECONDS", 1, 300, DEFAULT_OUTBOUND_REFRESH_SECONDS
)
OUTBOUND_STALE = Bounded(
    "LAMBDAMESH_OUTBOUND_STALE_SECONDS", 0, 3600, DEFAULT_OUTBOUND_STALE_SECONDS
)
OUTBOUND_TIMEOUT = Bounded(
    "LAMBDAMESH_OUTBOUND_TIMEOUT_SECONDS", 0.1, 900, DEFAULT_OUTBOUND_TIMEOUT_SECONDS
)
OUTBOUND_CONNECT_TIMEOUT = Bounded(
    "LAMBDAMESH_OUTBOUND_CONNECT_TIMEOUT_SECONDS", 0.1, 30, DEFAULT_OUTBOUND_CONNECT_TIMEOUT_SECONDS
)
OUTBOUND_MAX_CONNECTIONS = Bounded(
    "LAMBDAMESH_OUTBOUND_MAX_CONNECTIONS",
    1,
    4096,
    DEFAULT_OUTBOUND_MAX_CONNECTIONS,
    integer=True,
)
# The ports' figures (requests, statuses, latency by peer), written as EMF every period.
DEFAULT_METRICS_SECONDS = 60.0
METRICS = Bounded("LAMBDAMESH_METRICS_SECONDS", 0, 3600, DEFAULT_METRICS_SECONDS)
INBOUND_PORT = Bounded("LAMBDAMESH_INBOUND_PORT", 1, 65535, integer=True)
INBOUND_MAX_CONNECTIONS = Bounded(
    "LAMBDAMESH_INBOUND_MAX_CONNECTIONS", 1, 4096, DEFAULT_INBOUND_MAX_CONNECTIONS, integer=True
)
INBOUND_MAX_CONCURRENCY = Bounded(
    "LAMBDAMESH_INBOUND_MAX_CONCURRENCY", 1, 10000, DEFAULT_INBOUND_MAX_CONCURRENCY, integer=True
)
INBOUND_MAX_QUEUE = Bounded(
    "LAMBDAMESH_INBOUND_MAX_QUEUE", 0, 10000, DEFAULT_INBOUND_MAX_QUEUE, integer=True
)
INBOUND_QUEUE = Bounded("LAMBDAMESH_INBOUND_QUEUE_SECONDS", 0, 60, DEFAULT_INBOUND_QUEUE_SECONDS)
INBOUND_TIMEOUT = Bounded(
    "LAMBDAMESH_INBOUND_TIMEOUT_SECONDS", 0.1, 900, DEFAULT_INBOUND_TIMEOUT_SECONDS
)
INBOUND_REFRESH = Bounded(
    "LAMBDAMESH_INBOUND_REFRESH_SECONDS", 1, 300, DEFAULT_INBOUND_REFRESH_SECONDS
)

# Name and meaning of every variable, in the order ``--help`` and the README list them.
VARIABLES: tuple[tuple[str, str], ...] = (
    ("LAMBDAMESH_URL", "required: base URL of the lambdamesh API, http(s)://host[:port][/prefix]"),
    ("LAMBDAMESH_TOKEN", "required: bearer token for the registry (never logged)"),
    ("LAMBDAMESH_SERVICE", "required: service name, a-z 0-9 '-', 1-63 characters"),
    ("LAMBDAMESH_VERSION", "required: version, a-z 0-9 '.' '_' '-', 1-32 characters (e.g. v1)"),
    (PORT.name, f"required: port the app listens on, {PORT.span}"),
    ("LAMBDAMESH_HOST", "address to register; default: the task's IPv4 from ECS task metadata"),
    ("LAMBDAMESH_INSTANCE_ID", "default: the ECS task id, else <host>-<port> with '-' separators"),
    ("LAMBDAMESH_HEALTH_PATH", "HTTP readiness path, e.g. /health; default: TCP connect to port"),
    (
        "LAMBDAMESH_TASK_ARN",
        "the ECS task to register under, whose stop event removes the instance; default: the "
        "task's TaskARN from ECS task metadata (set it only outside ECS, as the demo does)",
    ),
    (HEARTBEAT.name, f"heartbeat interval, {HEARTBEAT.described}"),
    (
        LEASE.name,
        f"lease, {LEASE.described}, >= heartbeat x 1.1 + {LEASE_MARGIN_SECONDS:g} s: how long "
        "a hung task stays listed",
    ),
    (
        READINESS.name,
        f"how often the app's readiness is checked, {READINESS.described}; a change is "
        "reported at once",
    ),
    (WEIGHT.name, f"load-balancing weight, integer {WEIGHT.span} (default: the registry's)"),
    ("LAMBDAMESH_ZONE", "zone, a-z 0-9 '-'; default: the task's AvailabilityZone"),
    ("LAMBDAMESH_METADATA", 'JSON object of string values, e.g. {"commit": "abc123"}'),
    (REQUEST_TIMEOUT.name, f"timeout of each registry call, {REQUEST_TIMEOUT.described}"),
    (
        DRAIN.name,
        f"on SIGTERM, report DRAINING and wait this long before deregistering, "
        f"{DRAIN.described}; at least the callers' {OUTBOUND_REFRESH.name} + "
        f"{GATEWAY_CACHE_SECONDS + DRAIN_MARGIN_SECONDS:g} s; "
        "it + 15 s must fit the container's ECS stopTimeout",
    ),
    (
        OUTBOUND_PORT.name,
        f"serve the outbound port on 127.0.0.1:PORT, {OUTBOUND_PORT.span} (default: off); the "
        "app calls http://127.0.0.1:PORT/{service}/{version}/{path}",
    ),
    (
        OUTBOUND_REFRESH.name,
        f"how often the outbound port re-reads the routing views it uses, "
        f"{OUTBOUND_REFRESH.described}",
    ),
    (
        OUTBOUND_STALE.name,
        f"keep routing on the last view this long past a failed refresh, "
        f"{OUTBOUND_STALE.described}",
    ),
    (
        OUTBOUND_TIMEOUT.name,
        f"outbound call's time to an answer, retries included, {OUTBOUND_TIMEOUT.described}; "
        "a service's policy may shorten it",
    ),
    (
        OUTBOUND_CONNECT_TIMEOUT.name,
        f"outbound connect timeout per instance, {OUTBOUND_CONNECT_TIMEOUT.described}",
    ),
    (
        OUTBOUND_MAX_CONNECTIONS.name,
        "outbound connections from the app served at once, "
        f"{OUTBOUND_MAX_CONNECTIONS.span} (default {DEFAULT_OUTBOUND_MAX_CONNECTIONS}); "
        "more get a 503",
    ),
    (
        f"{OUTBOUND_PREFIX}ALLOW_LOOPBACK",
        "true to let the outbound port reach loopback instances (local runs only; default false)",
    ),
    (
        f"{OUTBOUND_PREFIX}ALLOW_PRIVATE",
        "true to let the outbound port reach private addresses, where tasks live (default "
        f"false); then {OUTBOUND_PREFIX}ALLOWED_NETWORKS is required",
    ),
    (
        f"{OUTBOUND_PREFIX}ALLOWED_NETWORKS",
        "comma-separated CIDRs, the tasks' subnets: the only addresses the outbound port may "
        "reach (default: none named, and no private address)",
    ),
    (
        INBOUND_PORT.name,
        f"serve the inbound port on PORT, {INBOUND_PORT.span} (default: off): callers' mutual "
        f"TLS ends here and the app, on 127.0.0.1:{PORT.name}, is called behind it; the "
        "instance is registered at this port",
    ),
    (
        INBOUND_MAX_CONNECTIONS.name,
        f"inbound connections served at once, {INBOUND_MAX_CONNECTIONS.described}; more get a 503",
    ),
    (
        INBOUND_MAX_CONCURRENCY.name,
        f"requests with the app at once, {INBOUND_MAX_CONCURRENCY.described}",
    ),
    (
        INBOUND_MAX_QUEUE.name,
        f"requests waiting for a turn with the app, {INBOUND_MAX_QUEUE.described}; more get a "
        "503 sidecar_overloaded",
    ),
    (
        INBOUND_QUEUE.name,
        f"how long a request may wait for a turn, {INBOUND_QUEUE.described}; then a 503",
    ),
    (
        INBOUND_TIMEOUT.name,
        f"the app's time to answer (and each read of its answer), {INBOUND_TIMEOUT.described}",
    ),
    (
        INBOUND_REFRESH.name,
        f"how often the service's own mTLS mode and intentions are re-read, "
        f"{INBOUND_REFRESH.described}",
    ),
    (
        METRICS.name,
        f"write the ports' figures (requests, statuses, p50/p99 latency by peer service, in "
        f"and out) to stdout as CloudWatch EMF every this many seconds, {METRICS.described}; "
        "0: never",
    ),
    ("LAMBDAMESH_LOG_LEVEL", f"{', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]} (default INFO)"),
    (
        ECS_METADATA_VARIABLE,
        "set by ECS; read for the defaults of HOST, INSTANCE_ID, ZONE and TASK_ARN",
    ),
)
