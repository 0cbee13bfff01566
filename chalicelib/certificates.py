"""Service certificates: who may have one, and what the registry answers.

A service's own token (the one its tasks register with) or an admin token gets a fresh
certificate naming the service; no other token does, so no task can hold another service's
identity. The answer carries the private key the registry generated for it: it is sent once,
over the API's TLS, with ``Cache-Control: no-store``, and is neither logged nor kept.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chalicelib.auth import Principal, require_write
from chalicelib.observability import logger
from lambdamesh_routing.identity import Identity
from lambdamesh_routing.names import check_name

if TYPE_CHECKING:
    from chalicelib.mesh_ca import MeshCA

# The share of a certificate's life after which its holder should renew it: at half, a
# registry that cannot issue for a while leaves the other half to recover in.
RENEW_AT = 0.5


class CertificateIssuer:
    def __init__(
        self,
        authority: Callable[[], MeshCA],
        trust_domain: str,
        stage: str,
        lifetime_seconds: int,
        clock: Callable[[], float],
    ) -> None:
        self._authority = authority
        self._trust_domain = trust_domain
        self._stage = stage
        self._lifetime = datetime.timedelta(seconds=lifetime_seconds)
        self._clock = clock

    def issue(self, principal: Principal, service: str) -> dict[str, Any]:
        check_name("service", service)
        require_write(principal, service)
        now = datetime.datetime.fromtimestamp(self._clock(), datetime.UTC)
        identity = Identity(self._trust_domain, self._stage, service)
        issued = self._authority().issue(identity, now, self._lifetime)
        renew_at = now + (issued.not_after - now) * RENEW_AT
        logger.info(
            "service certificate issued",
            extra={
                "service": service,
                "identity": identity.uri,
                "serial": issued.serial,
                "not_after": issued.not_after.isoformat(),
                "scope": principal.scope,
            },
        )
        return {
            "service": service,
            "identity": identity.uri,
            "serial": issued.serial,
            "not_before": issued.not_before.timestamp(),
            "not_after": issued.not_after.timestamp(),
            "renew_at": renew_at.timestamp(),
            "certificate": issued.certificate,
            "private_key": issued.private_key,
            "trust_bundle": issued.trust_bundle,
        }
