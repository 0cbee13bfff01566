"""JWK Sets: the signature keys of a service's token issuer, inline or fetched.

JWK Sets come inline (``jwks`` in the document) or from ``jwks_url``, fetched with
``urllib`` (https only, no redirect followed, bounded in time, bytes and keys) and kept per
URL in ``JwksCache``: fresh for KEYS_FRESH_SECONDS, fetched again on a ``kid`` it does not
know at most once per REFETCH_SECONDS (so a flood of made-up ``kid`` values costs one fetch,
not one each), keeping the keys it has when a fetch fails. ``lambdamesh dev`` and tests may
fetch ``http://`` from loopback through an explicit ``allow_loopback_http`` flag; a deployed
gateway never does. A ``jwks_url`` whose host is an IP literal the gateway would never reach
(link-local and instance metadata, unspecified, multicast, private, and loopback unless that
flag allows it) is refused; a DNS name is resolved by the system resolver at fetch time, and
leads wherever the admin who set it points it. An inline set may hold public keys only: one
with a private member (``d``, ``k``, ...) is refused, and only public members are ever
stored; a fetched key with one is ignored.

A Lambda attached to a VPC reaches the internet only through that VPC ("When you connect a
function to a VPC, it can access resources and the internet only through that VPC": Lambda
API reference, ``VpcConfig``; see
https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc-internet.html). So a
``jwks_url`` on the internet, Cognito's
``https://cognito-idp.<region>.amazonaws.com/<pool>/.well-known/jwks.json`` included, needs a
route from the Lambda's subnets to a NAT gateway and HTTPS egress in its security group. The
PrivateLink endpoint for Cognito user pools is documented for the user pool API operations,
not the JWKS document, and does not accept requests for user pool domains
(https://docs.aws.amazon.com/cognito/latest/developerguide/vpc-interface-endpoints.html).
Without a NAT, put the keys in the document (``jwks``): nothing is fetched.
"""

from __future__ import annotations

import functools
import http.client
import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chalicelib.errors import InvalidToken, KeysUnavailable
from chalicelib.exposure.jwt_rules import (
    ALGORITHMS,
    KEY_TYPES,
    MAX_KEYS,
    PRIVATE_MEMBERS,
    jwks_url_problem,
    public_key,
)
from chalicelib.observability import logger
from chalicelib.recent import Recent

if TYPE_CHECKING:
    from jwt import PyJWK

MAX_JWKS_BYTES = 64 * 1024
# Issuers whose key sets one container keeps: a stage whose services name more jwks_url
# issuers than this in use at once answers some of them 503 jwks_unavailable for up to a
# minute at a time.
MAX_CACHED_URLS = 128
# URLs whose last fetch time is kept: each service's document names at most one.
MAX_TRIED_URLS = 4096
FETCH_TIMEOUT_SECONDS = 2.0
KEYS_FRESH_SECONDS = 600.0
REFETCH_SECONDS = 60.0


class JwksError(Exception):
    """A JWK Set could not be fetched or read; the message says why, for logs."""


