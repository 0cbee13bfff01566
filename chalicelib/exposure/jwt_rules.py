"""The ``jwt`` part of an exposure document: its schema, its rules, and how a request path
is matched against its scope rules.

A service whose exposure document lists ``jwt`` in ``auth`` accepts ``Authorization: Bearer
<jwt>``, checked by ``chalicelib.exposure.tokens`` against these rules: ``iss`` must equal
``issuer``; ``aud`` must hold one of ``audiences``; ``alg`` must be one of ``algorithms``;
the keys come inline (``jwks``) or from ``jwks_url`` (``chalicelib.exposure.jwks``). The
longest ``scopes`` rule whose ``path_prefix`` holds the request path names the scopes it
needs. The path is compared as upstreams may route it (canonical_path), erring towards a
rule: a path no reading can match with confidence is refused outright while the service has
any rule.

Amazon Cognito: ID tokens carry the app client id in ``aud``; access tokens carry it in
``client_id`` and have ``aud`` only when the client asked for a resource (RFC 8707 resource
binding), so an access token without one is refused as having no audience.

This module does not import PyJWT, so that reading a document costs a cold start nothing
it would; only ``problems`` on an inline key set parses its keys
(PyJWT, at the registry's write, never on the gateway's path).
"""

from __future__ import annotations

import json
import posixpath
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from chalicelib.errors import AmbiguousPath, HostNotAllowed, InvalidRequest
from chalicelib.validation import HEADER_NAME_PATTERN
from lambdamesh_routing.forwarding import CLIENT_CLAIMS, HOP_BY_HOP, REQUEST_ID_HEADER
from lambdamesh_routing.hosts import AddressPolicy, normalize_host

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

# At most this many keys in one JWK Set, inline or fetched.
MAX_KEYS = 100
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
    from chalicelib.exposure.jwks import JwksError, KeySet

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
        normalize_host(
            urlsplit(url).hostname or "", AddressPolicy(allow_loopback=allow_loopback_http)
        )
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
