"""API keys: what a key looks like, what is stored of it, and how one presented is checked.

A key is ``lmk_<key_id>_<secret>``: the id finds the stored key in the service's cached view
(no extra read), the secret proves possession. Only a SHA-256 of the secret is stored: the
secret is 32 random bytes, so a fast hash is enough (there is nothing to guess), and a leaked
table gives no usable key. Compared in constant time. An unknown id, a wrong secret, an
expired and a revoked key are refused alike, so an answer never tells one from another.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from typing import Any, NamedTuple

from chalicelib.errors import InvalidApiKey, InvalidRequest

KEY_PREFIX = "lmk_"
KEY_ID_LENGTH = 16
SECRET_BYTES = 32
# The header a key is presented in; ``Authorization: ApiKey <key>`` is taken too.
KEY_HEADER = "x-api-key"
AUTHORIZATION_SCHEME = "apikey"
_OWS = " \t"
# Usable keys a service may hold: keys are read with the service's instances in one Query, so
# their number bounds what every gateway read costs. Revoked and expired keys do not count:
# each leaves the table by its TTL (see REVOKED_KEY_SECONDS).
MAX_KEYS_PER_SERVICE = 100
MAX_KEY_DAYS = 3650
# One minute: a key that expires sooner is a mistake (``1e-9`` days) more likely than a plan.
MIN_KEY_DAYS = 1 / 1440
# How long a revoked key stays stored, and listed, before TTL removes it (sooner when it
# expires sooner): long enough to see what was revoked, short enough that revoking frees room.
REVOKED_KEY_SECONDS = 7 * 86400
CONSUMER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
_KEY = re.compile(rf"^{KEY_PREFIX}([a-z0-9]{{{KEY_ID_LENGTH}}})_([A-Za-z0-9_-]{{43}})$")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_CONSUMER = re.compile(CONSUMER_PATTERN)


class ApiKey(NamedTuple):
    """A stored key: never its secret, only the secret's hash."""

    key_id: str
    consumer: str
    secret_hash: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None

    def is_usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def to_json(self) -> dict[str, Any]:
        """What an operator is shown: everything but the hash."""
        return {
            "key_id": self.key_id,
            "consumer": self.consumer,
            "created_at": round(self.created_at, 3),
            "expires_at": None if self.expires_at is None else round(self.expires_at, 3),
            "revoked_at": None if self.revoked_at is None else round(self.revoked_at, 3),
            "last_used_at": None if self.last_used_at is None else round(self.last_used_at, 3),
        }


class NewKey(NamedTuple):
    """A key as created: the one time its secret exists outside the caller's hands."""

    stored: ApiKey
    key: str


_KEY_ID = re.compile(rf"^[a-z0-9]{{{KEY_ID_LENGTH}}}$")


def is_key_id(text: str) -> bool:
    return bool(_KEY_ID.fullmatch(text))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def new_key(consumer: str, now: float, days: float | None) -> NewKey:
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))
    secret = secrets.token_urlsafe(SECRET_BYTES)
    stored = ApiKey(
        key_id=key_id,
        consumer=consumer,
        secret_hash=hash_secret(secret),
        created_at=now,
        expires_at=None if days is None else now + days * 86400,
    )
    return NewKey(stored, f"{KEY_PREFIX}{key_id}_{secret}")


def check_consumer(consumer: Any) -> str:
    if not isinstance(consumer, str) or not _CONSUMER.fullmatch(consumer):
        raise InvalidRequest(
            "invalid key request: consumer must be 1-64 characters of A-Z, a-z, 0-9, '.', "
            "'_', '@', '-', starting with a letter or digit"
        )
    return consumer


def check_days(days: Any) -> float | None:
    """Days until the key expires, or None for a key that does not."""
    if days is None:
        return None
    number = isinstance(days, int | float) and not isinstance(days, bool)
    if not number or not MIN_KEY_DAYS <= days <= MAX_KEY_DAYS:
        raise InvalidRequest(
            "invalid key request: expires_in_days must be a number of at least 1/1440 (one "
            f"minute) and at most {MAX_KEY_DAYS}"
        )
    return float(days)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key the request carries: ``X-Api-Key``, else ``Authorization: ApiKey <key>``.
    Only spaces and tabs around it are dropped (HTTP's optional whitespace), so a value that
    is read as a key here is exactly one carries_key() finds, and removes."""
    lowered = {name.lower(): value for name, value in headers.items()}
    key = lowered.get(KEY_HEADER)
    if key:
        return key.strip(_OWS)
    return _apikey_credentials(lowered.get("authorization") or "")


def carries_key(name: str, value: str) -> bool:
    """Whether the header ``name`` (lower case) with ``value`` holds a key as presented_key
    reads one: such a header never goes upstream."""
    return name == KEY_HEADER or (
        name == "authorization" and _apikey_credentials(value) is not None
    )


def _apikey_credentials(authorization: str) -> str | None:
    scheme, _, value = authorization.strip(_OWS).partition(" ")
    credentials = value.strip(_OWS)
    return credentials if scheme.lower() == AUTHORIZATION_SCHEME and credentials else None


def authenticate(presented: str | None, keys: tuple[ApiKey, ...], now: float) -> ApiKey:
    """The stored key ``presented`` opens, or ``InvalidApiKey`` whatever the reason."""
    match = _KEY.fullmatch(presented or "")
    stored = next((k for k in keys if match and k.key_id == match.group(1)), None)
    # Hash and compare even when there is nothing to compare with, so a wrong id costs the
    # same time as a wrong secret.
    offered = hash_secret(match.group(2) if match else "-")
    expected = stored.secret_hash if stored is not None else hash_secret("")
    if not hmac.compare_digest(offered, expected) or stored is None or not stored.is_usable(now):
        raise InvalidApiKey("a valid API key is required (X-Api-Key)")
    return stored
