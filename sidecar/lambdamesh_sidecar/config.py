"""One typed settings object, read from the environment once and validated before any network use.

A bad setting stops the sidecar at once with one line naming the variable: ECS shows a stopped
container's exit code and last log line, and a task that fails fast with a clear reason is far
easier to fix than one that registers the wrong thing. The registry's own rules (names, ranges,
metadata limits) are checked here too, so a typo fails at start-up instead of as a 400 that the
sidecar would otherwise keep retrying.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from lambdamesh_routing.hosts import is_well_formed_host
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
from lambdamesh_sidecar.environment import (
    ConfigError,
    integer,
    number,
    optional,
    optional_integer,
    required,
    show,
)
from lambdamesh_sidecar.inbound_settings import InboundSettings, read_inbound_settings
from lambdamesh_sidecar.outbound_settings import OutboundSettings, read_outbound_settings
from lambdamesh_sidecar.variables import (
    DEFAULT_DRAIN_SECONDS,
    DEFAULT_HEARTBEAT_SECONDS,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_METRICS_SECONDS,
    DEFAULT_READINESS_SECONDS,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
    DRAIN,
    ECS_METADATA_VARIABLE,
    HEARTBEAT,
    LEASE,
    LEASE_MARGIN_SECONDS,
    LOG_LEVELS,
    METRICS,
    PORT,
    READINESS,
    REQUEST_TIMEOUT,
    WEIGHT,
)

TaskLookup = Callable[[str], TaskMetadata]


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
    outbound: OutboundSettings | None = None
    # When set, ``port`` is the app's on loopback, and the instance is registered at the
    # inbound port's.
    inbound: InboundSettings | None = None
    metrics_seconds: float = DEFAULT_METRICS_SECONDS

    @property
    def registered_port(self) -> int:
        return self.port if self.inbound is None else self.inbound.port


def load(environ: Mapping[str, str], lookup_task: TaskLookup = fetch_task_metadata) -> Settings:
    """Validate everything the environment alone decides before asking ECS for anything."""
    registry_url = _registry_url(environ)
    token = _token(environ)
    service = _name(environ, "LAMBDAMESH_SERVICE", SERVICE_RULE, "1-63 of a-z, 0-9, '-'")
    version = _name(environ, "LAMBDAMESH_VERSION", VERSION_RULE, "1-32 of a-z, 0-9, '._-'")
    port = integer(PORT, required(environ, PORT.name))
    heartbeat, lease = _timing(environ)
    readiness = number(environ, READINESS)
    weight = optional_integer(environ, WEIGHT)
    health_path = _health_path(environ)
    metadata = _metadata(environ)
    request_timeout = number(environ, REQUEST_TIMEOUT)
    drain = number(environ, DRAIN)
    log_level = _log_level(environ)
    outbound = read_outbound_settings(environ)
    inbound = read_inbound_settings(environ)
    _distinct_ports(port, outbound, inbound)
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
        inbound=inbound,
        metrics_seconds=number(environ, METRICS),
    )


def _distinct_ports(
    port: int, outbound: OutboundSettings | None, inbound: InboundSettings | None
) -> None:
    """The app's port and the sidecar's two share the task's network namespace."""
    taken = {PORT.name: port}
    for name, settings in (
        ("LAMBDAMESH_OUTBOUND_PORT", outbound),
        ("LAMBDAMESH_INBOUND_PORT", inbound),
    ):
        if settings is None:
            continue
        for other, value in taken.items():
            if settings.port == value:
                raise ConfigError(name, f"must differ from {other} ({value}): they share the task")
        taken[name] = settings.port


def derive_instance_id(task: TaskMetadata | None, host: str, port: int) -> str:
    """The task id when ECS tells it (stable across sidecar restarts), else host and port."""
    task_id = _trimmed(re.sub(r"[^a-z0-9._-]+", "-", (task.task_id or "").lower())) if task else ""
    return task_id or _trimmed(re.sub(r"[^a-z0-9]+", "-", f"{host}-{port}".lower()))


def _trimmed(text: str) -> str:
    return text.strip("._-")[:MAX_INSTANCE_ID].rstrip("._-")


def _timing(environ: Mapping[str, str]) -> tuple[float, int]:
    heartbeat = number(environ, HEARTBEAT)
    lease = optional_integer(environ, LEASE)
    assert lease is not None  # declared with a default
    # A heartbeat may come 10 % late (jitter) and take a moment to land: the lease must
    # outlast both, or a healthy instance would drop out of rotation between heartbeats.
    least = heartbeat * 1.1 + LEASE_MARGIN_SECONDS
    if lease < least:
        raise ConfigError(
            LEASE.name,
            f"must be at least {least:g} (LAMBDAMESH_HEARTBEAT_SECONDS {heartbeat:g} plus 10 % "
            f"jitter plus {LEASE_MARGIN_SECONDS:g} s), got {lease}",
        )
    return heartbeat, lease


