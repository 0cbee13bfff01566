"""Header and line rules of a well-behaved reverse proxy: pure functions, and one reader.

Hop-by-hop headers (RFC 9110 section 7.6.1) describe one connection and never cross the proxy;
``X-Forwarded-*`` tell the upstream who really called; ``X-Request-Id`` ties the two legs together.

Who called, on which scheme, host, port and URL are facts the gateway vouches for, never the
client: upstreams and their frameworks believe these headers. ``X-Forwarded-For``,
``X-Forwarded-Host`` and ``X-Forwarded-Proto`` are written here; ``X-Forwarded-Proto`` and
``X-Forwarded-Port`` that API Gateway set on the event are kept (it replaces a client's with its
own), a malformed one is not, and where no such edge stands in front (the sidecar's outbound
port) both are the caller's word and dropped; every other header read for the same facts is
dropped. A name is matched with ``_`` read as ``-``: servers that map headers to variables
(WSGI's ``HTTP_X_FORWARDED_FOR``) read ``X_Forwarded_For`` as ``X-Forwarded-For``.

Both HTTP/1.1 servers in front of an app here (the outbound port, the local gateway) read lines
by the same rules too: a bare CR anywhere but before a line's final LF makes the request
invalid (``CheckedReader``), and a chunk-size line has one strict form (``chunk_size``).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from email import errors as email_errors
from email.message import Message
from urllib.parse import quote, urlsplit

# Every method the gateway routes (API Gateway's ANY), and so the outbound port too.
METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Recomputed by whoever writes the next message, so never copied.
_RECOMPUTED = frozenset({"content-length", "host"})
REQUEST_ID_HEADER = "X-Request-Id"
# Answer headers by which one upstream would act on the whole gateway origin, which every
# service behind the gateway shares: `Service-Worker-Allowed` widens a service worker's scope
# beyond the path it was served from (``/api/v1/{service}/{version}/``), so it could see the
# requests of other services' pages.
ORIGIN_WIDE = frozenset({"service-worker-allowed"})
# No "/" and no "..": upstreams put request ids into file and URL paths.
_REQUEST_ID = re.compile(r"(?!.*\.\.)[A-Za-z0-9._:+=-]{1,128}")
# Headers that proxies, CDNs and frameworks read as the client's address, the scheme, host or
# prefix it called, or the URL it asked for. API Gateway sets none of them, so whatever arrives
# is the client's word; the facts travel only in the X-Forwarded-* headers written below.
CLIENT_CLAIMS = frozenset(
    {
        # the client's address: X-Forwarded-For alone carries it
        "x-real-ip",
        "true-client-ip",
        "x-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "x-cluster-client-ip",
        "x-originating-ip",
        # the scheme, host, server or path prefix it called
        "forwarded",
        "x-forwarded-host",
        "x-forwarded-server",
        "x-forwarded-prefix",
        "x-forwarded-scheme",
        "x-forwarded-ssl",
        "front-end-https",
        "x-url-scheme",
        "x-original-host",
        "x-host",
        # the URL it asked for, in place of the request line's
        "x-original-url",
        "x-original-uri",
        "x-rewrite-url",
    }
)
_SCHEMES = frozenset({"http", "https"})
_PORT = re.compile(r"[1-9][0-9]{0,4}")

Headers = dict[str, str | list[str]]

# Characters a path segment may carry unescaped (RFC 3986 pchar), plus the separator.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
# In a query key or value: pchar and "/" and "?", less the delimiters "&", "=" and "+".
QUERY_SAFE = "/?:@!$'()*,;-._~"
# In a whole query as a client wrote it: the delimiters stay as they are.
_RAW_QUERY_SAFE = QUERY_SAFE + "&=+"
_ESCAPE = re.compile(r"(%[0-9A-Fa-f]{2})")
# What ``quote`` never escapes, whatever ``safe`` says.
_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"


def quote_path(path: str, safe: str = _PATH_SAFE, encoding: str = "utf-8") -> str:
    """Quote what needs quoting, keeping escapes the client already made (``%2F`` stays a
    character of a segment, not a separator); a stray ``%`` becomes ``%25``, and so do
    spaces, control characters and anything beyond ASCII."""
    if not path.strip(_UNRESERVED + safe):
        return path  # nothing to quote and no escape: most paths, as they come
    return "".join(
        part if _ESCAPE.fullmatch(part) else quote(part, safe=safe, encoding=encoding)
        for part in _ESCAPE.split(path)
    )


def quote_target(target: str, encoding: str = "utf-8") -> str:
    """A request target as a client sent it, made safe to send on: path and query quoted as
    ``quote_path`` does (their delimiters kept), any fragment dropped (it is never sent).
    ``encoding`` gives the bytes each character stands for (``latin-1`` for a request line
    that ``http.server`` decoded so)."""
    target = target.partition("#")[0]
    path, sep, query = target.partition("?")
    return quote_path(path, encoding=encoding) + sep + quote_path(query, _RAW_QUERY_SAFE, encoding)


# The whitespace around a field value (RFC 9110 section 5.6.3), and nothing else: str.strip()
# also takes off a vertical tab, a form feed, a no-break space and more, so "5\x0b" would
# pass as a Content-Length of 5.
OWS = " \t"
# A field value is visible characters, obs-text, spaces and tabs (RFC 9110 section 5.5): any
# other control character (NUL, VT, DEL...) is refused, never stripped or passed on, since
# the servers behind a proxy disagree on what it means.
_FIELD_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def header_problem(headers: Message) -> str | None:
    """Why a header section, as ``http.client`` parsed it, may not be passed on; or None.

    Obsolete line folding (RFC 9112 section 5.2) leaves a line break inside a value, or a
    continuation line before the first header; a line that is no ``name: value`` pair ends the
    parsed headers early, so the headers after it (a ``Content-Length``, say) would go unseen.
    Other defects the parser records (a multipart Content-Type whose body it has not seen)
    say nothing of the header section.
    """
    defects = headers.defects
    if any(isinstance(d, email_errors.FirstHeaderLineIsContinuationDefect) for d in defects):
        return "obsolete line folding before the first header"
    if any(isinstance(d, email_errors.MissingHeaderBodySeparatorDefect) for d in defects):
        return "malformed header line"
    return field_problem(headers.items())


def field_problem(fields: Iterable[tuple[str, str]]) -> str | None:
    """Why one of these parsed fields may not be passed on (a line break left by obsolete
    folding, or a control character other than tab), or None."""
    for name, value in fields:
        if "\r" in value or "\n" in value:
            return f"obsolete line folding in header {name[:100]}"
        control = _FIELD_CONTROL.search(value)
        if control:
            return f"control character {ord(control.group()):#04x} in header {name[:100]}"
    return None


def bare_cr(line: bytes) -> bool:
    """Whether a line holds a CR anywhere but right before its final LF. RFC 9112 section 2.2
    makes such a message invalid; Python's header parser would instead end a line there, so
    that ``X-A: b<CR>Transfer-Encoding: chunked`` became two headers, one of them hidden from
    a front end that reads the CR as part of the value."""
    return b"\r" in line.removesuffix(b"\r\n")


class CheckedReader(io.BufferedIOBase):
    """A connection's reader that notes (``bare_cr``) a line with a bare CR among those read
    with ``readline``: the request line, the header lines, chunk-size and trailer lines.
    ``http.server`` parses the request line and the headers before the handler sees them, so
    the handler checks the note after parsing and refuses the request. Reads pass through."""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        super().__init__()
        self._raw = raw
        self.bare_cr = False

    def readable(self) -> bool:
        return True

    def readline(self, size: int | None = -1, /) -> bytes:
        line = self._raw.readline(-1 if size is None else size)
        if bare_cr(line):
            self.bare_cr = True
        return line

    def read(self, size: int | None = -1, /) -> bytes:
        return self._raw.read(size)

    def read1(self, size: int = -1, /) -> bytes:
        return self._raw.read1(size)

    def close(self) -> None:
        self._raw.close()
        super().close()


# RFC 9112 section 7.1: the size in hex digits; then spaces or tabs and ";" extensions (which
# a proxy drops: visible characters, spaces, tabs and obs-text); then CRLF, and nothing else.
# Looser readings (str.strip(), a bare LF ending the line) let two parsers disagree on where
# a body ends.
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[\t\x20-\x7e\x80-\xff]*)?\r\n")


def chunk_size(line: bytes) -> int | None:
    """The size a chunk-size line (read with its CRLF) announces, or None if it is malformed."""
    match = _CHUNK_LINE.fullmatch(line)
    return None if match is None else int(match.group(1), 16)


def request_id(incoming: str | None) -> str:
    """The caller's request id when it is sane, else a fresh one."""
    if incoming and _REQUEST_ID.fullmatch(incoming):
        return incoming
    return os.urandom(16).hex()


