"""HTTP/1.1 messages on the outbound port's two sides, read by llhttp (through ``httptools``,
the parser Node.js and uvicorn use): the app's requests, and the instances' answers.

llhttp reads strictly what lets two parsers disagree on where a message ends: a
``Content-Length`` that is not one run of digits, or given twice; ``Transfer-Encoding`` beside
``Content-Length`` in a request; a bare CR or a bare LF where CRLF belongs; folded or
malformed header lines; a control character but tab in a value (RFC 9110 section 5.5, the
rule ``forwarding.field_problem`` applies to the gateway's answers); a chunk-size line that is
not hex digits, optional spaces and extensions, and CRLF. What it lets by and the outbound port does
not take is checked here: any transfer coding but ``chunked``; a version other than HTTP/1.x;
and the sizes below.

The app's request target is the one place the outbound port is more lenient than llhttp: bytes
a target may not hold (controls but tab, CR and LF, and anything beyond ASCII) are
percent-encoded before the line is parsed, as the target is quoted on its way on anyway. And
where llhttp would hand the connection to another protocol after a request (``Upgrade``), the
port reads on as HTTP/1.1 (``RequestReader._read_on``).
"""

from __future__ import annotations

import re
import socket
import time
from collections import deque
from collections.abc import Iterator
from typing import Final

import httptools

from lambdamesh_routing.errors import BadRequest, LambdaMeshError
from lambdamesh_routing.forwarding import OWS

CHUNK: Final = 64 * 1024
# The request target's length, the whole head's (request line and header lines) and the
# count of header lines: beyond them the request is refused (414, 431, 431).
MAX_TARGET: Final = 16 * 1024
MAX_HEAD: Final = 64 * 1024
MAX_HEADERS: Final = 100
# Trailer lines after a chunked body (read and dropped).
MAX_TRAILERS: Final = 100
# Bytes read in a chunked body without a part of it (a trailer section, which llhttp holds in
# memory, or a chunk-size line): as many as a head that has not ended may take.
MAX_UNREAD: Final = MAX_HEAD + CHUNK
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ ")
_UNSAFE_IN_TARGET = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\xff]")


class AppBodyFailed(BadRequest):
    """The app's request body ended early, stalled or broke its framing."""


class UnsupportedEncoding(LambdaMeshError):
    status = 501
    code = "unsupported_transfer_encoding"


class HeadRefused(LambdaMeshError):
    """A request head the outbound port will not read; the connection closes after the
    answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class MethodNotImplemented(LambdaMeshError):
    status = 501
    code = "method_not_implemented"


class AnswerBroken(Exception):
    """An instance's answer could not be read: cut short, or not HTTP/1.x."""


class NoAnswer(AnswerBroken):
    """The instance closed the connection before any byte of an answer."""


class AnswerInvalid(Exception):
    """An instance's answer whose header section may not be passed on."""


class Head:
    """A message's start line and header fields, as sent (names keep their case)."""

    __slots__ = ("fields", "index", "keep_alive", "method", "status", "target", "version")

    def __init__(self) -> None:
        self.method = ""
        self.target = ""
        self.version = "1.1"
        self.status = 0
        self.fields: list[tuple[str, str]] = []
        self.index: dict[str, list[str]] = {}  # values by lowercase name
        self.keep_alive = True

    def read(self, raw: list[tuple[bytes, bytes]]) -> None:
        """The fields as llhttp gave them (bytes, read as latin-1: one character a byte)."""
        self.fields = fields = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw]
        index = self.index
        for name, value in fields:
            index.setdefault(name.lower(), []).append(value)

    def get(self, name: str) -> str | None:
        values = self.index.get(name.lower())
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        return self.index.get(name.lower(), [])

    def announced_length(self) -> int | None:
        """A request body's length as its ``Content-Length`` gave it (which llhttp checked is
        one run of digits, beside no ``Transfer-Encoding``), or None for a chunked body."""
        length = self.get("Content-Length")
        if length is None or self.get("Transfer-Encoding") is not None:
            return None
        return int(length.strip(OWS))


