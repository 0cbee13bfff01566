"""The registry's rules for exposure documents and API keys: who may read and write them.

Operators' business, like routing policies: every write needs an admin token, since a
service's own token (which its tasks hold) must not be able to open the service to the
internet or mint keys for it. Any valid token may read a document; only an admin may list
keys. Names, then who, then the body, as the registry's other writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from chalicelib.auth import Principal, require_admin
from chalicelib.errors import ExposureNotFound, InvalidRequest, KeyNotFound, TooManyKeys
from chalicelib.exposure.document import Exposure, StoredExposure, parse_exposure
from chalicelib.exposure.keys import (
    MAX_KEYS_PER_SERVICE,
    REVOKED_KEY_SECONDS,
    ApiKey,
    NewKey,
    check_consumer,
    check_days,
    is_key_id,
    new_key,
)
from chalicelib.validation import parse_json_body
from lambdamesh_routing.names import check_name

Clock = Callable[[], float]


class ExposureStore(Protocol):
    def exposure(self, service: str) -> StoredExposure | None: ...

    def put_exposure(self, service: str, exposure: Exposure, now: float) -> bool: ...

    def delete_exposure(self, service: str) -> bool: ...

    def keys(self, service: str) -> list[ApiKey]: ...

    def put_key(self, service: str, key: ApiKey) -> None: ...

    def revoke_key(self, service: str, key_id: str, now: float, remove_by: float) -> bool: ...


class Exposures:
    def __init__(
        self, store: ExposureStore, clock: Clock = time.time, *, allow_loopback_http: bool = False
    ) -> None:
        self._store = store
        self._clock = clock
        self._allow_loopback_http = allow_loopback_http

    def exposure(self, service: str) -> StoredExposure:
        check_name("service", service)
        stored = self._store.exposure(service)
        if stored is None:
            raise ExposureNotFound(f"service {service!r} has no exposure document")
        return stored

    def put_exposure(
        self, principal: Principal, service: str, body: bytes
    ) -> tuple[Exposure, bool]:
        """Store a validated document, replacing any; (it, whether the service had none)."""
        check_name("service", service)
        require_admin(principal, "setting a service's exposure")
        document = parse_json_body(
            body, required='an exposure document ({"exposed": false} to close the service)'
        )
        exposure = parse_exposure(service, document, allow_loopback_http=self._allow_loopback_http)
        return exposure, self._store.put_exposure(service, exposure, self._clock())

    def delete_exposure(self, principal: Principal, service: str) -> None:
        check_name("service", service)
        require_admin(principal, "deleting a service's exposure")
        if not self._store.delete_exposure(service):
            raise ExposureNotFound(f"service {service!r} has no exposure document")

    def keys(self, principal: Principal, service: str) -> list[ApiKey]:
        check_name("service", service)
        require_admin(principal, "listing a service's API keys")
        return sorted(self._store.keys(service), key=lambda k: (k.created_at, k.key_id))

    def create_key(self, principal: Principal, service: str, body: bytes) -> NewKey:
        check_name("service", service)
        require_admin(principal, "creating an API key")
        fields: Any = parse_json_body(body, required='{"consumer": NAME}')
        if not isinstance(fields, dict) or set(fields) - {"consumer", "expires_in_days"}:
            raise InvalidRequest(
                'invalid key request: send {"consumer": NAME, "expires_in_days": DAYS}'
            )
        consumer = check_consumer(fields.get("consumer"))
        days = check_days(fields.get("expires_in_days"))
        now = self._clock()
        # A read, then a write: creates at the same moment may pass the limit by their number.
        usable = sum(1 for key in self._store.keys(service) if key.is_usable(now))
        if usable >= MAX_KEYS_PER_SERVICE:
            raise TooManyKeys(
                f"service {service!r} already holds {MAX_KEYS_PER_SERVICE} usable keys: "
                "revoke one first"
            )
        created = new_key(consumer, now, days)
        self._store.put_key(service, created.stored)
        return created

    def revoke_key(self, principal: Principal, service: str, key_id: str) -> None:
        """Revoked at once; the key stays listed for REVOKED_KEY_SECONDS (or until its own
        expiry, when sooner), then TTL removes it."""
        check_name("service", service)
        require_admin(principal, "revoking an API key")
        now = self._clock()
        if not is_key_id(key_id) or not self._store.revoke_key(
            service, key_id, now, now + REVOKED_KEY_SECONDS
        ):
            raise KeyNotFound(f"service {service!r} has no unrevoked key {key_id!r}")

    def now(self) -> float:
        return self._clock()
