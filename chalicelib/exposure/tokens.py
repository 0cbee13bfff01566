"""JWT bearer tokens checked against a service's rules (``chalicelib.exposure.jwt_rules``).

The token's signature is checked with a key from the issuer's JWK Set (RFC 7517), found by
the token's ``kid``; its ``alg`` must be one the service allows *and* fit that key's type,
so neither ``none`` nor an HMAC signed with a public key as the secret can pass. ``exp`` is
required, ``nbf`` and ``iat`` are honoured, each with ``leeway_seconds`` of clock skew;
scopes come from ``scope`` (a space-separated string, RFC 8693) or ``scp`` (a list, or a
string).

The signature, the ``alg`` allow-list and key fit, ``iss``, ``aud`` and the presence of
``exp`` are PyJWT's (with ``cryptography``); keys are parsed by its ``PyJWK``. PyJWT reads the
wall clock for the time claims itself, so those three comparisons are made here against the
``now`` the gateway passes, the same for every check of one request. The gateway imports
this module, and with it PyJWT and cryptography, at the first request for a
service that takes JWTs: a Lambda serving none never loads them (``make bench`` measures
the cold start both ways).

Refusals never quote the token, and say no more than RFC 6750's ``error`` code; the reason,
one word, is kept on the error for logs and metrics.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chalicelib.errors import InsufficientScope, InvalidToken, MissingToken
from chalicelib.exposure.jwks import JwksCache, default_keys, inline_keys, unusable_key
from chalicelib.exposure.jwt_rules import MAX_CLAIM_HEADER_VALUE, JwtRules, required_scopes
from chalicelib.recent import Recent

if TYPE_CHECKING:
    from jwt import PyJWK

# Longer bearer credentials are refused unread: API Gateway's own header limit is 10 KiB.
MAX_TOKEN_LENGTH = 8 * 1024
# Tokens whose signature and claims passed, remembered per container (least recently used
# out): a client sends one token until it expires, and its signature need not be checked on
# every request. Each holds the token's claims, so at most some MiB.
MAX_VERIFIED_TOKENS = 4096


@dataclass(frozen=True)
class Identity:
    """Who a valid token speaks for: ``sub`` when it is a string, every claim, and the
    headers the service asked its claims to be forwarded as."""

    subject: str | None
    claims: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Verified:
    """A token that passed: under which rules, with which key (found by ``kid`` and
    ``algorithm``), and what it says."""

    rules: JwtRules
    kid: str | None
    algorithm: str
    key: PyJWK
    claims: dict[str, Any]
    headers: dict[str, str]


class VerifiedTokens(Recent[bytes, _Verified]):
    """Tokens that passed every check but the time and scope ones, by SHA-256, at most
    ``size`` (the least recently used is dropped). A token found here is taken again only
    under equal rules and while the key set still gives the very key object that checked it:
    a key set fetched again, or changed inline, builds new key objects, so every token is
    checked afresh against it. Time claims and scopes are checked on every request."""

    def __init__(self, size: int = MAX_VERIFIED_TOKENS) -> None:
        super().__init__(size)


def verify(
    rules: JwtRules,
    authorization: str | None,
    path: str,
    now: float,
    *,
    keys: JwksCache | None = None,
    verified: VerifiedTokens | None = None,
) -> Identity:
    """The identity a request's ``Authorization`` header proves for ``path`` at wall-clock
    ``now`` (seconds since the epoch), or MissingToken, InvalidToken, InsufficientScope or
    KeysUnavailable. ``keys`` caches ``jwks_url`` key sets; by default one per container.
    ``verified`` remembers tokens that passed, so that one sent again costs no signature
    check."""
    token = bearer_token(authorization)
    digest = hashlib.sha256(token.encode()).digest()
    passed = verified.get(digest) if verified is not None else None
    if passed is None or not _still_good(passed, rules, keys):
        passed = _checked(token, rules, keys)
        if verified is not None:
            verified.put(digest, passed)
    claims = passed.claims
    _check_times(claims, now, rules.leeway_seconds)
    _check_scopes(claims, required_scopes(rules, path))
    subject = claims.get("sub")
    return Identity(
        subject=subject if isinstance(subject, str) else None,
        claims=claims,
        headers=passed.headers,
    )


def _still_good(passed: _Verified, rules: JwtRules, keys: JwksCache | None) -> bool:
    if passed.rules != rules:
        return False
    try:
        return _signing_key(rules, passed.kid, passed.algorithm, keys) is passed.key
    except InvalidToken:
        return False


def _checked(token: str, rules: JwtRules, keys: JwksCache | None) -> _Verified:
    """Everything about ``token`` but its time claims and scopes, checked."""
    import jwt

    try:
        # The key is chosen by the header alone: PyJWT reads the first segment, and decode
        # below reads and checks the whole token again.
        header = jwt.get_unverified_header(token.partition(".")[0] + "..")
    except jwt.PyJWTError:
        raise InvalidToken("malformed") from None
    algorithm, kid = header.get("alg"), header.get("kid")
    if algorithm not in rules.algorithms:
        raise InvalidToken("algorithm")
    key = _signing_key(rules, kid, algorithm, keys)
    claims = _decoded(token, key, rules)
    return _Verified(rules, kid, algorithm, key, claims, forwarded_headers(rules, claims))


def bearer_token(authorization: str | None) -> str:
    """The credentials of ``Authorization: Bearer <token>`` (the scheme in any case); no
    header, or another scheme, is MissingToken."""
    scheme, _, credentials = (authorization or "").strip(" \t").partition(" ")
    if scheme.lower() != "bearer":
        raise MissingToken()
    token = credentials.strip(" \t")
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise InvalidToken("malformed")
    return token


def _signing_key(rules: JwtRules, kid: str | None, algorithm: str, keys: JwksCache | None) -> PyJWK:
    if rules.jwks_json is not None:
        found = inline_keys(rules.jwks_json).find(kid, algorithm)
        if found is None:
            raise InvalidToken("unknown_key")
        return found
    if rules.jwks_url is None:
        raise InvalidToken("unknown_key")
    return (keys or default_keys()).key(rules.jwks_url, kid, algorithm)


# PyJWT's exceptions by name (its public classes), and the reason each is logged as.
_REASONS = {
    "InvalidSignatureError": "signature",
    "InvalidAlgorithmError": "algorithm",
    "InvalidKeyError": "key",
    "InvalidIssuerError": "issuer",
    "InvalidAudienceError": "audience",
    "MissingRequiredClaimError": "claims",
    "InvalidSubjectError": "claims",
    "InvalidJTIError": "claims",
    "DecodeError": "malformed",
}


def _decoded(token: str, key: PyJWK, rules: JwtRules) -> dict[str, Any]:
    import jwt

    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=list(rules.algorithms),
            audience=list(rules.audiences),
            issuer=rules.issuer,
            options={
                "require": ["exp", "iss", "aud"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "enforce_minimum_key_length": True,
            },
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(_REASONS.get(type(exc).__name__, "invalid")) from None
    except Exception as exc:  # a key PyJWT cannot use, say: the key's fault, not a 500
        raise unusable_key(exc) from None
    return claims


def _check_times(claims: Mapping[str, Any], now: float, leeway: int) -> None:
    """RFC 7519's time claims, as PyJWT would check them, against the request's ``now``."""
    exp, nbf, iat = (_time_claim(claims, name) for name in ("exp", "nbf", "iat"))
    if exp is None:
        raise InvalidToken("claims")
    if exp <= now - leeway:
        raise InvalidToken("expired")
    if any(value is not None and value > now + leeway for value in (nbf, iat)):
        raise InvalidToken("not_yet_valid")


def _time_claim(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim, None when absent; InvalidToken when it is no finite number."""
    value = claims.get(name)
    if value is not None and not _is_number(value):
        raise InvalidToken("claims")
    return None if value is None else float(value)


def _is_number(value: Any) -> bool:
    """A finite JSON number; an integer too large for a float (``10**400``) is none."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_scopes(claims: Mapping[str, Any], required: tuple[str, ...] | None) -> None:
    if not required:
        return
    missing = set(required) - granted_scopes(claims)
    if missing:
        raise InsufficientScope(required)


def granted_scopes(claims: Mapping[str, Any]) -> set[str]:
    """The scopes a token holds: ``scope`` and ``scp``, each a space-separated string or a
    list of strings, taken together."""
    granted: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            granted.update(value.split())
        elif isinstance(value, list):
            granted.update(item for item in value if isinstance(item, str))
    return granted


def forwarded_headers(rules: JwtRules, claims: Mapping[str, Any]) -> dict[str, str]:
    """Each forwarded claim the token has, as its header: a string as it is, anything else
    as compact JSON. A value that could not travel as one header line (a control character,
    beyond ASCII, longer than MAX_CLAIM_HEADER_VALUE) is left out rather than altered."""
    found = {}
    for claim, header in rules.forward_claims:
        if claim in claims:
            value = claims[claim]
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            if len(text) <= MAX_CLAIM_HEADER_VALUE and text.isascii() and text.isprintable():
                found[header] = text
    return found
