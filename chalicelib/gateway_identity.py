"""The gateway's own mesh certificate, for instances that take mutual TLS only (a sidecar's
inbound port, marked ``tls`` in the registry).

The function holds the mesh CA, so it issues its own certificate, naming
``spiffe://<trust domain>/<stage>/_gateway``, for the stage's certificate life, and issues a
new one at half of it. The TLS context is built once per certificate, by the mesh's rule
(``lambdamesh_routing.tls``: TLS 1.3 only, the callee's certificate chained to the mesh CA,
the key loaded through an anonymous memory file, never a file system); which service the
callee proves is checked by the connection (``mesh_pools``), since ``ssl`` checks host names
only. Imported at the first call to such an instance: a function that never
makes one loads neither this module nor ``cryptography``.
"""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Callable
from typing import NamedTuple

from chalicelib.certificates import RENEW_AT
from chalicelib.mesh_ca import MeshCA
from chalicelib.observability import logger
from lambdamesh_routing.identity import GATEWAY, Identity
from lambdamesh_routing.tls import mesh_contexts


class GatewayCredentials(NamedTuple):
    identity: Identity
    context: ssl.SSLContext
    renew_at: float
    # Changes with each certificate: pools built on an older context are dropped.
    generation: int


class GatewayIdentity:
    def __init__(
        self,
        authority: Callable[[], MeshCA],
        trust_domain: str,
        stage: str,
        lifetime_seconds: int,
        clock: Callable[[], float],
    ) -> None:
        self._authority = authority
        self._identity = Identity(trust_domain, stage, GATEWAY)
        self._lifetime = datetime.timedelta(seconds=lifetime_seconds)
        self._clock = clock
        self._current: GatewayCredentials | None = None
        self._lock = threading.Lock()

    def current(self) -> GatewayCredentials:
        """The credentials to call with, issued anew once past half their life. Raises what
        ``mesh_ca`` raises for a stage without a CA, or one that cannot sign."""
        current = self._current
        if current is not None and self._clock() < current.renew_at:
            return current
        with self._lock:
            current = self._current
            if current is None or self._clock() >= current.renew_at:
                current = self._current = self._issue(current)
        return current

    def _issue(self, previous: GatewayCredentials | None) -> GatewayCredentials:
        now_seconds = self._clock()
        now = datetime.datetime.fromtimestamp(now_seconds, datetime.UTC)
        ca = self._authority()
        issued = ca.issue(self._identity, now, self._lifetime)
        _, context = mesh_contexts(issued.certificate, issued.private_key, issued.trust_bundle)
        renew_at = now_seconds + (issued.not_after - now).total_seconds() * RENEW_AT
        logger.info(
            "gateway certificate issued",
            extra={
                "identity": self._identity.uri,
                "serial": issued.serial,
                "not_after": issued.not_after.isoformat(),
            },
        )
        generation = 1 if previous is None else previous.generation + 1
        return GatewayCredentials(self._identity, context, renew_at, generation)