def _connection_tokens(value: str | None) -> set[str]:
    return {token.strip().lower() for token in (value or "").split(",") if token.strip()}


def _edge_port(value: str | None) -> str | None:
    return value if value and _PORT.fullmatch(value) and int(value) <= 65535 else None


def joined_field(name: str, values: Iterable[str]) -> str:
    """A field sent more than once, as one value: comma-separated, as RFC 9110 section 5.3
    allows, but ``Cookie`` with "; ", the one separator its parsers split on (RFC 6265
    section 5.4)."""
    return ("; " if name.lower() == "cookie" else ", ").join(values)


def joined_fields(fields: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Fields as a message carried them (names as sent, in order), one entry per name: a
    field sent more than once joined by ``joined_field``, never reduced to its last value."""
    headers = dict(fields)
    if len(headers) == len(fields):
        return headers  # none repeated
    grouped: dict[str, list[str]] = {}
    for name, value in fields:
        grouped.setdefault(name, []).append(value)
    return {name: joined_field(name, values) for name, values in grouped.items()}


def field_name(name: str) -> str:
    """A header name as the rules match it: lowercase, ``_`` read as ``-``."""
    return name.lower().replace("_", "-")


# Written by ``upstream_headers`` itself, from the facts, never copied from the client.
_REBUILT = frozenset({"x-request-id", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-port"})
_NEVER_UPSTREAM = HOP_BY_HOP | _RECOMPUTED | CLIENT_CLAIMS | _REBUILT


def _dropped(connection: str | None) -> frozenset[str]:
    """Every name not copied upstream: the fixed ones, and those the first ``Connection``
    header (``connection``) lists."""
    if connection is None:
        return _NEVER_UPSTREAM
    return _NEVER_UPSTREAM | {field_name(token) for token in _connection_tokens(connection)}


def upstream_headers(
    incoming: Mapping[str, str],
    *,
    client_ip: str | None,
    proto: str,
    request_id: str,
    trusted_edge: bool = True,
) -> dict[str, str]:
    """Headers for the upstream request, built from the client's.

    ``trusted_edge`` says that an edge in front (API Gateway) replaced the client's
    ``X-Forwarded-Proto`` and ``X-Forwarded-Port`` with its own; without one, both are the
    client's word: dropped, and ``X-Forwarded-Proto`` is ``proto``."""
    # Read by their exact names: an underscore spelling is dropped below, never believed.
    lowered: dict[str, str] = {}
    names: list[tuple[str, str]] = []  # (as sent, as the rules match it)
    connection: str | None = None
    for name, value in incoming.items():
        lower = name.lower()
        lowered[lower] = value
        names.append((name, lower.replace("_", "-") if "_" in lower else lower))
        if connection is None and lower == "connection":
            connection = value
    drop = _dropped(connection)
    headers = {name: incoming[name] for name, matched in names if matched not in drop}
    if not trusted_edge:
        lowered.pop("x-forwarded-proto", None)
        lowered.pop("x-forwarded-port", None)
    forwarded_for = lowered.get("x-forwarded-for", "").strip()
    # The last hop is the one upstreams trust, so the real client must be it; API Gateway
    # may have appended it already.
    if client_ip and forwarded_for.rsplit(",", 1)[-1].strip() != client_ip:
        forwarded_for = f"{forwarded_for}, {client_ip}" if forwarded_for else client_ip
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    edge_proto = lowered.get("x-forwarded-proto", "")
    headers["X-Forwarded-Proto"] = edge_proto if edge_proto in _SCHEMES else proto
    port = _edge_port(lowered.get("x-forwarded-port"))
    if port:
        headers["X-Forwarded-Port"] = port
    if "host" in lowered:
        headers["X-Forwarded-Host"] = lowered["host"]
    headers[REQUEST_ID_HEADER] = request_id
    return headers


_NEVER_DOWNSTREAM = HOP_BY_HOP | _RECOMPUTED | ORIGIN_WIDE | {"x-request-id"}


def downstream_headers(
    upstream: Iterable[tuple[str, str]], request_id: str, *, head: bool = False
) -> Headers:
    """Headers for the client, from the upstream response's (repeated ones kept as lists).

    The answer to a HEAD keeps its Content-Length: it announces what a GET would return.
    """
    pairs = list(upstream)
    connection = ",".join(v for k, v in pairs if k.lower() == "connection")
    drop = _NEVER_DOWNSTREAM | _connection_tokens(connection) if connection else _NEVER_DOWNSTREAM
    if head:
        drop = drop - {"content-length"}
    headers: Headers = {}
    for name, value in pairs:
        if name.lower() in drop:
            continue
        existing = headers.get(name)
        if existing is None:
            headers[name] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            headers[name] = [existing, value]
    headers[REQUEST_ID_HEADER] = request_id
    return headers


def rewrite_location(location: str, prefix: str, upstream: str | tuple[str, ...]) -> str:
    """A redirect kept under the gateway: a path on the upstream (``/login``), or the same
    upstream named in full (``http://10.0.1.5:8080/login``), becomes ``prefix`` + that path;
    a path relative to the current one already resolves under the prefix, and another
    host is left alone.

    ``prefix`` is what the client's URL holds before the upstream path, e.g.
    ``/prod/api/v1/orders/live``; ``upstream`` the authorities the gateway sent to
    (``host:port``, and ``host`` when the port is the scheme's default). A value that is no
    URL at all is left as the upstream gave it.
    """
    try:
        parts = urlsplit(location)
    except ValueError:
        return location
    authorities = {upstream.lower()} if isinstance(upstream, str) else {u.lower() for u in upstream}
    if parts.scheme or parts.netloc:
        same = parts.scheme in ("http", "https", "") and parts.netloc.lower() in authorities
        if not same:
            return location
    elif not location.startswith("/"):
        return location  # relative to the current path: already under the prefix
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{prefix}{path}{query}{fragment}"


def host_header(host: str, port: int) -> str:
    """``Host`` for an upstream: IPv6 literals in brackets, the port unless it is 80."""
    name = f"[{host}]" if ":" in host else host
    return name if port == 80 else f"{name}:{port}"


def rewrite_redirect(headers: Headers, prefix: str, host: str, port: int) -> None:
    """Every ``Location`` in ``headers`` (the answer of ``host:port``) kept under ``prefix``,
    as ``rewrite_location`` says."""
    bare = host_header(host, 80)  # bracketed if IPv6, no port
    upstream = (host_header(host, port), f"{bare}:{port}")
    for name, value in headers.items():
        if name.lower() != "location":
            continue
        if isinstance(value, str):
            headers[name] = rewrite_location(value, prefix, upstream)
        else:
            headers[name] = [rewrite_location(v, prefix, upstream) for v in value]
