"""An upstream's answer written back to the peer that asked: its head as the sidecar writes
it, and its body streamed as it arrives, framed as it was framed.

Both ports relay this way: the outbound port an instance's answer to the app, the inbound
port the app's answer to its caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from lambdamesh_routing.forwarding import Headers
from lambdamesh_sidecar.exchange import Exchange, Transport, chunk, reason
from lambdamesh_sidecar.messages import AnswerBroken, Head
from lambdamesh_sidecar.serving import phrase


class Peer(Protocol):
    """The side a call answers: its request's head, and its socket."""

    head: Head
    close_connection: bool
    # Whether the request's body has been read to its end.
    body_read: bool

    def body(self) -> Iterator[bytes] | None:
        """The request's body as it arrives, or None when it has none."""
        ...

    def write(self, data: bytes) -> None:
        """To the peer; ``PeerGone`` when it has gone."""
        ...


def answer_head(
    peer: Peer, status: int, headers: Headers, length: int | None, chunked: bool = False
) -> bytes:
    """The answer's status line and headers, to be written with the body's start."""
    lines = [f"HTTP/1.1 {status} {phrase(status)}"]
    for name, value in headers.items():
        lines += [f"{name}: {one}" for one in ([value] if isinstance(value, str) else value)]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    elif chunked:
        lines.append("Transfer-Encoding: chunked")
    if peer.close_connection:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def stream_answer(
    peer: Peer,
    exchange: Exchange,
    transport: Transport,
    headers: Headers,
    read_seconds: float,
    first: bytes = b"",
) -> str | None:
    """The answer relayed; the connection to the upstream released to the pool once its end
    was read, closed otherwise. Returns why the answer was cut short (the peer's connection is
    then closed, so it sees the body end early rather than a short body that looks whole), or
    None when it went whole."""
    answer = exchange.answer
    status = answer.head.status
    if answer.bodiless:
        transport.release(exchange)  # back in the pool before the peer reads on
        peer.write(answer_head(peer, status, headers, None))
        return None
    # Framed as the answer was (chunked wins over a Content-Length beside it).
    size = None if answer.chunked else answer.length
    close_delimited = size is None and peer.head.version == "1.0"
    if close_delimited:
        peer.close_connection = True
    frame: Callable[[bytes], bytes] = chunk if size is None and not close_delimited else _as_is
    released = False
    try:
        # Once the answer streams, each read may wait as long as one try may.
        exchange.sock.settimeout(read_seconds)
        part = first or answer.read1()
        pending = answer_head(peer, status, headers, size, chunked=frame is chunk)
        sent = 0
        # Each part is written once the next read is known, so that the connection to the
        # upstream is back in the pool before the peer sees the end of its answer.
        while part and not (size is not None and sent + len(part) >= size):
            peer.write(pending + frame(part))
            sent += len(part)
            pending, part = b"", answer.read1()
        sent += len(part)
        if not answer.complete or (size is not None and sent != size):
            peer.write(pending + frame(part) if part else pending)
            missing = "" if size is None else f" ({size - sent} bytes missing)"
            raise AnswerBroken(f"the answer ended before its end{missing}")
        transport.release(exchange)
        released = True
        ending = b"0\r\n\r\n" if frame is chunk else b""
        peer.write(pending + (frame(part) if part else b"") + ending)
    except (OSError, AnswerBroken) as exc:
        peer.close_connection = True
        return f"answer cut short: {reason(exc)}"
    finally:
        if not released:
            exchange.sock.close()
    return None


def _as_is(data: bytes) -> bytes:
    return data
