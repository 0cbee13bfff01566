"""One typed settings object, read from the environment once and validated before any network use.

A bad setting stops the sidecar at once with one line naming the variable: ECS shows a stopped
container's exit code and last log line, and a task that fails fast with a clear reason is far
easier to fix than one that registers the wrong thing. The registry's own rules (names, ranges,
metadata limits) are checked here too, so a typo fails at start-up instead of as a 400 that the
sidecar would otherwise keep retrying.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from lambdamesh_routing.flags import InvalidFlag, parse_flag
from lambdamesh_routing.limits import MAX_LEASE_SECONDS, MAX_WEIGHT, MIN_LEASE_SECONDS, MIN_WEIGHT
from lambdamesh_routing.names import (
    INSTANCE_ID_RULE,
    MAX_INSTANCE_ID,
    MAX_METADATA_ENTRIES,
    MAX_METADATA_VALUE,
    METADATA_KEY_RULE,
    SERVICE_RULE,
    TASK_ARN_RULE,
    VERSION_RULE,
    ZONE_RULE,
)
from lambdamesh_sidecar.ecs import MetadataUnavailable, TaskMetadata, fetch_task_metadata

_HOST_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
HOSTNAME_RULE = re.compile(rf"{_HOST_LABEL}(\.{_HOST_LABEL})*\.?")
_INTEGER = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")
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

ECS_METADATA_VARIABLE = "ECS_CONTAINER_METADATA_URI_V4"

# The outbound port (off unless LAMBDAMESH_OUTBOUND_PORT is set), whose address settings are
# the gateway's under this prefix.
OUTBOUND_PREFIX = "LAMBDAMESH_OUTBOUND_"
DEFAULT_OUTBOUND_REFRESH_SECONDS = 5.0
DEFAULT_OUTBOUND_STALE_SECONDS = 60.0
DEFAULT_OUTBOUND_TIMEOUT_SECONDS = 30.0
DEFAULT_OUTBOUND_CONNECT_TIMEOUT_SECONDS = 2.0
DEFAULT_OUTBOUND_MAX_CONNECTIONS = 256

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

# Name and meaning of every variable, in the order ``--help`` and the README list them.
VARIABLES: tuple[tuple[str, str], ...] = (
    ("LAMBDAMESH_URL", "required: base URL of the lambdamesh API, http(s)://host[:port][/prefix]"),
    ("LAMBDAMESH_TOKEN", "required: bearer token for the registry (never logged)"),
    ("LAMBDAMESH_SERVICE", "required: service name, a-z 0-9 '-', 1-63 characters"),
    ("LAMBDAMESH_VERSION", "required: version, a-z 0-9 '.' '_' '-', 1-32 characters (e.g. v1)"),
    ("LAMBDAMESH_PORT", "required: port the app listens on, 1..65535"),
    ("LAMBDAMESH_HOST", "address to register; default: the task's IPv4 from ECS task metadata"),
    ("LAMBDAMESH_INSTANCE_ID", "default: the ECS task id, else <host>-<port> with '-' separators"),
    ("LAMBDAMESH_HEALTH_PATH", "HTTP readiness path, e.g. /health; default: TCP connect to port"),
    (
        "LAMBDAMESH_TASK_ARN",
        "the ECS task to register under, whose stop event removes the instance; default: the "
        "task's TaskARN from ECS task metadata (set it only outside ECS, as the demo does)",
    ),
    (
        "LAMBDAMESH_HEARTBEAT_SECONDS",
        f"heartbeat interval, 0.2..300 (default {DEFAULT_HEARTBEAT_SECONDS:g})",
    ),
    (
        "LAMBDAMESH_LEASE_SECONDS",
        f"lease, integer {MIN_LEASE_SECONDS}..{MAX_LEASE_SECONDS}, >= heartbeat x 1.1 + 1 s "
        f"(default {DEFAULT_LEASE_SECONDS}): how long a hung task stays listed",
    ),
    (
        "LAMBDAMESH_READINESS_SECONDS",
        f"how often the app's readiness is checked, 0.2..60 (default "
        f"{DEFAULT_READINESS_SECONDS:g}); a change is reported at once",
    ),
    (
        "LAMBDAMESH_WEIGHT",
        f"load-balancing weight, integer {MIN_WEIGHT}..{MAX_WEIGHT} (default: the registry's)",
    ),
    ("LAMBDAMESH_ZONE", "zone, a-z 0-9 '-'; default: the task's AvailabilityZone"),
    ("LAMBDAMESH_METADATA", 'JSON object of string values, e.g. {"commit": "abc123"}'),
    ("LAMBDAMESH_REQUEST_TIMEOUT_SECONDS", "timeout of each registry call, 0.1..60 (default 5)"),
    (
        "LAMBDAMESH_DRAIN_SECONDS",
        "on SIGTERM, report DRAINING and wait this long before deregistering, 0..120 "
        f"(default {DEFAULT_DRAIN_SECONDS:g}); at least the callers' "
        "LAMBDAMESH_OUTBOUND_REFRESH_SECONDS + "
        f"{GATEWAY_CACHE_SECONDS + DRAIN_MARGIN_SECONDS:g} s; "
        "it + 15 s must fit the container's ECS stopTimeout",
    ),
    (
        "LAMBDAMESH_OUTBOUND_PORT",
        "serve the outbound port on 127.0.0.1:PORT, 1..65535 (default: off); the app calls "
        "http://127.0.0.1:PORT/{service}/{version}/{path}",
    ),
    (
        "LAMBDAMESH_OUTBOUND_REFRESH_SECONDS",
        "how often the outbound port re-reads the routing views it uses, 1..300 (default 5)",
    ),
    (
        "LAMBDAMESH_OUTBOUND_STALE_SECONDS",
        "keep routing on the last view this long past a failed refresh, 0..3600 (default 60)",
    ),
    (
        "LAMBDAMESH_OUTBOUND_TIMEOUT_SECONDS",
        "outbound call's time to an answer, retries included, 0.1..900 (default 30); "
        "a service's policy may shorten it",
    ),
    (
        "LAMBDAMESH_OUTBOUND_CONNECT_TIMEOUT_SECONDS",
        "outbound connect timeout per instance, 0.1..30 (default 2)",
    ),
    (
        "LAMBDAMESH_OUTBOUND_MAX_CONNECTIONS",
        "outbound connections from the app served at once, 1..4096 (default 256); more get a 503",
    ),
    (
        "LAMBDAMESH_OUTBOUND_ALLOW_LOOPBACK",
        "true to let the outbound port reach loopback instances (local runs only; default false)",
    ),
    (
        "LAMBDAMESH_OUTBOUND_ALLOW_PRIVATE",
        "true to let the outbound port reach private addresses, where tasks live (default "
        "false); then LAMBDAMESH_OUTBOUND_ALLOWED_NETWORKS is required",
    ),
    (
        "LAMBDAMESH_OUTBOUND_ALLOWED_NETWORKS",
        "comma-separated CIDRs, the tasks' subnets: the only addresses the outbound port may "
        "reach (default: none named, and no private address)",
    ),
    ("LAMBDAMESH_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR (default INFO)"),
    (
        ECS_METADATA_VARIABLE,
        "set by ECS; read for the defaults of HOST, INSTANCE_ID, ZONE and TASK_ARN",
    ),
)

TaskLookup = Callable[[str], TaskMetadata]


class ConfigError(Exception):
    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable} {message}")
        self.variable = variable
        self.message = message


@dataclass(frozen=True)
class Outbound:
    """The outbound port's settings; present only when LAMBDAMESH_OUTBOUND_PORT is set."""

    port: int
    refresh_seconds: float = DEFAULT_OUTBOUND_REFRESH_SECONDS
    stale_seconds: float = DEFAULT_OUTBOUND_STALE_SECONDS
    timeout_seconds: float = DEFAULT_OUTBOUND_TIMEOUT_SECONDS
    connect_timeout_seconds: float = DEFAULT_OUTBOUND_CONNECT_TIMEOUT_SECONDS
    max_connections: int = DEFAULT_OUTBOUND_MAX_CONNECTIONS
    allow_loopback: bool = False
    allow_private: bool = False
    allowed_networks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    registry_url: str
    token: str = field(repr=False)
    service: str
    version: str
    host: str
    port: int
    instance_id: str
    health_path: str | None = None
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    readiness_seconds: float = DEFAULT_READINESS_SECONDS
    task_arn: str | None = None
    weight: int | None = None
    zone: str | None = None
    metadata: Mapping[str, str] | None = None
    request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    log_level: str = "INFO"
    outbound: Outbound | None = None


