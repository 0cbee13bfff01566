"""Registration tokens: HMAC-SHA256 over a scope, verified in constant time.

A token reads ``lm1.<scope>.<signature>``: the scope is ``service:<name>`` or ``admin``, both
base64url without padding. A service token may write only its own service's instances; an admin
token may write any; reads need any valid token. Tokens carry no secret: the signing key never
leaves the Lambda's configuration, and neither a token nor the key is ever logged.

A token has exactly one spelling. Base64 leaves slack (the bits the last character does not
use, ``+/`` beside ``-_``, ``=`` padding) in which one signed token could be written many ways,
each a different string to anything that compares, caches or revokes tokens as text; so a
token verifies only as ``issue`` writes it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import NamedTuple

from chalicelib.config import MIN_SIGNING_KEY_LENGTH
from chalicelib.errors import ConfigError, Forbidden, Unauthorized

PREFIX = "lm1"
ADMIN_SCOPE = "admin"
SERVICE_SCOPE_PREFIX = "service:"
MAX_TOKEN_LENGTH = 512


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """The bytes ``text`` spells, only when ``text`` is their one canonical spelling.

    ``b64decode`` alone would accept ``+`` and ``/`` beside ``-`` and ``_``, padding, and any
    value in the bits the last character does not use; re-encoding refuses all of them.
    """
    data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if _b64(data) != text:
        raise ValueError("not the canonical base64url spelling")
    return data


def _signature(key: bytes, scope: str) -> bytes:
    return hmac.new(key, f"{PREFIX}.{scope}".encode(), hashlib.sha256).digest()


class Principal(NamedTuple):
    scope: str

    @property
    def is_admin(self) -> bool:
        return self.scope == ADMIN_SCOPE

    def can_write(self, service: str) -> bool:
        return self.is_admin or self.scope == SERVICE_SCOPE_PREFIX + service


def issue(key: bytes, *, service: str | None = None) -> str:
    """A token for ``service``, or an admin token when no service is given."""
    scope = ADMIN_SCOPE if service is None else SERVICE_SCOPE_PREFIX + service
    return ".".join((PREFIX, _b64(scope.encode()), _b64(_signature(key, scope))))


def parse_keys(text: str) -> tuple[bytes, ...]:
    """Signing keys, comma-separated: the first signs, any verifies.

    That is how a key is rotated without invalidating every token at once: add the new key in
    front, re-issue tokens, then drop the old one.
    """
    keys = tuple(key.strip().encode() for key in text.split(",") if key.strip())
    if not keys or any(len(key) < MIN_SIGNING_KEY_LENGTH for key in keys):
        raise ConfigError(
            f"each token signing key must be at least {MIN_SIGNING_KEY_LENGTH} characters"
        )
    return keys


def verify(keys: bytes | tuple[bytes, ...], token: str) -> Principal:
    """The principal a token names; raises Unauthorized for anything not signed by a key."""
    parts = token.split(".") if len(token) <= MAX_TOKEN_LENGTH else []
    if len(parts) != 3 or parts[0] != PREFIX:
        raise Unauthorized("the bearer token is malformed")
    try:
        scope = _unb64(parts[1]).decode("utf-8")
        given = _unb64(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise Unauthorized("the bearer token is malformed") from None
    valid = False
    for key in (keys,) if isinstance(keys, bytes) else keys:
        valid |= hmac.compare_digest(given, _signature(key, scope))
    if not valid:
        raise Unauthorized("the bearer token is not valid")
    return Principal(scope=scope)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("missing Authorization header; send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def basic_or_bearer_token(authorization: str | None) -> str:
    """A token sent as a bearer token, or as HTTP Basic credentials' password (Eureka's
    clients send the user and password of their service URL; the user is not read)."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return bearer_token(authorization)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise Unauthorized("the Authorization header's Basic credentials are not base64") from None
    _, colon, token = decoded.partition(":")
    if not colon or not token:
        raise Unauthorized("send the token as the password of the Basic credentials")
    return token


def require_write(principal: Principal, service: str) -> None:
    if not principal.can_write(service):
        raise Forbidden(f"this token may not write instances of service {service!r}")


def require_admin(principal: Principal, action: str) -> None:
    """Operators' actions (policies, drains) need an admin token; a service's own token,
    which its tasks hold, must not be able to steer its traffic."""
    if not principal.is_admin:
        raise Forbidden(f"{action} needs an admin token")
