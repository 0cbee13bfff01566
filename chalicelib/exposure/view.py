"""What the gateway reads of a service in its one Query, the exposure included."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.exposure.document import Exposure
from chalicelib.exposure.keys import ApiKey
from lambdamesh_routing.instances import ServiceView


@dataclass(frozen=True)
class GatewayView(ServiceView):
    """The routing view, and what only the gateway reads of a service from the same Query:
    its exposure document and its API keys. Never sent to sidecars."""

    exposure: Exposure | None = None
    keys: tuple[ApiKey, ...] = ()
