"""What the gateway reads of a service in its one Query, the exposure included."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from chalicelib.exposure.document import Exposure
from chalicelib.exposure.keys import ApiKey
from lambdamesh_routing.instances import ServiceView


@dataclass(frozen=True)
class GatewayView(ServiceView):
    """The routing view, and what only the gateway and the Eureka API read of a service from
    the same Query: its exposure document, its API keys, its Eureka records. Never sent to
    sidecars."""

    exposure: Exposure | None = None
    keys: tuple[ApiKey, ...] = ()
    # What Eureka clients registered beyond the instances' fields, by instance id (compact
    # JSON, read by ``chalicelib.eureka``).
    eureka: Mapping[str, str] = field(default_factory=dict)