def load(environ: Mapping[str, str], lookup_task: TaskLookup = fetch_task_metadata) -> Settings:
    """Validate everything the environment alone decides before asking ECS for anything."""
    registry_url = _registry_url(environ)
    token = _token(environ)
    service = _name(environ, "LAMBDAMESH_SERVICE", SERVICE_RULE, "1-63 of a-z, 0-9, '-'")
    version = _name(environ, "LAMBDAMESH_VERSION", VERSION_RULE, "1-32 of a-z, 0-9, '._-'")
    port = _integer("LAMBDAMESH_PORT", _required(environ, "LAMBDAMESH_PORT"), 1, 65535)
    heartbeat, lease = _timing(environ)
    readiness = _number(environ, "LAMBDAMESH_READINESS_SECONDS", 0.2, 60, DEFAULT_READINESS_SECONDS)
    weight = _optional_integer(environ, "LAMBDAMESH_WEIGHT", MIN_WEIGHT, MAX_WEIGHT)
    health_path = _health_path(environ)
    metadata = _metadata(environ)
    request_timeout = _request_timeout(environ)
    drain = _number(
        environ, "LAMBDAMESH_DRAIN_SECONDS", 0, MAX_DRAIN_SECONDS, DEFAULT_DRAIN_SECONDS
    )
    log_level = _log_level(environ)
    outbound = _outbound(environ)
    host = _host(environ)
    instance_id = _explicit_instance_id(environ)
    zone = _zone(environ)
    task_arn = _task_arn(environ)
    task = _task_metadata(environ, lookup_task, needed=None in (host, instance_id, zone, task_arn))
    host = host or _host_from_task(task)
    return Settings(
        registry_url=registry_url,
        token=token,
        service=service,
        version=version,
        host=host,
        port=port,
        instance_id=instance_id or derive_instance_id(task, host, port),
        health_path=health_path,
        heartbeat_seconds=heartbeat,
        lease_seconds=lease,
        readiness_seconds=readiness,
        task_arn=task_arn or _task_arn_from(task),
        weight=weight,
        zone=zone or (task.availability_zone if task else None),
        metadata=metadata,
        request_timeout_seconds=request_timeout,
        drain_seconds=drain,
        log_level=log_level,
        outbound=outbound,
    )


