"""Plain helpers shared by the test tiers."""

from __future__ import annotations

import random

from chalicelib.auth import issue

SIGNING_KEY = "test-signing-key-0123456789"


def admin_token() -> str:
    return issue(SIGNING_KEY.encode())


def service_token(service: str) -> str:
    return issue(SIGNING_KEY.encode(), service=service)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class InOrder(random.Random):
    """Starts every balancer rotation at the first instance, so exact sequences can be
    asserted (production rotations start at a random one)."""

    def randrange(self, *args: object, **kwargs: object) -> int:  # type: ignore[override]
        return 0