class _Message:
    """One message as llhttp reports it."""

    __slots__ = (
        "body",
        "complete",
        "failure",
        "fed",
        "has_body",
        "head",
        "head_done",
        "raw",
        "refusal",
        "target",
        "trailers",
    )

    def __init__(self) -> None:
        self.head = Head()
        self.target = b""
        self.raw: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.body: deque[bytes] = deque()
        self.fed = 0  # bytes fed while its head was incomplete
        self.trailers = 0
        self.refusal: LambdaMeshError | None = None  # of its head
        self.failure: AppBodyFailed | None = None  # of its body, once the parts before it are read
        self.has_body = False


_NO_MESSAGE = _Message()
NO_HEAD = Head()


class _Stop(Exception):
    """Raised in a callback to stop llhttp at a message the outbound port refuses."""


class _Events:
    """llhttp's callbacks, gathered into messages in order (an app may pipeline)."""

    def __init__(self) -> None:
        self.messages: deque[_Message] = deque()
        self.current = _NO_MESSAGE  # until llhttp begins one

    def on_message_begin(self) -> None:
        self.current = _Message()
        self.messages.append(self.current)

    def on_header(self, name: bytes, value: bytes) -> None:
        message = self.current
        if message.head_done:
            message.trailers += 1
            if message.trailers > MAX_TRAILERS:
                message.failure = AppBodyFailed("the request has too many trailer lines")
                raise _Stop
            return
        raw = message.raw
        raw.append((name, value))
        if len(raw) > MAX_HEADERS:
            message.refusal = HeadRefused(
                431, "request_header_fields_too_large", "too many header fields"
            )
            raise _Stop

    def on_body(self, body: bytes) -> None:
        self.current.body.append(body)

    def on_message_complete(self) -> None:
        self.current.complete = True


def _head_done(
    message: _Message, parser: httptools.HttpRequestParser | httptools.HttpResponseParser
) -> Head:
    message.head_done = True
    head = message.head
    head.read(message.raw)
    head.version = parser.get_http_version()
    head.keep_alive = parser.should_keep_alive()
    return head


class _RequestEvents(_Events):
    parser: httptools.HttpRequestParser

    def on_url(self, url: bytes) -> None:
        message = self.current
        message.target += url
        if len(message.target) > MAX_TARGET:
            message.refusal = HeadRefused(414, "uri_too_long", "the request target is too long")
            raise _Stop

    def on_headers_complete(self) -> None:
        message = self.current
        raw = message.raw
        # The target and each field line's name, value, ": " and CRLF.
        size = len(message.target) + sum(len(n) + len(v) for n, v in raw) + 4 * len(raw)
        if size > MAX_HEAD:
            message.refusal = HeadRefused(
                431, "request_header_fields_too_large", "the request head is too large"
            )
            raise _Stop
        head = _head_done(message, self.parser)
        head.method = self.parser.get_method().decode("latin-1")
        head.target = message.target.decode("latin-1")
        index = head.index
        if "transfer-encoding" in index:
            if _codings(index["transfer-encoding"]) != ["chunked"]:
                message.refusal = UnsupportedEncoding(
                    "the outbound port takes Transfer-Encoding: chunked only"
                )
                raise _Stop
            message.has_body = True
        elif "content-length" in index:
            message.has_body = any(v.strip(OWS) != "0" for v in index["content-length"])


class _AnswerEvents(_Events):
    parser: httptools.HttpResponseParser

    def on_headers_complete(self) -> None:
        _head_done(self.current, self.parser).status = self.parser.get_status_code()


