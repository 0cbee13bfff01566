"""Where a message from the app ends: HTTP/1.1 body framing, read strictly.

The outbound port relays the app's requests on keep-alive connections, so any disagreement
about where a body ends would let body bytes be read as the next request (request
smuggling). So: ``Content-Length`` must be one run of digits, given once (or repeated with the
same value); ``Transfer-Encoding`` may only be ``chunked``, never beside ``Content-Length``;
a chunk-size line is hex digits, optional extensions and CRLF (``forwarding.chunk_size``), and
every line of a chunked body ends with CRLF, within a bounded length. Anything else is refused,
and the connection is closed after the answer. So are a request line with no HTTP/1.x version,
a request line or header line with a bare CR, and a header section that a proxy must not pass
on (``check_head``).

A body that cannot be read (the app hung up, stalled, or broke the framing) raises
``AppBodyFailed``: the app's fault, never counted against an upstream instance.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import Message
from io import BufferedIOBase

from lambdamesh_routing.errors import BadRequest, LambdaMeshError
from lambdamesh_routing.forwarding import OWS, bare_cr, chunk_size, header_problem

CHUNK = 64 * 1024
MAX_LINE = 4096  # a chunk-size line (with extensions) or a trailer line
MAX_TRAILERS = 100
_LENGTH = re.compile(r"[0-9]{1,18}")
# RFC 9112 section 2.3: "HTTP/" DIGIT "." DIGIT; a later HTTP/1 minor version is read as 1.1.
_VERSION = re.compile(r"HTTP/1\.[0-9]")


class AppBodyFailed(BadRequest):
    """The app's request body ended early, stalled or broke its framing."""


class UnsupportedEncoding(LambdaMeshError):
    status = 501
    code = "unsupported_transfer_encoding"


def check_head(version: str, headers: Message, *, saw_bare_cr: bool) -> None:
    """Refuse what ``http.server`` lets by: a request line with no version (HTTP/0.9, whose
    request has no headers to frame a body and whose answer has no status line), or one not
    HTTP/1.x; a head in which ``CheckedReader`` saw a bare CR (``saw_bare_cr``); and a header
    section ``header_problem`` refuses (folded lines, control characters, a line that is no
    header)."""
    if not _VERSION.fullmatch(version):
        raise BadRequest("the request line must end with an HTTP/1.x version")
    if saw_bare_cr:
        raise BadRequest("a bare CR in the request line or a header line")
    problem = header_problem(headers)
    if problem:
        raise BadRequest(problem)


def body_reader(headers: Message, stream: BufferedIOBase) -> Iterator[bytes] | None:
    """The request body's parts, or None when the request has none."""
    codings = [v.strip(OWS).lower() for v in headers.get_all("Transfer-Encoding") or []]
    lengths = {v.strip(OWS) for v in headers.get_all("Content-Length") or []}
    if codings:
        if lengths:
            raise BadRequest("a request may not carry both Content-Length and Transfer-Encoding")
        if codings != ["chunked"]:
            raise UnsupportedEncoding("the outbound port takes Transfer-Encoding: chunked only")
        return _chunks(stream)
    if not lengths:
        return None
    if len(lengths) > 1 or not _LENGTH.fullmatch(next(iter(lengths))):
        raise BadRequest("Content-Length must be given once, as a number")
    return exactly(stream, int(next(iter(lengths))))


def exactly(stream: BufferedIOBase, length: int) -> Iterator[bytes]:
    left = length
    while left > 0:
        chunk = _read(stream, min(CHUNK, left))
        if not chunk:
            raise AppBodyFailed("the request body ended before its Content-Length")
        left -= len(chunk)
        yield chunk


def _chunks(stream: BufferedIOBase) -> Iterator[bytes]:
    """A chunked request body, decoded; trailers are read and dropped."""
    while True:
        size = chunk_size(_line(stream))
        if size is None:
            raise AppBodyFailed("the request's chunked encoding is malformed")
        if size == 0:
            break
        yield from exactly(stream, size)
        if _line(stream) != b"\r\n":
            raise AppBodyFailed("the request's chunked encoding is malformed")
    for _ in range(MAX_TRAILERS):
        line = _line(stream)
        if line == b"\r\n":
            return
        if not line.endswith(b"\r\n") or bare_cr(line):
            raise AppBodyFailed("the request's chunked trailer is malformed")
    raise AppBodyFailed("the request has too many trailer lines")


def _line(stream: BufferedIOBase) -> bytes:
    """One LF-ended line, with its ending (CRLF is checked where it is required)."""
    try:
        line = stream.readline(MAX_LINE + 1)
    except OSError as exc:
        raise AppBodyFailed(f"the request body could not be read: {exc}") from None
    if not line.endswith(b"\n") or len(line) > MAX_LINE:
        raise AppBodyFailed("the request's chunked encoding is malformed or cut short")
    return line


def _read(stream: BufferedIOBase, size: int) -> bytes:
    try:
        return stream.read1(size)
    except OSError as exc:
        raise AppBodyFailed(f"the request body could not be read: {exc}") from None


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)
