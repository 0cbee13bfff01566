"""HTTP/1.1 request framing for the local servers, with what a proxy needs: the body read
as RFC 9112 section 6 frames it (a chunked body read whole, its trailers dropped, chunk-size
lines read strictly: the sidecar's outbound port refuses the same, by the same rules), and
``RequestError`` for a request refused before it reaches API Gateway's routing.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from lambdamesh_routing.forwarding import OWS, bare_cr, chunk_size

__all__ = [
    "MAX_BODY_BYTES",
    "Readable",
    "RequestError",
    "read_body",
    "read_chunked",
]

# API Gateway refuses a request payload over 10 MB.
MAX_BODY_BYTES = 10 * 1024 * 1024
_MAX_TRAILER_LINES = 100


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def readline(self, size: int = -1, /) -> bytes: ...


class RequestError(Exception):
    """A request the server refuses before it reaches API Gateway's routing."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def read_chunked(rfile: Readable, limit: int = MAX_BODY_BYTES) -> bytes:
    """A ``Transfer-Encoding: chunked`` body, whole; trailers are read and dropped."""
    chunks: list[bytes] = []
    total = 0
    while size := _chunk_size(rfile.readline(65537)):
        total += size
        if total > limit:
            raise RequestError(413, "request body too large")
        data = rfile.read(size)
        if len(data) != size or rfile.read(2) != b"\r\n":
            raise RequestError(400, "malformed chunk")
        chunks.append(data)
    for _ in range(_MAX_TRAILER_LINES):
        line = rfile.readline(65537)
        if line == b"\r\n":
            return b"".join(chunks)
        if not line.endswith(b"\r\n") or bare_cr(line):
            break
    raise RequestError(400, "malformed chunked trailer")


def _chunk_size(line: bytes) -> int:
    size = chunk_size(line)
    if size is None:
        raise RequestError(400, "malformed chunk size")
    return size


def read_body(headers: Any, rfile: Readable, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body as HTTP/1.1 frames it (RFC 9112 section 6)."""
    encodings = ",".join(headers.get_all("Transfer-Encoding", []))
    codings = [t.strip(OWS).lower() for t in encodings.split(",")] if encodings else []
    lengths = {v.strip(OWS) for v in headers.get_all("Content-Length", [])}
    if codings:
        if lengths:
            raise RequestError(400, "both Content-Length and Transfer-Encoding")
        if codings != ["chunked"]:
            raise RequestError(501, "unsupported transfer coding")
        return read_chunked(rfile, limit)
    if not lengths:
        return b""
    if len(lengths) > 1 or not re.fullmatch(r"[0-9]+", next(iter(lengths))):
        raise RequestError(400, "invalid Content-Length")
    length = int(next(iter(lengths)))
    if length > limit:
        raise RequestError(413, "request body too large")
    body = rfile.read(length)
    if len(body) != length:
        raise RequestError(400, "request body shorter than its Content-Length")
    return body