class KeySet:
    """The usable signature keys of one JWK Set, looked up by ``kid`` and algorithm.

    A key is usable when PyJWT can build it, it is not symmetric (``oct``), carries no
    private member, its ``use`` (if any) is ``sig`` and its ``alg`` (if any) is one of
    ALGORITHMS; only its PUBLIC_MEMBERS are kept. A key without ``alg`` may
    verify any algorithm its type fits (an RSA key: RS* and PS*); one with ``alg`` only that.
    """

    def __init__(self, keys: Sequence[Mapping[str, Any]]) -> None:
        self._keys = [dict(key) for key in keys]
        self._built: dict[tuple[int, str], PyJWK | None] = {}

    @classmethod
    def from_document(cls, document: Any) -> KeySet:
        """A key set from a parsed JWK Set; JwksError when it is not one, holds more than
        MAX_KEYS keys, or none usable."""
        from jwt import PyJWK, PyJWTError

        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise JwksError('is not a JWK Set: expected {"keys": [...]}')
        listed = document["keys"]
        if len(listed) > MAX_KEYS:
            raise JwksError(f"holds {len(listed)} keys; the limit is {MAX_KEYS}")
        usable = []
        for key in listed:
            if isinstance(key, dict) and _may_sign(key):
                public = public_key(key)
                try:
                    PyJWK(public)
                except PyJWTError:
                    continue
                usable.append(public)
        if not usable:
            raise JwksError("holds no usable signature key (RSA, EC or OKP, use sig)")
        return cls(usable)

    @classmethod
    def from_bytes(cls, body: bytes) -> KeySet:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise JwksError("is not JSON") from None
        return cls.from_document(document)

    def find(self, kid: str | None, algorithm: str) -> PyJWK | None:
        """The key for a token's ``kid`` and ``alg``. A token without ``kid`` may use the one
        key that fits its algorithm, when exactly one does."""
        fitting = [
            index
            for index, key in enumerate(self._keys)
            if (kid is None or key.get("kid") == kid) and _fits(key, algorithm)
        ]
        if not fitting or (kid is None and len(fitting) > 1):
            return None
        return self._key(fitting[0], algorithm)

    def _key(self, index: int, algorithm: str) -> PyJWK | None:
        from jwt import PyJWK, PyJWTError

        built = (index, algorithm)
        if built not in self._built:
            try:
                self._built[built] = PyJWK(self._keys[index], algorithm=algorithm)
            except PyJWTError:
                self._built[built] = None
            except Exception as exc:  # see _unusable_key
                raise unusable_key(exc) from None
        return self._built[built]


def _may_sign(key: Mapping[str, Any]) -> bool:
    """A key whose private half is published (PRIVATE_MEMBERS) proves nothing: anyone who
    read the set can sign with it."""
    return (
        not any(name in key for name in PRIVATE_MEMBERS)
        and key.get("kty") in ("RSA", "EC", "OKP")
        and key.get("use", "sig") == "sig"
        and key.get("alg", ALGORITHMS[0]) in ALGORITHMS
    )


def _fits(key: Mapping[str, Any], algorithm: str) -> bool:
    if algorithm not in KEY_TYPES:
        return False  # HS* and none: no key of a JWK Set of public keys verifies them
    kty, crv = KEY_TYPES[algorithm]
    return (
        key.get("kty") == kty
        and (crv is None or key.get("crv") == crv)
        and key.get("alg", algorithm) == algorithm
    )


@functools.lru_cache(maxsize=MAX_CACHED_URLS)
def inline_keys(jwks_json: str) -> KeySet:
    """Inline key sets, parsed once per container each (the document is read again every
    LAMBDAMESH_CACHE_SECONDS)."""
    try:
        return KeySet.from_bytes(jwks_json.encode())
    except JwksError:
        raise InvalidToken("unknown_key") from None


Fetch = Callable[[str], bytes]
Clock = Callable[[], float]


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    keys: KeySet | None = None
    fetched_at: float = -math.inf


