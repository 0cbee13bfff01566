"""The outbound port's settings, read from the environment only when LAMBDAMESH_OUTBOUND_PORT
is set, and the addresses they let it reach."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from lambdamesh_routing import hosts
from lambdamesh_routing.hosts import AddressPolicy
from lambdamesh_sidecar.environment import ConfigError, flag, networks, number, optional_integer
from lambdamesh_sidecar.variables import (
    DEFAULT_OUTBOUND_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_OUTBOUND_MAX_CONNECTIONS,
    DEFAULT_OUTBOUND_REFRESH_SECONDS,
    DEFAULT_OUTBOUND_STALE_SECONDS,
    DEFAULT_OUTBOUND_TIMEOUT_SECONDS,
    OUTBOUND_CONNECT_TIMEOUT,
    OUTBOUND_MAX_CONNECTIONS,
    OUTBOUND_PORT,
    OUTBOUND_PREFIX,
    OUTBOUND_REFRESH,
    OUTBOUND_STALE,
    OUTBOUND_TIMEOUT,
)


@dataclass(frozen=True)
class OutboundSettings:
    """``port`` 0 binds any free port (tests)."""

    port: int = 0
    refresh_seconds: float = DEFAULT_OUTBOUND_REFRESH_SECONDS
    stale_seconds: float = DEFAULT_OUTBOUND_STALE_SECONDS
    timeout_seconds: float = DEFAULT_OUTBOUND_TIMEOUT_SECONDS
    connect_timeout_seconds: float = DEFAULT_OUTBOUND_CONNECT_TIMEOUT_SECONDS
    max_connections: int = DEFAULT_OUTBOUND_MAX_CONNECTIONS
    allow_loopback: bool = False
    allow_private: bool = False
    allowed_networks: tuple[str, ...] = ()

    def address_policy(self) -> AddressPolicy:
        """The addresses the outbound port may reach, made by the gateway's own rule from the
        same three settings (``hosts.address_policy``), whose refusals name them as the sidecar
        reads them."""
        return hosts.address_policy(
            self.allow_loopback, self.allow_private, self._networks(), prefix=OUTBOUND_PREFIX
        )

    def check(self) -> None:
        """The gateway's rule for its own address settings (``hosts.misconfiguration``): where
        the gateway would route nothing, the sidecar does not start."""
        problem = hosts.misconfiguration(
            self.allow_private, self._networks(), prefix=OUTBOUND_PREFIX
        )
        if problem is not None:
            raise ConfigError(problem.variable, problem.problem)

    def _networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n) for n in self.allowed_networks]


def read_outbound_settings(environ: Mapping[str, str]) -> OutboundSettings | None:
    """None when the outbound port is off (LAMBDAMESH_OUTBOUND_PORT unset)."""
    port = optional_integer(environ, OUTBOUND_PORT)
    if port is None:
        return None
    max_connections = optional_integer(environ, OUTBOUND_MAX_CONNECTIONS)
    assert max_connections is not None  # declared with a default
    settings = OutboundSettings(
        port=port,
        refresh_seconds=number(environ, OUTBOUND_REFRESH),
        stale_seconds=number(environ, OUTBOUND_STALE),
        timeout_seconds=number(environ, OUTBOUND_TIMEOUT),
        connect_timeout_seconds=number(environ, OUTBOUND_CONNECT_TIMEOUT),
        max_connections=max_connections,
        allow_loopback=flag(environ, f"{OUTBOUND_PREFIX}ALLOW_LOOPBACK"),
        allow_private=flag(environ, f"{OUTBOUND_PREFIX}ALLOW_PRIVATE"),
        allowed_networks=networks(environ, f"{OUTBOUND_PREFIX}ALLOWED_NETWORKS"),
    )
    settings.check()
    return settings
