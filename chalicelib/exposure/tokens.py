"""JWT bearer tokens for an exposed service: the rules, the check, and the signing keys.

A service whose exposure document lists ``jwt`` in ``auth`` accepts ``Authorization: Bearer
<jwt>``. The token's signature is checked with a key from the issuer's JWK Set (RFC 7517),
found by the token's ``kid``; its ``alg`` must be one the service allows *and* fit that key's
type, so neither ``none`` nor an HMAC signed with a public key as the secret can pass. ``exp``
is required, ``nbf`` and ``iat`` are honoured, each with ``leeway_seconds`` of clock skew;
``iss`` must equal ``issuer``; ``aud`` must hold one of ``audiences``. Scopes come from
``scope`` (a space-separated string, RFC 8693) or ``scp`` (a list, or a string); the longest
``scopes`` rule whose ``path_prefix`` holds the request path names the scopes it needs. The
path is compared as upstreams may route it (canonical_path), erring towards a rule: a path
no reading can match with confidence is refused outright while the service has any rule.

Amazon Cognito: ID tokens carry the app client id in ``aud``; access tokens carry it in
``client_id`` and have ``aud`` only when the client asked for a resource (RFC 8707 resource
binding), so an access token without one is refused here as having no audience.

The signature, the ``alg`` allow-list and key fit, ``iss``, ``aud`` and the presence of
``exp`` are PyJWT's (with ``cryptography``); keys are parsed by its ``PyJWK``. PyJWT reads the
wall clock for the time claims itself, so those three comparisons are made here against the
``now`` the gateway passes, the same for every check of one request. PyJWT and cryptography
are imported by the first verification, not with this module: a Lambda serving no JWT
service never loads them (measured on x86_64: the imports and a first RS256 verification take
about four times an empty interpreter's start, some 100 ms, and add some 50 ms, 10-15 %, to
the app's own cold import).

JWK Sets come inline (``jwks``) or from ``jwks_url``, fetched with ``urllib`` (https only, no
redirect followed, bounded in time, bytes and keys) and kept per URL in ``JwksCache``: fresh
for KEYS_FRESH_SECONDS, fetched again on a ``kid`` it does not know at most once per
REFETCH_SECONDS (so a flood of made-up ``kid`` values costs one fetch, not one each), keeping
the keys it has when a fetch fails. ``lambdamesh dev`` and tests may fetch ``http://`` from
loopback through an explicit ``allow_loopback_http`` flag; a deployed gateway never does. A
``jwks_url`` whose host is an IP literal the gateway would never reach (link-local and
instance metadata, unspecified, multicast, private, and loopback unless that flag allows
it) is refused; a DNS name is resolved by the system resolver at fetch time, and leads
wherever the admin who set it points it. An inline set may hold public keys only: one with
a private member (``d``, ``k``, ...) is refused, and only public members are ever stored; a
fetched key with one is ignored.

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

Refusals never quote the token, and say no more than RFC 6750's ``error`` code; the reason,
one word, is kept on the error for logs and metrics.
"""

from __future__ import annotations

import functools
import http.client
import json
import math
import posixpath
import re
import threading
import time
import unicodedata
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from chalicelib.errors import (
    Forbidden,
    HostNotAllowed,
    InvalidRequest,
    LambdaMeshError,
    Unauthorized,
)
from chalicelib.observability import logger
from chalicelib.validation import HEADER_NAME_PATTERN
from lambdamesh_routing.forwarding import CLIENT_CLAIMS, HOP_BY_HOP, REQUEST_ID_HEADER
from lambdamesh_routing.hosts import HostPolicy, normalize_host

if TYPE_CHECKING:
    from jwt import PyJWK

# Asymmetric algorithms only: an HMAC (HS*) key is a shared secret, which a JWK Set of public
# keys cannot hold, and ``none`` is no signature.
ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
DEFAULT_ALGORITHMS = ("RS256", "ES256")
# The JWK ``kty`` (and ``crv``, where the algorithm fixes it) each algorithm verifies with.
KEY_TYPES: dict[str, tuple[str, str | None]] = {
    **{name: ("RSA", None) for name in ALGORITHMS if name[:2] in ("RS", "PS")},
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}
MAX_AUDIENCES = 16
MAX_AUDIENCE_LENGTH = 256
MAX_URL_LENGTH = 2048
MAX_LEEWAY_SECONDS = 300
DEFAULT_LEEWAY_SECONDS = 30
MAX_SCOPE_RULES = 32
MAX_SCOPES_PER_RULE = 16
MAX_PATH_PREFIX = 256
MAX_FORWARD_CLAIMS = 16
MAX_CLAIM_NAME = 256
# A forwarded claim longer than this, as its header value, is not forwarded.
MAX_CLAIM_HEADER_VALUE = 1024
# Longer bearer credentials are refused unread: API Gateway's own header limit is 10 KiB.
MAX_TOKEN_LENGTH = 8 * 1024

