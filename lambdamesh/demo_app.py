"""A tiny upstream service for the demo and the end-to-end tests.

It answers every method on every path with JSON describing what it received, so a caller can
see which instance served it and that path, query, headers and body arrived intact. ``POST
/echo`` (at any depth ending in ``echo``) returns the request body byte for byte.
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType


class DemoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    server_version = "lambdamesh-demo/1"
    name = "demo"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the demo's terminal belongs to lambdamesh dev."""

    def _port(self) -> int:
        return int(self.server.server_address[1])  # type: ignore[index]

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.split("?", 1)[0].endswith("/echo"):
            payload = body
            content_type = self.headers.get("Content-Type") or "application/octet-stream"
        else:
            payload = json.dumps(
                {
                    "service": self.name,
                    "instance": str(self._port()),
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body_base64": base64.b64encode(body).decode(),
                }
            ).encode()
            content_type = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Served-By", f"{self.name}:{self._port()}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle


def serve(host: str, port: int, name: str) -> ThreadingHTTPServer:
    handler = type("NamedDemoHandler", (DemoHandler,), {"name": name})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A demo upstream service for lambdamesh.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--name", default="demo")
    args = parser.parse_args(argv)
    server = serve(args.host, args.port, args.name)

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