def _registry_url(environ: Mapping[str, str]) -> str:
    raw = required(environ, "LAMBDAMESH_URL")
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("LAMBDAMESH_URL", f"must be an http:// or https:// URL, got {show(raw)}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError("LAMBDAMESH_URL", "must not carry credentials, a query or a fragment")
    return raw.rstrip("/")


def _token(environ: Mapping[str, str]) -> str:
    """Never echo the value: an error message ends up in CloudWatch."""
    token = required(environ, "LAMBDAMESH_TOKEN")
    if any(char.isspace() or not char.isprintable() for char in token):
        raise ConfigError("LAMBDAMESH_TOKEN", "must not contain whitespace or control characters")
    return token


def _name(environ: Mapping[str, str], name: str, rule: re.Pattern[str], described: str) -> str:
    raw = required(environ, name)
    if not rule.fullmatch(raw):
        raise ConfigError(name, f"must be {described} (lowercase), got {show(raw)}")
    return raw


def _explicit_instance_id(environ: Mapping[str, str]) -> str | None:
    raw = optional(environ, "LAMBDAMESH_INSTANCE_ID")
    if raw is not None and not INSTANCE_ID_RULE.fullmatch(raw):
        raise ConfigError(
            "LAMBDAMESH_INSTANCE_ID",
            f"must be 1-128 of a-z, 0-9, '._-' (lowercase), got {show(raw)}",
        )
    return raw


def _task_arn(environ: Mapping[str, str]) -> str | None:
    raw = optional(environ, "LAMBDAMESH_TASK_ARN")
    if raw is not None and not TASK_ARN_RULE.fullmatch(raw):
        raise ConfigError(
            "LAMBDAMESH_TASK_ARN",
            f"must be an ECS task ARN, arn:aws:ecs:<region>:<account>:task/<cluster>/<id>, "
            f"got {show(raw)}",
        )
    return raw


def _task_arn_from(task: TaskMetadata | None) -> str | None:
    """The task's ARN as ECS tells it; None outside ECS, or for one the registry would refuse
    (the instance then registers without it and leaves by its lease alone)."""
    arn = task.task_arn if task else None
    return arn if arn is not None and TASK_ARN_RULE.fullmatch(arn) else None


def _host(environ: Mapping[str, str]) -> str | None:
    raw = optional(environ, "LAMBDAMESH_HOST")
    if raw is None:
        return None
    # The registry's own rule, so that the sidecar never starts with a host it would refuse.
    if not is_well_formed_host(raw):
        raise ConfigError(
            "LAMBDAMESH_HOST", f"must be an IP address or a DNS name, got {show(raw)}"
        )
    return raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw


def _task_metadata(
    environ: Mapping[str, str], lookup_task: TaskLookup, needed: bool
) -> TaskMetadata | None:
    uri = optional(environ, ECS_METADATA_VARIABLE)
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
    if task.ipv4 is None or not is_well_formed_host(task.ipv4):
        raise ConfigError(
            "LAMBDAMESH_HOST",
            f"is required: the task's network mode {task.network_mode!r} gives no address "
            "other tasks can reach (only awsvpc and host modes do)",
        )
    return task.ipv4


def _zone(environ: Mapping[str, str]) -> str | None:
    raw = optional(environ, "LAMBDAMESH_ZONE")
    if raw is not None and not ZONE_RULE.fullmatch(raw):
        raise ConfigError("LAMBDAMESH_ZONE", f"must be 1-64 of a-z, 0-9, '-', got {show(raw)}")
    return raw


def _health_path(environ: Mapping[str, str]) -> str | None:
    raw = optional(environ, "LAMBDAMESH_HEALTH_PATH")
    if raw is not None and (not raw.startswith("/") or any(c.isspace() for c in raw)):
        raise ConfigError(
            "LAMBDAMESH_HEALTH_PATH", f"must start with '/' and hold no spaces, got {show(raw)}"
        )
    return raw


def _metadata(environ: Mapping[str, str]) -> dict[str, str] | None:
    raw = optional(environ, "LAMBDAMESH_METADATA")
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
            "LAMBDAMESH_METADATA", f"key {show(key)} must be 1-64 of A-Z, a-z, 0-9, '._/-'"
        )
    if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE:
        raise ConfigError(
            "LAMBDAMESH_METADATA",
            f"value of {key!r} must be a string of at most {MAX_METADATA_VALUE} characters",
        )


def _log_level(environ: Mapping[str, str]) -> str:
    raw = optional(environ, "LAMBDAMESH_LOG_LEVEL") or "INFO"
    level = raw.upper()
    if level not in LOG_LEVELS:
        raise ConfigError(
            "LAMBDAMESH_LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}, got {show(raw)}"
        )
    return level
