"""How long a stopping task stays DRAINING, against how long its callers may still route to
it on what they read before: the sidecar's defaults held against the gateway's."""

from __future__ import annotations

from chalicelib.config import Settings as GatewaySettings
from lambdamesh_sidecar import config as sidecar
from lambdamesh_sidecar import variables

TASK = {
    "LAMBDAMESH_URL": "https://mesh.example.com",
    "LAMBDAMESH_TOKEN": "t0ken",
    "LAMBDAMESH_SERVICE": "orders",
    "LAMBDAMESH_VERSION": "v1",
    "LAMBDAMESH_PORT": "8080",
    "LAMBDAMESH_HOST": "10.0.1.23",
    "LAMBDAMESH_OUTBOUND_PORT": "15001",
}


def test_the_sidecar_counts_with_the_gateways_default_cache_period() -> None:
    assert GatewaySettings.from_environ({}).cache_seconds == variables.GATEWAY_CACHE_SECONDS


def test_by_default_a_task_drains_longer_than_other_tasks_outbound_ports_route_on_it() -> None:
    # A caller's outbound port may have read its view just before the DRAINING report landed,
    # from a gateway cache as old as its period, and reads it again a refresh period later.
    settings = sidecar.load(TASK)
    cache = GatewaySettings.from_environ({}).cache_seconds
    assert settings.outbound is not None

    routed_on_for = settings.outbound.refresh_seconds + cache

    assert settings.drain_seconds >= routed_on_for + variables.DRAIN_MARGIN_SECONDS
    assert variables.DRAIN_MARGIN_SECONDS > 0
    assert settings.drain_seconds > cache  # and longer than the gateways route on it
