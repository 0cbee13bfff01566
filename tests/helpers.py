"""Plain helpers shared by the test tiers."""

from __future__ import annotations

import datetime
from functools import cache

from chalicelib.auth import issue

SIGNING_KEY = "test-signing-key-0123456789"


def admin_token() -> str:
    return issue(SIGNING_KEY.encode())


def service_token(service: str) -> str:
    return issue(SIGNING_KEY.encode(), service=service)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@cache
def mesh_ca_text(name: str = "test mesh CA") -> str:
    """A mesh CA (key and certificate, PEM) good for a year, one per name per test session."""
    from chalicelib.mesh_ca import new_authority

    now = datetime.datetime.now(datetime.UTC)
    return new_authority(name, now, datetime.timedelta(days=365))
