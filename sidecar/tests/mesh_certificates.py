"""Certificates as the registry issues them, from a mesh CA made for the test session, by the
registry's own issuer (``chalicelib.certificates``): the sidecar is tested against what it
will be given."""

from __future__ import annotations

import datetime
import time
from functools import cache
from typing import Any

from chalicelib.auth import ADMIN_SCOPE, Principal
from chalicelib.certificates import CertificateIssuer
from chalicelib.mesh_ca import MeshCA, new_authority

STAGE = "test"
TRUST_DOMAIN = "lambdamesh"


@cache
def authority(name: str = "test mesh CA") -> MeshCA:
    """Valid from a day ago, so that a certificate issued in the past can be made."""
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    return MeshCA.load(new_authority(name, since, datetime.timedelta(days=30)))


def answer(
    service: str, ca: MeshCA | None = None, life_seconds: int = 3600, now: float | None = None
) -> dict[str, Any]:
    """``POST /registry/services/{service}/certificate``'s answer."""
    issuer = CertificateIssuer(
        lambda: ca or authority(),
        TRUST_DOMAIN,
        STAGE,
        life_seconds,
        time.time if now is None else (lambda: now),
    )
    return issuer.issue(Principal(ADMIN_SCOPE), service)
