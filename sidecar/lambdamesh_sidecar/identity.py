"""The sidecar's service certificate: asked of the registry, held as TLS contexts, renewed at
the time the registry names (half its life), and the trust bundle with it.

Each certificate becomes the two TLS contexts of ``lambdamesh_routing.tls``: the inbound
port's (the server's) and the outbound port's (the client's).
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from lambdamesh_routing.identity import Identity, parse
from lambdamesh_routing.tls import mesh_contexts
from lambdamesh_sidecar.backoff import Backoff, RandomSource
from lambdamesh_sidecar.client import RegistryError
from lambdamesh_sidecar.logs import LOGGER_NAME, fields

Clock = Callable[[], float]
Fetch = Callable[[], Mapping[str, Any]]
# After a failed renewal: full-jitter backoff from 1 s to a minute, until the certificate
# expires (and after, since peers then refuse it).
RETRY = Backoff(base=1.0, cap=60.0)
# Renewals of many sidecars issued at one moment (a deploy) are spread over this share of
# the time left before the registry's renew_at.
JITTER_SHARE = 0.1
# How long a handshake may take before the connection is dropped: a peer that never
# finishes one must not hold a thread.
HANDSHAKE_SECONDS = 5.0
# The registry's error code for a stage that has no mesh CA.
NO_CA = "mesh_ca_not_configured"


class InvalidCertificate(Exception):
    """The registry's answer is no certificate this sidecar can use."""


class Credentials(NamedTuple):
    """One issued certificate, loaded."""

    identity: Identity
    serial: str
    not_after: float
    renew_at: float
    server: ssl.SSLContext
    client: ssl.SSLContext


def load(document: Mapping[str, Any], service: str) -> Credentials:
    """The contexts for a certificate answer of ``POST .../certificate``; ``InvalidCertificate``
    when it is not one for ``service`` (its messages never hold the key)."""
    texts = {}
    for name in ("identity", "serial", "certificate", "private_key", "trust_bundle"):
        value = document.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidCertificate(f"the certificate answer has no {name}")
        texts[name] = value
    times = {}
    for name in ("not_after", "renew_at"):
        value = document.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InvalidCertificate(f"the certificate answer has no {name}")
        times[name] = float(value)
    identity = parse(texts["identity"])
    if identity is None or identity.name != service:
        raise InvalidCertificate(
            f"the certificate names {texts['identity'][:200]!r}, not service {service!r}"
        )
    try:
        server, client = mesh_contexts(
            texts["certificate"], texts["private_key"], texts["trust_bundle"]
        )
    except (ssl.SSLError, ValueError) as exc:
        raise InvalidCertificate(
            f"the certificate does not load: {exc.__class__.__name__}"
        ) from None
    return Credentials(
        identity, texts["serial"], times["not_after"], times["renew_at"], server, client
    )


class IdentityKeeper:
    """Holds the current credentials; ``run`` renews them until stopped."""

    def __init__(
        self,
        fetch: Fetch,
        service: str,
        clock: Clock = time.time,
        rng: RandomSource | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._fetch = fetch
        self._service = service
        self._clock = clock
        self._rng = rng or random.Random()
        self._log = logger or logging.getLogger(LOGGER_NAME)
        self._current: Credentials | None = None
        self._lock = threading.Lock()
        self._said_no_ca = False

    @property
    def current(self) -> Credentials | None:
        return self._current

    def obtain(self) -> Credentials:
        """A new certificate, which becomes the current one; raises ``RegistryError`` or
        ``InvalidCertificate``."""
        credentials = load(self._fetch(), self._service)
        with self._lock:
            self._current = credentials
        self._log.info(
            "certificate issued %s",
            fields(
                identity=credentials.identity.uri,
                serial=credentials.serial,
                expires_in=f"{credentials.not_after - self._clock():.0f}s",
            ),
        )
        return credentials

    def run(self, stop: threading.Event) -> None:
        """Renew at the registry's ``renew_at`` (a little before, at random), and retry a
        failed renewal with backoff; the current certificate serves meanwhile."""
        failures = 0
        while not stop.is_set():
            current = self._current
            if current is None or failures:
                wait = RETRY.delay(failures - 1, self._rng) if failures else 0.0
            else:
                left = current.renew_at - self._clock()
                wait = max(0.0, left - self._rng.uniform(0.0, JITTER_SHARE * max(left, 0.0)))
            if stop.wait(wait):
                return
            try:
                self.obtain()
                failures = 0
            except (RegistryError, InvalidCertificate) as exc:
                failures += 1
                self._report(exc)

    def _report(self, exc: Exception) -> None:
        current = self._current
        if current is None and getattr(exc, "code", None) == NO_CA:
            # A stage without mutual TLS: said once; calls to instances that take only mutual
            # TLS answer 502 mtls_unavailable meanwhile.
            level = logging.DEBUG if self._said_no_ca else logging.INFO
            self._said_no_ca = True
            self._log.log(level, "no certificate: the registry issues none in this stage")
            return
        left = None if current is None else current.not_after - self._clock()
        message = getattr(exc, "message", None) or str(exc)
        if left is not None and left <= 0:
            self._log.error(
                "certificate expired and not renewed %s",
                fields(identity=current.identity.uri if current else None, error=message),
            )
        else:
            self._log.warning(
                "certificate not renewed %s",
                fields(
                    expires_in=None if left is None else f"{left:.0f}s",
                    error=message,
                ),
            )