class JwksCache:
    """JWK Sets by URL, for one container: at most ``max_urls`` (the least recently used is
    dropped), each fetched again after KEYS_FRESH_SECONDS, or on a key it lacks, but never
    within REFETCH_SECONDS of the last try. A failed fetch keeps the keys there were. The
    time of each URL's last try outlives its keys (up to MAX_TRIED_URLS of them), so
    requests that cycle through more issuers than the cache holds still cost each URL one
    fetch a minute at most.

    One lock per URL: requests for one URL wait for a fetch under way rather than start
    their own, and requests for other URLs do not wait. ``fetch`` returns a body or raises
    JwksError (or OSError); ``clock`` is monotonic seconds."""

    def __init__(
        self,
        fetch: Fetch | None = None,
        clock: Clock = time.monotonic,
        *,
        allow_loopback_http: bool = False,
        max_urls: int = MAX_CACHED_URLS,
    ) -> None:
        self._fetch = fetch or functools.partial(
            fetch_jwks, allow_loopback_http=allow_loopback_http
        )
        self._clock = clock
        self._allow_loopback_http = allow_loopback_http
        self._max_urls = max_urls
        self._entries: Recent[str, _Entry] = Recent(max_urls)
        self._tried: Recent[str, float] = Recent(MAX_TRIED_URLS)

    def key(self, url: str, kid: str | None, algorithm: str) -> PyJWK:
        """The key for a token from ``url``'s issuer; InvalidToken when there is none,
        KeysUnavailable when no key set could ever be fetched."""
        entry = self._entry(url)
        with entry.lock:
            now = self._clock()
            if now - entry.fetched_at >= KEYS_FRESH_SECONDS:
                self._refresh(url, entry, now)
            found = entry.keys.find(kid, algorithm) if entry.keys else None
            if found is None and entry.keys is not None:
                # The issuer may have rotated its keys since the set was fetched.
                self._refresh(url, entry, now)
                found = entry.keys.find(kid, algorithm)
            unavailable = entry.keys is None
        if unavailable:
            raise KeysUnavailable(int(REFETCH_SECONDS))
        if found is None:
            raise InvalidToken("unknown_key")
        return found

    def _entry(self, url: str) -> _Entry:
        return self._entries.setdefault(url, _Entry)

    def _refresh(self, url: str, entry: _Entry, now: float) -> None:
        tried = self._tried.get(url)
        if tried is not None and now - tried < REFETCH_SECONDS:
            return
        self._tried.put(url, now)
        try:
            problem = jwks_url_problem(url, allow_loopback_http=self._allow_loopback_http)
            if problem:
                raise JwksError(f"the URL {problem}")
            entry.keys = KeySet.from_bytes(self._fetch(url))
            entry.fetched_at = now
        except (JwksError, OSError, ValueError) as exc:
            logger.warning("jwks fetch failed", extra={"jwks_url": url, "reason": str(exc)})


@functools.cache
def default_keys() -> JwksCache:
    """This container's key cache: https only."""
    return JwksCache()


def unusable_key(exc: Exception) -> InvalidToken:
    """The refusal for a failure that is none of PyJWT's own (a key that cannot check a
    signature, say): the token is refused and the log says why; never a 500."""
    logger.warning("jwt key unusable", extra={"reason": f"{type(exc).__name__}: {exc}"[:300]})
    return InvalidToken("key")


def fetch_jwks(
    url: str,
    *,
    allow_loopback_http: bool = False,
    timeout: float = FETCH_TIMEOUT_SECONDS,
    limit: int = MAX_JWKS_BYTES,
) -> bytes:
    """The body of a 200 answer to GET ``url``, at most ``limit`` bytes, read within about
    ``timeout`` seconds (each read waits at most that, and no read starts after it); a
    redirect is an answer like any other non-200, refused. JwksError says why not, also for
    a URL urllib cannot send (ValueError, UnicodeError among them)."""
    problem = jwks_url_problem(url, allow_loopback_http=allow_loopback_http)
    if problem:
        raise JwksError(f"the URL {problem}")
    opener = urllib.request.build_opener(_NoRedirects())
    deadline = time.monotonic() + timeout
    try:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - scheme checked above
        with opener.open(request, timeout=timeout) as answer:
            if answer.status != 200:
                raise JwksError(f"answered {answer.status}")
            return _read_capped(answer, limit, deadline)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise JwksError(f"answered {exc.code}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise JwksError(f"cannot be fetched: {getattr(exc, 'reason', exc)}") from None


def _read_capped(answer: Any, limit: int, deadline: float) -> bytes:
    declared = answer.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise JwksError(f"is {declared} bytes; the limit is {limit}")
    body = bytearray()
    while chunk := answer.read1(16 * 1024):
        body += chunk
        if len(body) > limit:
            raise JwksError(f"is larger than the limit of {limit} bytes")
        if time.monotonic() > deadline:
            raise JwksError("took longer than the fetch timeout")
    return bytes(body)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """In place of urllib's redirect handler: a redirect is answered as it came."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