class RequestReader:
    """The app's requests on one connection, one after another."""

    def __init__(self, sock: socket.socket, head_seconds: float | None = None) -> None:
        """``head_seconds``: how long a head may take from its first byte (None: unbounded)."""
        self.sock = sock
        self.head_seconds = head_seconds
        self.events = _RequestEvents()
        self.parser = self._parser()
        # An error met while parsing ahead, past the request being served: the next one's.
        self.error: LambdaMeshError | None = None

    def _parser(self) -> httptools.HttpRequestParser:
        parser = self.events.parser = httptools.HttpRequestParser(self.events)
        # A chunk-size may be followed by spaces or tabs before its extensions (RFC 9112
        # section 7.1.1's BWS); a version is checked here, so that HTTP/2.0 gets a 505.
        parser.set_dangerous_leniencies(lenient_spaces_after_chunk_size=True, lenient_version=True)
        return parser

    def next_head(self) -> Head | None:
        """The next request's head, once all of it is read; None when the app closed the
        connection (or left it idle for the socket's timeout) between requests, or took longer
        than ``head_seconds`` to send a head it began. ``HeadRefused`` (or another
        ``LambdaMeshError``) for a head the outbound port will not read."""
        messages = self.events.messages
        deadline: float | None = None
        while True:
            if messages and messages[0].head_done:
                message = messages[0]
                if message.refusal is not None:
                    raise message.refusal
                return self._checked(message.head)
            if self.error is not None:
                raise self.error
            deadline = deadline or self._head_deadline()
            try:
                data = self._receive(deadline)
            except OSError:  # a timeout included
                return None
            if not data:
                return None
            if not messages or messages[-1].complete:
                data = _quoted_target(data)
            self._feed(data, reading_body=False)
            if messages and not messages[0].head_done:
                messages[0].fed += len(data)
                # Bytes that make no header line yet (one value that never ends) count too.
                if messages[0].fed > MAX_HEAD + CHUNK:
                    raise HeadRefused(
                        431, "request_header_fields_too_large", "the request head is too large"
                    )

    def _head_deadline(self) -> float | None:
        """When the head begun must be whole, once its first byte is in (None: unbounded)."""
        if self.events.messages and self.head_seconds is not None:
            return time.monotonic() + self.head_seconds
        return None

    def _receive(self, deadline: float | None) -> bytes:
        """The next bytes of a head: each read waits the socket's timeout, and none past
        ``deadline``."""
        if deadline is None:
            return self.sock.recv(CHUNK)
        idle = self.sock.gettimeout()
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request head took too long")
        self.sock.settimeout(left if idle is None else min(left, idle))
        try:
            return self.sock.recv(CHUNK)
        finally:
            self.sock.settimeout(idle)

    def has_body(self) -> bool:
        return self.events.messages[0].has_body

    def body(self) -> Iterator[bytes]:
        """The current request's body, decoded, as it arrives; ``AppBodyFailed`` if it ends
        early, stalls for the socket's timeout or breaks its framing."""
        message = self.events.messages[0]
        unread = 0  # bytes read since the body's last part
        while True:
            if message.body:
                unread = 0
            while message.body:
                yield message.body.popleft()
            if message.failure is not None:
                raise message.failure
            if message.complete:
                return
            if unread > MAX_UNREAD:
                raise AppBodyFailed("the request's trailer section is too large")
            try:
                data = self.sock.recv(CHUNK)
            except OSError as exc:
                raise AppBodyFailed(f"the request body could not be read: {exc}") from None
            if not data:
                raise AppBodyFailed("the request body ended before its end")
            unread += len(data)
            self._feed(data, reading_body=True)

    def done(self) -> None:
        """The current request was answered: on to the next one."""
        self.events.messages.popleft()

    def _feed(self, data: bytes, reading_body: bool) -> None:
        messages = self.events.messages
        error = self._parse(data)
        if error is None:
            return
        current = messages[0] if messages else None
        if current is not None and current.complete and current is not messages[-1]:
            self.error = error  # a later request's: the current one is whole
            return
        if current is not None and current.head_done:
            # The body's framing broke: the app's fault, met when the body is read that far.
            if not isinstance(error, AppBodyFailed):
                error = AppBodyFailed(f"the request's body is malformed: {error.message}")
            current.failure = error
            if reading_body:
                raise error
            return
        raise error

    def _parse(self, data: bytes) -> LambdaMeshError | None:
        """``data`` read by llhttp; what its error means for the app, if it met one."""
        while data:
            try:
                self.parser.feed_data(data)
                return None
            except httptools.HttpParserUpgrade as exc:
                self._read_on()
                data = data[exc.args[0] :]  # what llhttp left for the new protocol
            except httptools.HttpParserError as exc:
                return self._error(exc, data)
        return None

    def _read_on(self) -> None:
        """llhttp took the request it just read for a switch of protocols (``Upgrade``), and
        anything after its head, its body included, for the new protocol's bytes. The outbound
        port switches none: it ignores ``Upgrade``, as RFC 9110 section 7.8 lets a server do
        (the header is hop-by-hop and not sent on), and reads on as HTTP/1.1: the request's
        body through a new parser, told the body's framing by a head made up for it, then the
        requests after it through the same parser."""
        messages = self.events.messages
        upgrading = messages[-1]  # llhttp stopped right after it
        if upgrading.has_body:
            messages.pop()
            self.parser = self._parser()
            self.parser.feed_data(_framing(upgrading.head))
            reading = messages[-1]
            reading.head, reading.target = upgrading.head, upgrading.target

    def _error(self, exc: Exception, data: bytes) -> LambdaMeshError:
        """What llhttp's error means for the app."""
        if isinstance(exc, httptools.HttpParserCallbackError):
            stopped = next((m for m in self.events.messages if m.refusal or m.failure), None)
            return (stopped and (stopped.refusal or stopped.failure)) or BadRequest("bad request")
        if isinstance(exc, httptools.HttpParserInvalidMethodError) and _TOKEN.match(data):
            return MethodNotImplemented("the outbound port does not take this method")
        if "LF" in str(exc):
            return BadRequest(f"a bare CR or a bare LF where CRLF belongs: {exc}")
        return BadRequest(f"malformed request: {exc}" if str(exc) else "malformed request")

    @staticmethod
    def _checked(head: Head) -> Head:
        major, _, _ = head.version.partition(".")
        if major != "1":
            if major in ("", "0"):
                raise BadRequest("the request line must end with an HTTP/1.x version")
            raise HeadRefused(
                505, "http_version_not_supported", f"HTTP/{head.version} is not supported"
            )
        return head