MAX_JWKS_BYTES = 64 * 1024
MAX_KEYS = 100
MAX_CACHED_URLS = 32
FETCH_TIMEOUT_SECONDS = 2.0
KEYS_FRESH_SECONDS = 600.0
REFETCH_SECONDS = 60.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# The members of a JWK that hold a private or secret key (RFC 7518 section 6, RFC 8037): a
# key set for checking signatures needs none, and one that carries them has given its
# signing key away.
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
# What is kept of a key: the members RFC 7517 section 4 gives every key, and the public ones
# of the types a signature is checked with (RSA: n, e; EC: crv, x, y; OKP: crv, x).
PUBLIC_MEMBERS = frozenset(
    {"kty", "use", "key_ops", "alg", "kid", "x5u", "x5c", "x5t", "x5t#S256"}
    | {"n", "e", "crv", "x", "y"}
)

REALM = 'Bearer realm="lambdamesh"'
# RFC 6749 section 3.3: a scope token is printable ASCII but space, '"' and '\'.
_SCOPE_TOKEN = r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$"  # noqa: S105 - a pattern, not a secret
# Headers a claim may not be forwarded as: those a proxy owns (hop-by-hop, recomputed, the
# request id), the credential, and those upstreams read as facts the gateway vouches for.
_RESERVED_HEADERS = (
    HOP_BY_HOP
    | CLIENT_CLAIMS
    | {"host", "content-length", "authorization", "x-api-key", REQUEST_ID_HEADER.lower()}
)
_RESERVED_PREFIXES = ("x-forwarded-", "x-lambdamesh-", "proxy-")


# What scope rules read as a path's structure: no other character may turn into one of these
# when the path is normalised.
_STRUCTURE = "/\\.%;?#"
# Anything but printable ASCII, in a URL: spaces, control characters, text beyond ASCII.
_NOT_URL_TEXT = re.compile(r"[^\x21-\x7e]")


def _strings(limit: int, item: dict[str, Any], **rest: Any) -> dict[str, Any]:
    return {"type": "array", "maxItems": limit, "uniqueItems": True, "items": item, **rest}


# The ``jwt`` part of an exposure document. URL forms, the choice between ``jwks_url`` and
# ``jwks``, path prefixes and header names are checked by problems(), which says what is wrong.
JWT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["issuer", "audiences"],
    "properties": {
        "issuer": {"type": "string", "minLength": 1, "maxLength": MAX_URL_LENGTH},
        "audiences": _strings(
            MAX_AUDIENCES,
            {"type": "string", "minLength": 1, "maxLength": MAX_AUDIENCE_LENGTH},
            minItems=1,
        ),
        "algorithms": _strings(len(ALGORITHMS), {"enum": list(ALGORITHMS)}, minItems=1),
        "jwks_url": {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_URL_LENGTH},
        "jwks": {
            "type": ["object", "null"],
            "required": ["keys"],
            "properties": {
                "keys": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_KEYS,
                    "items": {"type": "object", "required": ["kty"]},
                }
            },
        },
        "leeway_seconds": {"type": "integer", "minimum": 0, "maximum": MAX_LEEWAY_SECONDS},
        "scopes": {
            "type": "array",
            "maxItems": MAX_SCOPE_RULES,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["path_prefix", "required"],
                "properties": {
                    "path_prefix": {
                        "type": "string",
                        "maxLength": MAX_PATH_PREFIX,
                        "pattern": r"^/[^\x00-\x20\x7f]*$",
                    },
                    "required": _strings(
                        MAX_SCOPES_PER_RULE, {"type": "string", "pattern": _SCOPE_TOKEN}
                    ),
                },
            },
        },
        "forward_claims": {
            "type": "object",
            "maxProperties": MAX_FORWARD_CLAIMS,
            "propertyNames": {"minLength": 1, "maxLength": MAX_CLAIM_NAME},
            "additionalProperties": {"type": "string", "pattern": HEADER_NAME_PATTERN},
        },
        "forward_token": {"type": "boolean"},
    },
}


