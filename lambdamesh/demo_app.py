"""A tiny upstream service for the demo and the end-to-end tests.

It answers every method on every path with JSON describing what it received, so a caller can
see which instance served it and that path, query, headers and body arrived intact. ``POST
/echo`` (at any depth ending in ``echo``) returns the request body byte for byte; a path
ending in ``/redirect`` answers 302 to its ``to`` query parameter; ``GET /__stats`` counts
what it received (requests, and the ``X-Request-Id`` of every POST, so a test can see a POST
delivered twice). For the tests of traffic policies, ``--status`` makes it answer every
request with that status and ``--delay`` makes it wait before answering.

With ``--outbound URL`` (its sidecar's outbound port), ``/call/{service}/{version}/{path}``
calls another service through that port, as an app in a task would, and answers with what
came back: the mesh's east-west lane, seen from the app.
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import parse_qs


class DemoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Buffered, so an answer leaves in one write when the handler flushes it: a demo app
    # killed mid-request never sends a head without its body (which no proxy could retry).
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True  # headers and body are separate writes
    server_version = "lambdamesh-demo/1"
    name = "demo"
    instance = ""
    status = 200
    delay = 0.0
    outbound = ""
    stats: Stats

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the demo's terminal belongs to lambdamesh dev."""

    def _port(self) -> int:
        return int(self.server.server_address[1])  # type: ignore[index]

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        if path == "/__stats":
            self._send(200, "application/json", json.dumps(self.stats.snapshot()).encode())
            return
        self.stats.received(self.command, self.headers.get("X-Request-Id"))
        if self.delay:
            time.sleep(self.delay)
        if self.outbound and path.startswith("/call/"):
            self._call_out(self.path[len("/call") :], body)
            return
        if path.endswith("/redirect"):
            self._redirect(parse_qs(query).get("to", ["/"])[0])
            return
        if self.path.split("?", 1)[0].endswith("/echo"):
            payload = body
            content_type = self.headers.get("Content-Type") or "application/octet-stream"
        else:
            payload = json.dumps(
                {
                    "service": self.name,
                    "instance": self.instance or str(self._port()),
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body_base64": base64.b64encode(body).decode(),
                }
            ).encode()
            content_type = "application/json"
        self._send(self.status, content_type, payload)

    def _call_out(self, target: str, body: bytes) -> None:
        """Call ``target`` (``/{service}/{version}/{path}``) through the sidecar's outbound
        port, passing the request id on, and report the answer."""
        headers = {"X-Request-Id": self.headers.get("X-Request-Id") or ""}
        request = urllib.request.Request(  # noqa: S310 - the sidecar's loopback http URL
            self.outbound + target, data=body or None, headers=headers, method=self.command
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
                status, payload = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        except OSError as error:
            status, payload = 0, str(error).encode()
        try:
            answered: object = json.loads(payload)
        except ValueError:
            answered = payload.decode("utf-8", "replace")
        report = {
            "service": self.name,
            "instance": self.instance or str(self._port()),
            "called": target,
            "via": "sidecar outbound port",
            "status": status,
            "answer": answered,
        }
        self._send(200 if status else 502, "application/json", json.dumps(report).encode())

    def _redirect(self, location: str) -> None:
        """A 302 to ``location``, which must be a visible-ASCII URL: a line break or other
        control character from the query would otherwise inject headers into the answer."""
        if not location or not all(" " < c < "\x7f" for c in location):
            message = {"error": "'to' must be a URL of visible ASCII characters"}
            self._send(400, "application/json", json.dumps(message).encode())
            return
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.send_header("X-Served-By", f"{self.name}:{self._port()}")
        self.end_headers()

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Served-By", f"{self.name}:{self._port()}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle


class Stats:
    """What the server received, for tests to read at ``/__stats``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.post_ids: list[str] = []

    def received(self, method: str, request_id: str | None) -> None:
        with self._lock:
            self.requests += 1
            if method == "POST":
                self.post_ids.append(request_id or "")

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {"requests": self.requests, "post_ids": list(self.post_ids)}


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up early (the gateway refusing an oversized answer, say) is
        not worth a traceback in the demo's terminal."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def serve(
    host: str,
    port: int,
    name: str,
    instance: str = "",
    status: int = 200,
    delay: float = 0.0,
    outbound: str = "",
) -> ThreadingHTTPServer:
    attributes = {
        "name": name,
        "instance": instance,
        "status": status,
        "delay": delay,
        "outbound": outbound.rstrip("/"),
        "stats": Stats(),
    }
    handler = type("NamedDemoHandler", (DemoHandler,), attributes)
    return DemoServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A demo upstream service for lambdamesh.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--name", default="demo", help="service name it reports")
    parser.add_argument("--instance", default="", help="instance id it reports (default: port)")
    parser.add_argument("--status", type=int, default=200, help="answer every request so")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait per request")
    parser.add_argument(
        "--outbound",
        default="",
        help="its sidecar's outbound port, http://127.0.0.1:PORT: serves /call/{service}/...",
    )
    args = parser.parse_args(argv)
    server = serve(
        args.host, args.port, args.name, args.instance, args.status, args.delay, args.outbound
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening on {args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
