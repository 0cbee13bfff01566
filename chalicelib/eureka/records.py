"""Eureka's instance record as plain data: what a client registers and what the registry
answers with, whatever the wire format (``wire``). Field names follow Eureka's
``InstanceInfo``; times are epoch milliseconds, as Eureka carries them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

EurekaStatus = Literal["UP", "DOWN", "STARTING", "OUT_OF_SERVICE", "UNKNOWN"]
EUREKA_STATUSES: tuple[EurekaStatus, ...] = ("UP", "DOWN", "STARTING", "OUT_OF_SERVICE", "UNKNOWN")
ActionType = Literal["ADDED", "MODIFIED", "DELETED"]
DataCenterName = Literal["MyOwn", "Amazon", "Netflix"]

# Eureka's defaults where a registration leaves them out (InstanceInfo, LeaseInfo).
DEFAULT_RENEWAL_INTERVAL = 30
DEFAULT_DURATION = 90
DEFAULT_SECURE_PORT = 443
DEFAULT_COUNTRY_ID = 1


@dataclass(frozen=True)
class Port:
    number: int
    enabled: bool


@dataclass(frozen=True)
class DataCenter:
    name: DataCenterName = "MyOwn"
    # Amazon's only (instance-id, availability-zone, local-ipv4...): never emitted for others.
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LeaseInfo:
    renewal_interval: int = DEFAULT_RENEWAL_INTERVAL
    duration: int = DEFAULT_DURATION
    registration_ms: int = 0
    last_renewal_ms: int = 0
    eviction_ms: int = 0
    service_up_ms: int = 0


@dataclass(frozen=True)
class EurekaInstance:
    """One instance as Eureka's clients see it. ``app`` is upper case; ``instance_id`` is the
    Eureka id, case-sensitive, as the client gave it (or derived, as Eureka derives it)."""

    instance_id: str
    app: str
    host_name: str
    ip_addr: str
    port: Port
    status: EurekaStatus = "UP"
    overridden_status: EurekaStatus = "UNKNOWN"
    secure_port: Port = Port(DEFAULT_SECURE_PORT, False)
    country_id: int = DEFAULT_COUNTRY_ID
    data_center: DataCenter = DataCenter()
    lease: LeaseInfo = LeaseInfo()
    metadata: dict[str, str] = field(default_factory=dict)
    home_page_url: str | None = None
    status_page_url: str | None = None
    health_check_url: str | None = None
    secure_health_check_url: str | None = None
    vip_address: str | None = None
    secure_vip_address: str | None = None
    last_updated_ms: int = 0
    last_dirty_ms: int = 0
    action_type: ActionType | None = None


@dataclass(frozen=True)
class Application:
    name: str
    instances: tuple[EurekaInstance, ...]


@dataclass(frozen=True)
class Applications:
    """A full registry (``versions_delta`` "1"), a delta, or a VIP's answer ("-1")."""

    versions_delta: str
    apps_hashcode: str
    applications: tuple[Application, ...]