@dataclass(frozen=True)
class ScopeRule:
    """Requests whose path is ``path_prefix`` or below it need every scope in ``required``
    (none: the subtree is open to any valid token, whatever a shorter prefix needs)."""

    path_prefix: str
    required: tuple[str, ...]


@dataclass(frozen=True)
class JwtRules:
    """``jwks_json`` is the inline JWK Set as compact JSON (hashable, and the key its parsed
    keys are cached by); ``forward_claims`` pairs a claim name with the header it goes as."""

    issuer: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    jwks_url: str | None = None
    jwks_json: str | None = None
    leeway_seconds: int = DEFAULT_LEEWAY_SECONDS
    scopes: tuple[ScopeRule, ...] = ()
    forward_claims: tuple[tuple[str, str], ...] = ()
    forward_token: bool = False


@dataclass(frozen=True)
class Identity:
    """Who a valid token speaks for: ``sub`` when it is a string, every claim, and the
    headers the service asked its claims to be forwarded as."""

    subject: str | None
    claims: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class InvalidToken(Unauthorized):
    """The bearer token was refused: malformed, badly signed, expired, not for this service.
    ``reason`` (one word) is for logs and metrics; the answer says only RFC 6750's code."""

    code = "invalid_token"

    def __init__(self, reason: str) -> None:
        super().__init__("the bearer token is not valid")
        self.reason = reason

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": f'{REALM}, error="invalid_token"'}


class MissingToken(Unauthorized):
    """No bearer credentials at all: RFC 6750 section 3.1 answers without an error code."""

    def __init__(self) -> None:
        super().__init__("this service needs a bearer token: send Authorization: Bearer <jwt>")

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": REALM}


class InsufficientScope(Forbidden):
    """The token is valid but lacks a scope the request path needs."""

    code = "insufficient_scope"

    def __init__(self, required: Sequence[str]) -> None:
        super().__init__("the bearer token lacks a scope this path needs")
        self.scope = " ".join(required)

    def headers(self) -> dict[str, str]:
        challenge = f'{REALM}, error="insufficient_scope", scope="{self.scope}"'
        return {**super().headers(), "WWW-Authenticate": challenge}


class AmbiguousPath(InvalidRequest):
    """A request path that scope rules cannot be matched against with confidence, because
    upstreams differ on where it leads. Refused whatever the token holds: no scope would make
    the match certain, so 403 ``insufficient_scope`` would send the client after one in vain;
    RFC 6750 answers a malformed request 400 ``invalid_request``."""

    def __init__(self, holds: str) -> None:
        super().__init__(
            f"this path cannot be matched to the service's scope rules: it holds {holds}"
        )

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": f'{REALM}, error="invalid_request"'}


class KeysUnavailable(LambdaMeshError):
    """No signing keys could be had for the service's ``jwks_url`` (never fetched, or every
    fetch failed): the gateway's fault, not the token's. This container tries again after
    ``REFETCH_SECONDS``."""

    status = 503
    code = "jwks_unavailable"
    retry_after = int(REFETCH_SECONDS)

    def __init__(self) -> None:
        super().__init__("the signing keys of this service's token issuer cannot be fetched")


class JwksError(Exception):
    """A JWK Set could not be fetched or read; the message says why, for logs."""


# --- the rules ---------------------------------------------------------------------------


def from_json(doc: Mapping[str, Any]) -> JwtRules:
    """Rules from a document that passed JWT_SCHEMA and problems(); absent fields take their
    defaults. Of an inline ``jwks``, only each key's PUBLIC_MEMBERS are kept."""
    jwks = doc.get("jwks")
    return JwtRules(
        issuer=doc["issuer"],
        audiences=tuple(doc["audiences"]),
        algorithms=tuple(doc.get("algorithms", DEFAULT_ALGORITHMS)),
        jwks_url=doc.get("jwks_url"),
        jwks_json=None if jwks is None else json.dumps(public_jwks(jwks), separators=(",", ":")),
        leeway_seconds=int(doc.get("leeway_seconds", DEFAULT_LEEWAY_SECONDS)),
        scopes=tuple(
            ScopeRule(rule["path_prefix"], tuple(rule["required"]))
            for rule in doc.get("scopes", ())
        ),
        forward_claims=tuple(doc.get("forward_claims", {}).items()),
        forward_token=bool(doc.get("forward_token", False)),
    )