def _codings(values: list[str]) -> list[str]:
    """The transfer codings ``Transfer-Encoding`` fields list, in order, lowercase."""
    return [c.strip(OWS).lower() for value in values for c in value.split(",")]


def _framing(head: Head) -> bytes:
    """A request head with nothing but the framing of ``head``'s body (which llhttp checked)."""
    if "transfer-encoding" in head.index:
        return b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    length = head.index["content-length"][0].strip(OWS).encode("latin-1")
    return b"PUT / HTTP/1.1\r\nContent-Length: %s\r\n\r\n" % length


def _quoted_target(data: bytes) -> bytes:
    """``data`` with the bytes its first line's target may not hold percent-encoded."""
    end = data.find(b"\n")
    line = data if end < 0 else data[:end]
    if not _UNSAFE_IN_TARGET.search(line):
        return data
    first, last = line.find(b" "), line.rfind(b" ")
    if first < 0 or last <= first:
        return data
    target = _UNSAFE_IN_TARGET.sub(lambda m: b"%%%02X" % m.group()[0], line[first + 1 : last])
    return data[: first + 1] + target + data[last:]


class AnswerReader:
    """One answer from an instance, read from its connection: the head, then the body's
    parts, decoded. Interim answers (1xx but 101) are passed over."""

    def __init__(self, sock: socket.socket, method: str) -> None:
        self.sock = sock
        self.method = method
        self.events = _AnswerEvents()
        self.parser = self.events.parser = httptools.HttpResponseParser(self.events)
        # An answer framed both ways is read as chunked (RFC 9112 section 6.3), as a client
        # does, and its connection is not reused.
        self.parser.set_dangerous_leniencies(lenient_chunked_length=True)
        self.head = NO_HEAD
        self.interim = False
        self.eof = False
        self.extra = False  # bytes after the answer's end
        self.chunked = False
        self.length: int | None = None
        self._message: _Message | None = None

    def read_head(self) -> Head:
        """The final answer's head; ``AnswerBroken`` or ``AnswerInvalid`` if it cannot be read
        or passed on; ``TimeoutError`` and ``OSError`` from the socket."""
        messages = self.events.messages
        fed = 0
        while True:
            while messages and messages[0].head_done and 100 <= messages[0].head.status < 200:
                if messages[0].head.status == 101:
                    raise AnswerBroken("the upstream switched protocols, which is not relayed")
                self.interim = True
                messages.popleft()
            if messages and messages[0].head_done:
                break
            data = self.sock.recv(CHUNK)
            if not data:
                if not messages:
                    raise NoAnswer("the upstream closed the connection without an answer")
                raise AnswerBroken("the upstream closed the connection in an answer's head")
            fed += len(data)
            if fed > MAX_HEAD + CHUNK:
                raise AnswerBroken("the answer's head is too large")
            self._feed(data)
        message = self._message = messages[0]
        head = self.head = message.head
        if head.status < 100 or head.version.partition(".")[0] != "1":
            raise AnswerBroken(f"malformed status line: HTTP/{head.version} {head.status}")
        lengths = head.get_all("Content-Length")
        codings = head.get_all("Transfer-Encoding")
        if codings and not self.bodiless and _codings(codings) != ["chunked"]:
            # llhttp reads such an answer to the connection's end, whatever length is beside.
            raise AnswerBroken("the answer's transfer coding is not chunked alone")
        self.chunked = bool(codings)
        self.length = None if self.chunked or not lengths else int(lengths[0].strip(OWS))
        return head

    @property
    def bodiless(self) -> bool:
        return self.method == "HEAD" or self.head.status in (204, 304)

    @property
    def complete(self) -> bool:
        """Whether the answer was read to its end (a close-delimited one ends where the
        upstream closed)."""
        message = self._message
        if message is None:
            return False
        if message.complete or self.bodiless:
            return not message.body
        return self.eof and not self.chunked and self.length is None and not message.body

    def read1(self) -> bytes:
        """The body's next part; b"" at its end (``complete`` tells whether it was whole)."""
        message = self._message
        assert message is not None
        unread = 0  # bytes read since the body's last part
        while True:
            if message.body:
                return message.body.popleft()
            if message.complete or self.eof or self.bodiless:
                return b""
            if unread > MAX_UNREAD:
                raise AnswerBroken("the answer's trailer section is too large")
            data = self.sock.recv(CHUNK)
            if not data:
                self.eof = True
                return b""
            unread += len(data)
            self._feed(data)

    @property
    def reusable(self) -> bool:
        """Whether the connection may carry another request."""
        message = self._message
        return (
            message is not None
            and self.head.keep_alive
            and not self.interim
            and not self.extra
            and not (self.chunked and self.head.get("Content-Length"))
            and (message.complete or self.bodiless)
            and not message.body
        )

    def _feed(self, data: bytes) -> None:
        messages = self.events.messages
        if self._message is not None and self.bodiless:
            self.extra = True  # nothing may follow a bodiless answer's head
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise AnswerBroken("the upstream switched protocols, which is not relayed") from None
        except httptools.HttpParserError as exc:
            if any(m.head.status == 101 for m in messages):
                raise AnswerBroken(
                    "the upstream switched protocols, which is not relayed"
                ) from None
            final = next((m for m in messages if m.head_done and m.head.status >= 200), None)
            if final is not None and final.complete:
                self.extra = True  # the answer is whole; what follows it is not read
                return
            if final is not None:
                raise AnswerBroken(f"the answer's body is malformed: {exc}") from None
            status = self.parser.get_status_code()
            if isinstance(exc, httptools.HttpParserInvalidStatusError) or status < 100:
                raise AnswerBroken(f"malformed status line: {exc}") from None
            raise AnswerInvalid(f"malformed header section: {exc}") from None
        if len(messages) > 1 and messages[0].complete and messages[0].head.status >= 200:
            self.extra = True
