"""The gateway's connections to instances that take mutual TLS only (a sidecar's inbound port,
marked ``tls``): one urllib3 HTTPS pool per address, port and service, on the gateway's
current certificate (``gateway_identity``), each connection proving, right after its
handshake and before anything is sent, that the callee holds the service's identity.

A new certificate (at half the last one's life) starts new pools; the old ones are closed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import urllib3
from urllib3.connection import HTTPSConnection

from chalicelib.gateway_identity import GatewayCredentials
from chalicelib.upstream import WrongIdentity
from lambdamesh_routing.identity import Identity, peer_identity

# Pools kept at once (the plain ones' urllib3 PoolManager keeps 50); each holds at most
# ``maxsize`` idle connections.
MAX_POOLS = 256


class _MeshConnection(HTTPSConnection):
    def __init__(self, *args: Any, expected: Identity, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expected = expected

    def connect(self) -> None:
        super().connect()
        sock = self.sock
        certificate = sock.getpeercert() if hasattr(sock, "getpeercert") else None
        proven = peer_identity(certificate, self.expected.trust_domain, self.expected.stage)
        if proven != self.expected:
            self.close()
            raise WrongIdentity(
                f"the instance proved {proven.uri if proven else 'no identity of this mesh'}, "
                f"not {self.expected.uri}"
            )


class _MeshPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _MeshConnection


class MeshPools:
    def __init__(self, credentials: Callable[[], GatewayCredentials], maxsize: int) -> None:
        self._credentials = credentials
        self._maxsize = maxsize
        self._pools: dict[tuple[str, int, str], urllib3.HTTPSConnectionPool] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def pool_for(self, ip: str, port: int, service: str) -> urllib3.HTTPSConnectionPool:
        """Raises what ``gateway_identity`` raises when the gateway has no certificate."""
        credentials = self._credentials()
        key = (ip, port, service)
        with self._lock:
            if credentials.generation != self._generation:
                stale, self._pools = list(self._pools.values()), {}
                self._generation = credentials.generation
                for pool in stale:
                    pool.close()
            found = self._pools.get(key)
            if found is not None:
                return found
            if len(self._pools) >= MAX_POOLS:  # the longest-kept goes
                self._pools.pop(next(iter(self._pools))).close()
            own = credentials.identity
            pool = self._pools[key] = _MeshPool(
                ip,
                port,
                maxsize=self._maxsize,
                block=False,
                retries=False,
                ssl_context=credentials.context,
                assert_hostname=False,
                expected=Identity(own.trust_domain, own.stage, service),
            )
        return pool

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