def public_jwks(document: Mapping[str, Any]) -> dict[str, Any]:
    """A JWK Set with each key cut down to its PUBLIC_MEMBERS, and nothing else."""
    return {"keys": [public_key(key) for key in document["keys"]]}


def public_key(key: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in key.items() if name in PUBLIC_MEMBERS}


def to_json(rules: JwtRules) -> dict[str, Any]:
    """The document, every field present: what the registry answers and stores."""
    return {
        "issuer": rules.issuer,
        "audiences": list(rules.audiences),
        "algorithms": list(rules.algorithms),
        "jwks_url": rules.jwks_url,
        "jwks": None if rules.jwks_json is None else json.loads(rules.jwks_json),
        "leeway_seconds": rules.leeway_seconds,
        "scopes": [
            {"path_prefix": rule.path_prefix, "required": list(rule.required)}
            for rule in rules.scopes
        ],
        "forward_claims": dict(rules.forward_claims),
        "forward_token": rules.forward_token,
    }


def problems(doc: Mapping[str, Any], *, allow_loopback_http: bool = False) -> list[str]:
    """What JWT_SCHEMA cannot say about a document that passed it. An inline ``jwks`` is
    parsed (this imports PyJWT) so that a set without one usable key is refused now, not at
    every request."""
    found = []
    issuer_problem = url_problem(doc["issuer"])
    if issuer_problem:
        found.append(f"jwt.issuer {issuer_problem}")
    found += _keys_problems(doc, allow_loopback_http)
    found += _scope_problems(doc.get("scopes", ()))
    found += _claim_header_problems(doc.get("forward_claims", {}))
    return found


def _keys_problems(doc: Mapping[str, Any], allow_loopback_http: bool) -> list[str]:
    url, inline = doc.get("jwks_url"), doc.get("jwks")
    if (url is None) == (inline is None):
        return ["jwt needs exactly one of jwks_url (fetched) and jwks (the keys inline)"]
    if inline is not None:
        return _inline_problems(inline)
    problem = jwks_url_problem(str(url), allow_loopback_http=allow_loopback_http)
    return [f"jwt.jwks_url {problem}"] if problem else []


def _inline_problems(inline: Mapping[str, Any]) -> list[str]:
    """A key with a private member is refused by name, its value never quoted."""
    secret = [
        f"jwt.jwks.keys[{index}] holds private key material ({', '.join(members)}): a key "
        "set for checking signatures holds public keys only"
        for index, key in enumerate(inline["keys"])
        if (members := [name for name in PRIVATE_MEMBERS if name in key])
    ]
    if secret:
        return secret
    try:
        KeySet.from_document(inline)
    except JwksError as exc:
        return [f"jwt.jwks {exc}"]
    return []


