"""Plain helpers shared by the test tiers."""

from __future__ import annotations

from chalicelib.auth import issue

SIGNING_KEY = "test-signing-key-0123456789"


def admin_token() -> str:
    return issue(SIGNING_KEY.encode())


def service_token(service: str) -> str:
    return issue(SIGNING_KEY.encode(), service=service)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
