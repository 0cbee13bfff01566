"""What the gateway reads of a service in its one Query, the exposure included."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from chalicelib.exposure.document import Exposure
from chalicelib.exposure.keys import ApiKey
from lambdamesh_routing.instances import Instance, ServiceView
from lambdamesh_routing.policy import Policy


class GatewayView(ServiceView):
    """The routing view, and what only the gateway, the Eureka API and the registry's reads
    take of a service from the same Query: its exposure document, its API keys, its Eureka
    records, its instances' figures. Never sent to sidecars. Immutable, and written out, as
    ``ServiceView`` is."""

    __slots__ = ("eureka", "exposure", "figures", "keys")

    def __init__(
        self,
        instances: tuple[Instance, ...],
        policy: Policy | None = None,
        drained: frozenset[str] = frozenset(),
        exposure: Exposure | None = None,
        keys: tuple[ApiKey, ...] = (),
        eureka: Mapping[str, str] | None = None,
        figures: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(instances, policy, drained)
        self.exposure: Final = exposure
        self.keys: Final = keys
        # What Eureka clients registered beyond the instances' fields, by instance id (compact
        # JSON, read by ``chalicelib.eureka``).
        self.eureka: Final[Mapping[str, str]] = {} if eureka is None else eureka
        # What each instance's sidecar last reported of its calls, by instance id, as stored
        # (compact JSON, read by ``chalicelib.figures``): carried along, never read, by the
        # gateway; outside every instance, so neither routing nor its view's ETag sees it.
        self.figures: Final[Mapping[str, str]] = {} if figures is None else figures

    def _by_name(self) -> dict[str, object]:
        extra = {
            "exposure": self.exposure,
            "keys": self.keys,
            "eureka": self.eureka,
            "figures": self.figures,
        }
        return {**super()._by_name(), **extra}