def _scope_problems(rules: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each prefix must be a path as canonical_path leaves it (but for case), so that it is
    matched as written; two prefixes that fold to one are one rule listed twice."""
    found, seen = [], set()
    for index, rule in enumerate(rules):
        prefix = rule["path_prefix"]
        trailing = prefix.endswith("/") and prefix != "/"
        if not _is_plain(prefix) or trailing or any(m in prefix for m in "%;\\?#"):
            found.append(
                f"jwt.scopes[{index}].path_prefix {prefix[:100]!r} is not a plain path: start "
                "with '/', no '//', '.' or '..' segments, segments ending in '.' or a space, "
                "'%', ';', '\\', '?', '#', characters that normalise to those, or trailing '/'"
            )
        elif fold(prefix) in seen:
            found.append(f"jwt.scopes[{index}].path_prefix {prefix!r} is listed twice")
        seen.add(fold(prefix))
    return found


def _is_plain(prefix: str) -> bool:
    try:
        return canonical_path(prefix) == fold(prefix)
    except AmbiguousPath:
        return False


def _claim_header_problems(claims: Mapping[str, str]) -> list[str]:
    found, seen = [], set()
    for claim, header in claims.items():
        name = header.lower().replace("_", "-")
        if name in _RESERVED_HEADERS or name.startswith(_RESERVED_PREFIXES):
            found.append(
                f"jwt.forward_claims {claim[:64]!r} cannot go as {header!r}: the gateway "
                "owns that header"
            )
        elif name in seen:
            found.append(f"jwt.forward_claims names {header!r} for two claims")
        seen.add(name)
    return found


def url_problem(url: str, *, allow_loopback_http: bool = False) -> str | None:
    """Why ``url`` is not an https URL with a host (nor, when allowed, http on loopback);
    None when it is one. Only printable ASCII: ``urlsplit`` would quietly drop a tab or line
    break that urllib then refuses, or sends, and cannot send text beyond ASCII at all."""
    if _NOT_URL_TEXT.search(url):
        return "must be printable ASCII with no spaces: percent-encode anything else"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        return "is not a URL"
    loopback = allow_loopback_http and parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
    if parts.scheme != "https" and not loopback:
        return "must be an https:// URL"
    if not parts.hostname or "@" in parts.netloc:
        return "must name a host, and no user name"
    if parts.fragment or "#" in url:
        return "must have no fragment"
    return None


def jwks_url_problem(url: str, *, allow_loopback_http: bool = False) -> str | None:
    """url_problem, and why the gateway would never fetch from the URL's host: an IP literal
    that is link-local (instance metadata among them), unspecified, multicast, private or
    loopback (unless allowed), or a name that is no DNS name (``2852039166`` is an address
    to the resolver). A DNS name is not checked here: the system resolver looks it up at
    fetch time, wherever the admin who set it points it."""
    problem = url_problem(url, allow_loopback_http=allow_loopback_http)
    if problem:
        return problem
    try:
        normalize_host(urlsplit(url).hostname or "", HostPolicy(allow_loopback=allow_loopback_http))
    except (HostNotAllowed, InvalidRequest) as exc:
        return str(exc)
    return None


def canonical_path(path: str) -> str:
    """The path as scope rules compare it: percent-escapes decoded, NFKC-normalised and
    case-folded, ``\\`` read as ``/``, each segment's ``;`` parameters and trailing dots and
    spaces dropped, empty, ``.`` and ``..`` segments resolved. AmbiguousPath when upstreams
    could read it as another path than any of these steps make of it.

    Upstream servers do some of each before they route (``/%61dmin`` is ``/admin`` to most,
    ``/admin;x`` to Java's, ``/ADMIN`` and ``/admin.`` to those on case-insensitive file
    systems), so a rule compared with the raw path would miss requests that reach the path
    it guards. Each step makes a rule hold more paths, never fewer: a rule may guard a
    path an upstream keeps apart from it, and never misses one it routes there."""
    try:
        text = unquote(path.partition("?")[0], errors="strict")
    except UnicodeDecodeError:
        raise AmbiguousPath("escapes that are not UTF-8") from None
    _check_characters(text)
    folded = fold(text).replace("\\", "/")
    segments = [_segment(segment) for segment in folded.split("/")]
    normal = posixpath.normpath("/" + "/".join(s for s in segments if s))
    return "/" + normal.lstrip("/")


def fold(text: str) -> str:
    """``text`` as scope rules compare it: NFKC-normalised (a full-width A, U+FF21, is
    ``A``), then case-folded."""
    return unicodedata.normalize("NFKC", text).casefold()


def _check_characters(text: str) -> None:
    """AmbiguousPath when the decoded path holds what an upstream may decode again (a ``%``:
    ``%2561`` is ``%61`` here, ``a`` there), cut the path at (``?``, ``#``, a NUL or another
    control character), or read as a separator or a step once normalised (a full-width
    solidus, U+FF0F, is ``/``)."""
    if "%" in text:
        raise AmbiguousPath("an escaped '%' (%25) or a '%' that starts no escape")
    if "?" in text or "#" in text:
        raise AmbiguousPath("an escaped '?' or '#'")
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise AmbiguousPath("a control character")
    normal = unicodedata.normalize("NFKC", text)
    if any(normal.count(char) != text.count(char) for char in _STRUCTURE):
        raise AmbiguousPath("a character that normalises to '/', '\\', '.', '%', ';', '?' or '#'")


def _segment(segment: str) -> str:
    """One segment as compared: parameters and trailing dots and spaces dropped. A segment of
    dots and spaces that is not exactly ``.`` or ``..`` (``...``, ``.. ``, ``..;x``) is a
    step to some servers and a name to others: AmbiguousPath."""
    name, separator, _ = segment.partition(";")
    if name in (".", "..") and not separator:
        return name
    trimmed = name.rstrip(". ")
    if not trimmed and "." in name:  # '..;x' too: its name, '..', trims to nothing
        raise AmbiguousPath(
            "a segment that some servers read as '.' or '..' and others as a name ('...', "
            "'.. ', '..;x')"
        )
    return trimmed


def required_scopes(rules: JwtRules, path: str) -> tuple[str, ...] | None:
    """The scopes of the longest rule whose prefix holds ``path`` (a whole segment matches:
    ``/admin`` holds ``/admin/x``, not ``/administrator``); None when no rule does. With any
    rule, a path canonical_path finds ambiguous is AmbiguousPath; without one, no path is."""
    if not rules.scopes:
        return None
    target = canonical_path(path)
    holding = [rule for rule in rules.scopes if _holds(fold(rule.path_prefix), target)]
    if not holding:
        return None
    return max(holding, key=lambda rule: len(fold(rule.path_prefix))).required


def _holds(prefix: str, path: str) -> bool:
    base = prefix.rstrip("/")
    return path == base or path.startswith(base + "/")


def claim_headers(rules: JwtRules) -> tuple[str, ...]:
    """The header names claims are forwarded as: the gateway removes a client's copies of
    every one, whether or not this token carries the claim."""
    return tuple(header for _, header in rules.forward_claims)


# --- verification ------------------------------------------------------------------------


def verify(
    rules: JwtRules,
    authorization: str | None,
    path: str,
    now: float,
    *,
    keys: JwksCache | None = None,
) -> Identity:
    """The identity a request's ``Authorization`` header proves for ``path`` at wall-clock
    ``now`` (seconds since the epoch), or MissingToken, InvalidToken, InsufficientScope or
    KeysUnavailable. ``keys`` caches ``jwks_url`` key sets; by default one per container."""
    import jwt

    token = bearer_token(authorization)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken("malformed") from None
    algorithm, kid = header.get("alg"), header.get("kid")
    if algorithm not in rules.algorithms:
        raise InvalidToken("algorithm")
    key = _signing_key(rules, kid, algorithm, keys)
    claims = _decoded(token, key, rules)
    _check_times(claims, now, rules.leeway_seconds)
    _check_scopes(claims, required_scopes(rules, path))
    subject = claims.get("sub")
    return Identity(
        subject=subject if isinstance(subject, str) else None,
        claims=claims,
        headers=forwarded_headers(rules, claims),
    )


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
        found = _inline_keys(rules.jwks_json).find(kid, algorithm)
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
        raise _unusable_key(exc) from None
    return claims


def _unusable_key(exc: Exception) -> InvalidToken:
    """The refusal for a failure that is none of PyJWT's own (a key that cannot check a
    signature, say): the token is refused and the log says why; never a 500."""
    logger.warning("jwt key unusable", extra={"reason": f"{type(exc).__name__}: {exc}"[:300]})
    return InvalidToken("key")


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
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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


# --- keys --------------------------------------------------------------------------------


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
                raise _unusable_key(exc) from None
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
def _inline_keys(jwks_json: str) -> KeySet:
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
    tried_at: float = -math.inf


class JwksCache:
    """JWK Sets by URL, for one container: at most ``max_urls`` (the least recently used is
    dropped), each fetched again after KEYS_FRESH_SECONDS, or on a key it lacks, but never
    within REFETCH_SECONDS of the last try. A failed fetch keeps the keys there were.

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
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

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
            raise KeysUnavailable()
        if found is None:
            raise InvalidToken("unknown_key")
        return found

    def _entry(self, url: str) -> _Entry:
        with self._lock:
            entry = self._entries.pop(url, None) or _Entry()
            self._entries[url] = entry
            while len(self._entries) > self._max_urls:
                self._entries.popitem(last=False)
            return entry

    def _refresh(self, url: str, entry: _Entry, now: float) -> None:
        if now - entry.tried_at < REFETCH_SECONDS:
            return
        entry.tried_at = now
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


# --- fetching ----------------------------------------------------------------------------


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
