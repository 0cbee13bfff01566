"""A registration as the registry's writes take it: imported by the first registration, since
neither a routed request nor the cold start's priming makes one. ``chalicelib.instances``
hands it out with the rest of the registry's plain data."""

from __future__ import annotations

from dataclasses import dataclass, field

from lambdamesh_routing.instances import Status


@dataclass(frozen=True)
class Registration:
    """A validated request to register one instance."""

    service: str
    instance_id: str
    version: str
    host: str
    port: int
    weight: int = 100
    zone: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    lease_seconds: int = 30
    status: Status = "UP"
    task_arn: str | None = None
    # The port is a lambdamesh sidecar's inbound port, which callers reach with mutual TLS.
    tls: bool = False
    # A Eureka client's registration beyond these fields (compact JSON), and its
    # lastDirtyTimestamp: ``chalicelib.eureka``.
    eureka: str | None = None
    eureka_dirty: int | None = None
