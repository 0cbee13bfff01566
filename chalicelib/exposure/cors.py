"""Per-service CORS: which browser origins may call an exposed service, and what to answer.

The Fetch standard's CORS protocol puts the decision in the browser: it sends ``Origin`` (and,
before a request it may not send unasked, an ``OPTIONS`` preflight naming the method and the
headers it wants), and reads the ``Access-Control-*`` answer headers to decide whether the page
may see the answer. The gateway's part is to answer those headers exactly: the origin compared
byte for byte as the browser serializes it, never ``*`` beside credentials (browsers refuse
that pairing), and ``Vary`` so that a shared cache never serves one origin's answer to another.

Pure decisions over plain data, no I/O: the gateway's flow calls them before authentication,
since a browser sends a preflight without credentials.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.validation import HEADER_NAME_PATTERN
from lambdamesh_routing.forwarding import METHODS
from lambdamesh_routing.hosts import is_dns_label

MAX_ORIGINS = 32
MAX_HEADERS = 16
MAX_METHODS = 16
# "https://" + a 253-character host name + ":65535", with room for a longer scheme.
MAX_ORIGIN_LENGTH = 300
MAX_AGE_SECONDS = 86_400
DEFAULT_MAX_AGE_SECONDS = 600
# A client's own value quoted in a refusal is cut to this many characters.
MAX_QUOTED = 100

ANY_ORIGIN = "*"
# Fetch's CORS-safelisted methods: a browser sends them cross-origin without a preflight when
# the headers are simple, so refusing one in a preflight would only make the outcome depend on
# which headers a page happened to set. They are allowed whether listed or not.
SAFELISTED_METHODS = frozenset({"GET", "HEAD", "POST"})
DEFAULT_METHODS = ("GET", "HEAD", "POST")
# Fetch's CORS-safelisted request headers, less Content-Type: a browser names Content-Type in
# Access-Control-Request-Headers only when its value is not one of the three form types (say
# application/json), which is the very request a preflight guards, so it must be listed.
SAFELISTED_HEADERS = frozenset({"accept", "accept-language", "content-language"})
# The ports a browser leaves out of an origin it serializes.
DEFAULT_PORTS = {"http": 80, "https": 443}
ANSWER_VARY = "Origin"
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_NETLOC = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>[^:]*))?")
_HEADER_LIST_SPACE = " \t"


def _names(limit: int) -> dict[str, Any]:
    return {
        "type": "array",
        "maxItems": limit,
        "uniqueItems": True,
        "items": {"type": "string", "pattern": HEADER_NAME_PATTERN},
    }


# The ``cors`` part of an exposure document. An origin's form is checked by problems(), which
# can say what is wrong with it.
CORS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["allow_origins"],
    "properties": {
        "allow_origins": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_ORIGINS,
            "uniqueItems": True,
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_ORIGIN_LENGTH},
        },
        "allow_methods": {
            "type": "array",
            "maxItems": MAX_METHODS,
            "uniqueItems": True,
            "items": {"enum": list(METHODS)},
        },
        "allow_headers": _names(MAX_HEADERS),
        "expose_headers": _names(MAX_HEADERS),
        "allow_credentials": {"type": "boolean"},
        "max_age_seconds": {"type": "integer", "minimum": 0, "maximum": MAX_AGE_SECONDS},
    },
}


@dataclass(frozen=True)
class CorsRules:
    """Origins are serialized origins (``https://app.example.com``) or ``*``; header names
    keep the case they were written in and compare without it."""

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...] = DEFAULT_METHODS
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS

    def allows_origin(self, origin: str) -> bool:
        return ANY_ORIGIN in self.allow_origins or origin in self.allow_origins


@dataclass(frozen=True)
class Preflight:
    """The answer to a preflight: the gateway sends ``headers`` with a 204 when ``allowed``,
    else a 403 whose message is ``reason`` (and ``headers``, which then only say ``Vary``)."""

    allowed: bool
    headers: dict[str, str]
    reason: str = ""


def from_json(doc: Mapping[str, Any]) -> CorsRules:
    """Rules from a document that passed CORS_SCHEMA and problems(); absent fields take their
    defaults."""
    return CorsRules(
        allow_origins=tuple(doc["allow_origins"]),
        allow_methods=tuple(doc.get("allow_methods", DEFAULT_METHODS)),
        allow_headers=tuple(doc.get("allow_headers", ())),
        expose_headers=tuple(doc.get("expose_headers", ())),
        allow_credentials=bool(doc.get("allow_credentials", False)),
        max_age_seconds=int(doc.get("max_age_seconds", DEFAULT_MAX_AGE_SECONDS)),
    )


def to_json(rules: CorsRules) -> dict[str, Any]:
    """The document, every field present: what the registry answers and stores."""
    return {
        "allow_origins": list(rules.allow_origins),
        "allow_methods": list(rules.allow_methods),
        "allow_headers": list(rules.allow_headers),
        "expose_headers": list(rules.expose_headers),
        "allow_credentials": rules.allow_credentials,
        "max_age_seconds": rules.max_age_seconds,
    }


def problems(doc: Mapping[str, Any]) -> list[str]:
    """What CORS_SCHEMA cannot say about a document that passed it: each origin's form, and
    ``*`` beside credentials, which browsers refuse (so listing it would only fail later, in
    every user's browser)."""
    found = []
    origins = doc["allow_origins"]
    for index, origin in enumerate(origins):
        problem = origin_problem(origin)
        if problem:
            found.append(f"cors.allow_origins[{index}] {origin!r} {problem}")
    if ANY_ORIGIN in origins and doc.get("allow_credentials", False):
        found.append(
            "cors.allow_origins '*' cannot go with allow_credentials true: browsers refuse "
            "credentials for any origin; list the origins instead"
        )
    for field in ("allow_headers", "expose_headers"):
        if "*" in doc.get(field, ()):
            found.append(f"cors.{field} '*' is not supported: list the header names")
    return found


def origin_problem(text: str) -> str | None:
    """Why ``text`` is neither ``*`` nor an origin as a browser serializes it (the browser's
    ``Origin`` is compared byte for byte, so any other spelling would never match); None when
    it is one."""
    if text == ANY_ORIGIN:
        return None
    if text != text.lower():
        return "is not lower case: browsers send origins in lower case"
    if "*" in text:
        return "holds a wildcard: list each origin, or '*' alone for any origin"
    scheme, separator, netloc = text.partition("://")
    if not separator or not _SCHEME.fullmatch(scheme):
        return "is not an origin: write scheme://host[:port], such as https://app.example.com"
    if any(mark in netloc for mark in "/?#"):
        return "has a path, query or fragment: an origin is scheme://host[:port] only"
    if "@" in netloc:
        return "holds a user name: an origin is scheme://host[:port] only"
    return _netloc_problem(scheme, netloc)


def _netloc_problem(scheme: str, netloc: str) -> str | None:
    match = _NETLOC.fullmatch(netloc)
    if match is None:
        return "is not an origin: write scheme://host[:port], such as https://app.example.com"
    return _host_problem(match["host"]) or _port_problem(scheme, match["port"])


def _host_problem(host: str) -> str | None:
    if host.startswith("["):
        return _ipv6_problem(host[1:-1])
    labels = host.split(".")
    if not all(is_dns_label(label) for label in labels):
        return "has no valid host name: labels of a-z, 0-9 and '-', dots between"
    if all(label.isdigit() for label in labels) and not _is_ipv4(host):
        return "has no valid host: write an IPv4 address as four numbers 0-255"
    return None


def _ipv6_problem(text: str) -> str | None:
    if "%" in text:
        return "has a zone in its IPv6 address, which origins never carry"
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return "has no valid host: the part in brackets is not an IPv6 address"
    if str(address) != text:
        return f"is not spelled as browsers send it: write [{address}]"
    return None


def _is_ipv4(text: str) -> bool:
    try:
        return str(ipaddress.IPv4Address(text)) == text
    except ValueError:
        return False


def _port_problem(scheme: str, port: str | None) -> str | None:
    if port is None:
        return None
    if not port.isdigit() or port.startswith("0") or not 1 <= int(port) <= 65535:
        return "has no valid port: write a number 1-65535 without leading zeros"
    if DEFAULT_PORTS.get(scheme) == int(port):
        return f"names the default port {port}, which browsers leave out: remove ':{port}'"
    return None


def preflight(rules: CorsRules, method: str, headers: Mapping[str, str]) -> Preflight | None:
    """The answer to a CORS preflight, or None when the request is not one (not OPTIONS, or
    without ``Origin`` or ``Access-Control-Request-Method``) and goes on like any other.

    Allowed when the origin is listed, the method is listed or safelisted, and every header
    named in ``Access-Control-Request-Headers`` is listed or safelisted. The allow headers
    then echo what was asked (the browser checks each of its own names against them)."""
    origin = header(headers, "Origin")
    method_asked = header(headers, "Access-Control-Request-Method")
    if method != "OPTIONS" or not origin or not method_asked:
        return None
    names = requested_headers(header(headers, "Access-Control-Request-Headers"))
    reason = _refusal(rules, origin, method_asked, names)
    if reason:
        return Preflight(allowed=False, headers={"Vary": PREFLIGHT_VARY}, reason=reason)
    return Preflight(allowed=True, headers=_preflight_headers(rules, origin, names))


def _refusal(rules: CorsRules, origin: str, method: str, names: list[str]) -> str:
    if not rules.allows_origin(origin):
        return f"the origin {_quote(origin)} is not allowed to call this service"
    if method not in SAFELISTED_METHODS and method not in rules.allow_methods:
        return f"the method {_quote(method)} is not allowed from other origins"
    allowed = {name.lower() for name in rules.allow_headers} | SAFELISTED_HEADERS
    refused = [name for name in names if name not in allowed]
    if refused:
        return f"the header {_quote(refused[0])} is not allowed from other origins"
    return ""


def _preflight_headers(rules: CorsRules, origin: str, names: list[str]) -> dict[str, str]:
    found = {"Access-Control-Allow-Origin": _allow_origin(rules, origin)}
    if rules.allow_methods:
        found["Access-Control-Allow-Methods"] = ", ".join(rules.allow_methods)
    if names:
        found["Access-Control-Allow-Headers"] = ", ".join(names)
    found["Access-Control-Max-Age"] = str(rules.max_age_seconds)
    if rules.allow_credentials:
        found["Access-Control-Allow-Credentials"] = "true"
    found["Vary"] = PREFLIGHT_VARY
    return found


def answer_headers(rules: CorsRules, origin: str | None) -> dict[str, str]:
    """The CORS headers of an ordinary (not preflight) answer for a request from ``origin``.

    ``Vary: Origin`` always, since whether the allow headers appear depends on the origin; the
    allow headers only when the origin is listed. The gateway adds them to its own errors too:
    without them a page cannot read why it was refused."""
    if not origin or not rules.allows_origin(origin):
        return {"Vary": ANSWER_VARY}
    found = {"Access-Control-Allow-Origin": _allow_origin(rules, origin), "Vary": ANSWER_VARY}
    if rules.allow_credentials:
        found["Access-Control-Allow-Credentials"] = "true"
    if rules.expose_headers:
        found["Access-Control-Expose-Headers"] = ", ".join(rules.expose_headers)
    return found


def _allow_origin(rules: CorsRules, origin: str) -> str:
    """``*`` when any origin is allowed (never with credentials: problems() refuses that),
    else the origin itself, the only other value a browser accepts."""
    return ANY_ORIGIN if ANY_ORIGIN in rules.allow_origins else origin


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A request header's value, its name compared without case (API Gateway's REST API keeps
    the client's case, its HTTP API and function URLs lower it)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def requested_headers(value: str | None) -> list[str]:
    """The names in an ``Access-Control-Request-Headers`` value, lower case, in order."""
    if not value:
        return []
    names = (name.strip(_HEADER_LIST_SPACE).lower() for name in value.split(","))
    return [name for name in names if name]


def _quote(text: str) -> str:
    return repr(text[:MAX_QUOTED])