def derive_instance_id(task: TaskMetadata | None, host: str, port: int) -> str:
    """The task id when ECS tells it (stable across sidecar restarts), else host and port."""
    task_id = _trimmed(re.sub(r"[^a-z0-9._-]+", "-", (task.task_id or "").lower())) if task else ""
    return task_id or _trimmed(re.sub(r"[^a-z0-9]+", "-", f"{host}-{port}".lower()))


def _trimmed(text: str) -> str:
    return text.strip("._-")[:MAX_INSTANCE_ID].rstrip("._-")


def _optional(environ: Mapping[str, str], name: str) -> str | None:
    """Stripped value, or None when unset or blank (ECS task definitions often carry "")."""
    return environ.get(name, "").strip() or None


def _required(environ: Mapping[str, str], name: str) -> str:
    value = _optional(environ, name)
    if value is None:
        raise ConfigError(name, "is required")
    return value


def _show(raw: str) -> str:
    return repr(raw if len(raw) <= 60 else raw[:60] + "...")


def _integer(name: str, raw: str, low: int, high: int) -> int:
    if not _INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
        raise ConfigError(name, f"must be an integer in {low}..{high}, got {_show(raw)}")
    return int(raw)


def _optional_integer(environ: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = _optional(environ, name)
    return None if raw is None else _integer(name, raw, low, high)


def _number(
    environ: Mapping[str, str], name: str, low: float, high: float, default: float
) -> float:
    raw = _optional(environ, name)
    if raw is None:
        return default
    value = float(raw) if _NUMBER.fullmatch(raw) else math.nan
    if not low <= value <= high:
        raise ConfigError(name, f"must be a number of seconds in {low}..{high}, got {_show(raw)}")
    return value


def _timing(environ: Mapping[str, str]) -> tuple[float, int]:
    heartbeat = _number(
        environ, "LAMBDAMESH_HEARTBEAT_SECONDS", 0.2, 300, DEFAULT_HEARTBEAT_SECONDS
    )
    lease = _optional_integer(
        environ, "LAMBDAMESH_LEASE_SECONDS", MIN_LEASE_SECONDS, MAX_LEASE_SECONDS
    )
    lease = DEFAULT_LEASE_SECONDS if lease is None else lease
    # A heartbeat may come 10 % late (jitter) and take a moment to land: the lease must
    # outlast both, or a healthy instance would drop out of rotation between heartbeats.
    least = heartbeat * 1.1 + LEASE_MARGIN_SECONDS
    if lease < least:
        raise ConfigError(
            "LAMBDAMESH_LEASE_SECONDS",
            f"must be at least {least:g} (LAMBDAMESH_HEARTBEAT_SECONDS {heartbeat:g} plus 10 % "
            f"jitter plus {LEASE_MARGIN_SECONDS:g} s), got {lease}",
        )
    return heartbeat, lease


def _request_timeout(environ: Mapping[str, str]) -> float:
    name = "LAMBDAMESH_REQUEST_TIMEOUT_SECONDS"
    return _number(environ, name, 0.1, 60, DEFAULT_REQUEST_TIMEOUT_SECONDS)


def _registry_url(environ: Mapping[str, str]) -> str:
    raw = _required(environ, "LAMBDAMESH_URL")
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("LAMBDAMESH_URL", f"must be an http:// or https:// URL, got {_show(raw)}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError("LAMBDAMESH_URL", "must not carry credentials, a query or a fragment")
    return raw.rstrip("/")


def _token(environ: Mapping[str, str]) -> str:
    """Never echo the value: an error message ends up in CloudWatch."""
    token = _required(environ, "LAMBDAMESH_TOKEN")
    if any(char.isspace() or not char.isprintable() for char in token):
        raise ConfigError("LAMBDAMESH_TOKEN", "must not contain whitespace or control characters")
    return token


def _name(environ: Mapping[str, str], name: str, rule: re.Pattern[str], described: str) -> str:
    raw = _required(environ, name)
    if not rule.fullmatch(raw):
        raise ConfigError(name, f"must be {described} (lowercase), got {_show(raw)}")
    return raw


def _explicit_instance_id(environ: Mapping[str, str]) -> str | None:
    raw = _optional(environ, "LAMBDAMESH_INSTANCE_ID")
    if raw is not None and not INSTANCE_ID_RULE.fullmatch(raw):
        raise ConfigError(
            "LAMBDAMESH_INSTANCE_ID",
            f"must be 1-128 of a-z, 0-9, '._-' (lowercase), got {_show(raw)}",
        )
    return raw


def _task_arn(environ: Mapping[str, str]) -> str | None:
    raw = _optional(environ, "LAMBDAMESH_TASK_ARN")
    if raw is not None and not TASK_ARN_RULE.fullmatch(raw):
        raise ConfigError(
            "LAMBDAMESH_TASK_ARN",
            f"must be an ECS task ARN, arn:aws:ecs:<region>:<account>:task/<cluster>/<id>, "
            f"got {_show(raw)}",
        )
    return raw


def _task_arn_from(task: TaskMetadata | None) -> str | None:
    """The task's ARN as ECS tells it; None outside ECS, or for one the registry would refuse
    (the instance then registers without it and leaves by its lease alone)."""
    arn = task.task_arn if task else None
    return arn if arn is not None and TASK_ARN_RULE.fullmatch(arn) else None


def _host(environ: Mapping[str, str]) -> str | None:
    raw = _optional(environ, "LAMBDAMESH_HOST")
    if raw is None:
        return None
    host = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
    if not _is_host(host):
        raise ConfigError(
            "LAMBDAMESH_HOST", f"must be an IP address or a DNS name, got {_show(raw)}"
        )
    return host


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return len(host) <= 253 and HOSTNAME_RULE.fullmatch(host) is not None
    return True


def _task_metadata(
    environ: Mapping[str, str], lookup_task: TaskLookup, needed: bool
) -> TaskMetadata | None:
    uri = _optional(environ, ECS_METADATA_VARIABLE)
    if uri is None or not needed:
        return None
    try:
        return lookup_task(uri)
    except MetadataUnavailable as exc:
        raise ConfigError(ECS_METADATA_VARIABLE, f"task metadata unavailable: {exc}") from exc


def _host_from_task(task: TaskMetadata | None) -> str:
    if task is None:
        raise ConfigError(
            "LAMBDAMESH_HOST", f"is required when {ECS_METADATA_VARIABLE} is not set (outside ECS)"
        )
    if task.ipv4 is None or not _is_host(task.ipv4):
        raise ConfigError(
            "LAMBDAMESH_HOST",
            f"is required: the task's network mode {task.network_mode!r} gives no address "
            "other tasks can reach (only awsvpc and host modes do)",
        )
    return task.ipv4


def _zone(environ: Mapping[str, str]) -> str | None:
    raw = _optional(environ, "LAMBDAMESH_ZONE")
    if raw is not None and not ZONE_RULE.fullmatch(raw):
        raise ConfigError("LAMBDAMESH_ZONE", f"must be 1-64 of a-z, 0-9, '-', got {_show(raw)}")
    return raw


def _health_path(environ: Mapping[str, str]) -> str | None:
    raw = _optional(environ, "LAMBDAMESH_HEALTH_PATH")
    if raw is not None and (not raw.startswith("/") or any(c.isspace() for c in raw)):
        raise ConfigError(
            "LAMBDAMESH_HEALTH_PATH", f"must start with '/' and hold no spaces, got {_show(raw)}"
        )
    return raw


def _metadata(environ: Mapping[str, str]) -> dict[str, str] | None:
    raw = _optional(environ, "LAMBDAMESH_METADATA")
    if raw is None:
        return None
    try:
        document: Any = json.loads(raw)
    except ValueError:
        document = None
    if not isinstance(document, dict) or len(document) > MAX_METADATA_ENTRIES:
        raise ConfigError(
            "LAMBDAMESH_METADATA",
            f"must be a JSON object of at most {MAX_METADATA_ENTRIES} entries",
        )
    for key, value in document.items():
        _check_metadata_entry(key, value)
    return document


def _check_metadata_entry(key: str, value: Any) -> None:
    if not METADATA_KEY_RULE.fullmatch(key):
        raise ConfigError(
            "LAMBDAMESH_METADATA", f"key {_show(key)} must be 1-64 of A-Z, a-z, 0-9, '._/-'"
        )
    if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE:
        raise ConfigError(
            "LAMBDAMESH_METADATA",
            f"value of {key!r} must be a string of at most {MAX_METADATA_VALUE} characters",
        )


def _log_level(environ: Mapping[str, str]) -> str:
    raw = _optional(environ, "LAMBDAMESH_LOG_LEVEL") or "INFO"
    level = raw.upper()
    if level not in LOG_LEVELS:
        raise ConfigError(
            "LAMBDAMESH_LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}, got {_show(raw)}"
        )
    return level


def _outbound(environ: Mapping[str, str]) -> Outbound | None:
    port = _optional_integer(environ, "LAMBDAMESH_OUTBOUND_PORT", 1, 65535)
    if port is None:
        return None
    outbound = _outbound_settings(environ, port)
    _check_addresses(outbound)
    return outbound


def _check_addresses(outbound: Outbound) -> None:
    """The gateway's rule for its own address settings (``hosts.misconfiguration``): where
    the gateway would route nothing, the sidecar does not start."""
    # Imported here: a sidecar without the outbound port loads no routing module but the
    # name and flag rules.
    from lambdamesh_routing.hosts import misconfiguration

    networks = [ipaddress.ip_network(n) for n in outbound.allowed_networks]
    problem = misconfiguration(outbound.allow_private, networks, prefix=OUTBOUND_PREFIX)
    if problem is not None:
        raise ConfigError(problem.variable, problem.problem)


def _outbound_settings(environ: Mapping[str, str], port: int) -> Outbound:
    return Outbound(
        port=port,
        refresh_seconds=_number(
            environ, "LAMBDAMESH_OUTBOUND_REFRESH_SECONDS", 1, 300, DEFAULT_OUTBOUND_REFRESH_SECONDS
        ),
        stale_seconds=_number(
            environ, "LAMBDAMESH_OUTBOUND_STALE_SECONDS", 0, 3600, DEFAULT_OUTBOUND_STALE_SECONDS
        ),
        timeout_seconds=_number(
            environ,
            "LAMBDAMESH_OUTBOUND_TIMEOUT_SECONDS",
            0.1,
            900,
            DEFAULT_OUTBOUND_TIMEOUT_SECONDS,
        ),
        connect_timeout_seconds=_number(
            environ,
            "LAMBDAMESH_OUTBOUND_CONNECT_TIMEOUT_SECONDS",
            0.1,
            30,
            DEFAULT_OUTBOUND_CONNECT_TIMEOUT_SECONDS,
        ),
        max_connections=_optional_integer(environ, "LAMBDAMESH_OUTBOUND_MAX_CONNECTIONS", 1, 4096)
        or DEFAULT_OUTBOUND_MAX_CONNECTIONS,
        allow_loopback=_flag(environ, "LAMBDAMESH_OUTBOUND_ALLOW_LOOPBACK"),
        allow_private=_flag(environ, "LAMBDAMESH_OUTBOUND_ALLOW_PRIVATE"),
        allowed_networks=_networks(environ, "LAMBDAMESH_OUTBOUND_ALLOWED_NETWORKS"),
    )


def _flag(environ: Mapping[str, str], name: str) -> bool:
    try:
        return parse_flag(environ.get(name), default=False)
    except InvalidFlag as exc:
        raise ConfigError(name, str(exc)) from None


def _networks(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = _optional(environ, name)
    if raw is None:
        return ()
    networks = []
    for part in (p.strip() for p in raw.split(",")):
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ConfigError(name, f"holds {_show(part)}, which is not a CIDR") from None
    return tuple(networks)
