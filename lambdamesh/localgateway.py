"""API Gateway in front of the app, locally, on a socket: the dev server; and a Lambda
function URL in front of it, the dev server's second lane.

Both drive the app through its one deployed contract, ``app(event, context)``, with the
invokers of ``lambdamesh.invokers``; nothing here depends on Chalice's local server. The HTTP
side is the standard library's ``ThreadingHTTPServer``, with the framing a proxy needs
(``lambdamesh.framing``): repeated headers kept, folded headers, control characters in header
values and bare CRs in the request line or a header line refused, and each ``Server``/``Date``
header sent once. The app is made per-thread, since a threaded server runs several requests
in one app.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lambdamesh.events import HttpRequest, Stage
from lambdamesh.framing import MAX_BODY_BYTES, RequestError, read_body
from lambdamesh.invokers import Answer, App, Invoker, UrlInvoker
from lambdamesh.projectconfig import DEFAULT_LAMBDA_TIMEOUT
from lambdamesh_routing.forwarding import CheckedReader, header_problem

__all__ = [
    "LocalGatewayHandler",
    "LocalGatewayServer",
    "create_dev_server",
    "create_url_server",
    "serve_per_thread",
]


class _PerThread:
    """A data descriptor whose value is per thread: what this thread set, else None."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return getattr(self._local, "value", None)

    def __set__(self, instance: object, value: Any) -> None:
        self._local.value = value


class _ServedPerThread:
    """Marks an app class already made per-thread."""


def serve_per_thread(app: object) -> None:
    """Make ``app.current_request`` and ``app.lambda_context`` per thread.

    Lambda runs one request per process; a threaded server runs several in one app, and
    Chalice keeps the current request on the app object. A subclass made for this app holds
    both (Chalice's documented attributes) per thread; calling this twice is harmless.
    """
    app_class = type(app)
    if issubclass(app_class, _ServedPerThread):
        return
    namespace = {
        "current_request": _PerThread(),
        "lambda_context": _PerThread(),
        "__module__": app_class.__module__,
    }
    app.__class__ = type(app_class.__name__, (app_class, _ServedPerThread), namespace)


class LocalGatewayHandler(BaseHTTPRequestHandler):
    """One HTTP connection: frames requests, invokes the app, frames its answers.

    Headers and body go out in separate writes, so Nagle's algorithm is off: with it, a
    keep-alive client's delayed ACK stalls every response by about 40 ms.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: LocalGatewayServer
    lines: CheckedReader  # the connection's reader (``rfile``), which notes bare CRs

    def setup(self) -> None:
        super().setup()
        self.lines = CheckedReader(self.rfile)
        self.rfile = self.lines

    def serve(self) -> None:
        try:
            problem = header_problem(self.headers)
            if problem:
                raise RequestError(400, problem)
            body = read_body(self.headers, self.rfile, self.server.max_body_bytes)
        except RequestError as exc:
            self.close_connection = True
            message = json.dumps({"message": exc.message}).encode()
            self.write_answer(Answer(exc.status, [("Connection", "close")], message))
            return
        request = HttpRequest(
            method=self.command,
            target=self.path,
            headers=tuple(self.headers.items()),
            body=body,
            source_ip=str(self.client_address[0]),
            protocol=self.request_version,
            port=int(self.server.server_address[1]),
        )
        self.write_answer(self.server.invoke(request))

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = serve

    def parse_request(self) -> bool:
        """A request line without a version (HTTP/0.9) is refused, as API Gateway refuses it,
        with a status line (the standard library would answer a 0.9 request without one); so
        is a request line or header line with a bare CR, which the standard library reads as
        a line break."""
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
            self.send_error(400, "HTTP/0.9 requests are not served")
            return False
        if self.lines.bare_cr:
            self.send_error(400, "a bare CR in the request line or a header line")
            return False
        return True

    def __getattr__(self, name: str) -> Any:
        """Any other method (TRACE, CONNECT, a made-up one) reaches the routing too, which
        answers it as API Gateway answers a method no resource declares, not with the
        standard library's 501."""
        if name.startswith("do_") and name[3:].isupper():
            return self.serve
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What the standard library answers itself (an unsupported method, a malformed request
        line) in API Gateway's shape, ``{"message": ...}``, not an HTML page."""
        self.close_connection = True
        body = json.dumps({"message": message or self.responses.get(code, ("",))[0]}).encode()
        self.write_answer(Answer(code, [("Connection", "close")], body))

    def write_answer(self, answer: Answer) -> None:
        is_head = getattr(self, "command", None) == "HEAD"
        given_length = answer.header("Content-Length")
        # A HEAD answer may announce what a GET would return; any other announces its bytes.
        length = given_length if is_head and given_length else str(len(answer.body))
        framing = {"content-length", "transfer-encoding"}
        headers = [(k, v) for k, v in answer.headers if k.lower() not in framing]
        names = {k.lower() for k, _ in headers}
        self.log_request(answer.status, length)
        self.send_response_only(answer.status)
        if "server" not in names:
            self.send_header("Server", self.version_string())
        if "date" not in names:
            self.send_header("Date", self.date_time_string())
        if "content-type" not in names:
            headers.append(("Content-Type", "application/json"))
        if answer.status != 204 and answer.status >= 200:
            headers.append(("Content-Length", length))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if not is_head:
            self.wfile.write(answer.body)


class LocalGatewayServer(ThreadingHTTPServer):
    """A threaded HTTP server whose every request goes through ``invoke``."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        invoke: Callable[[HttpRequest], Answer],
        handler_cls: type[LocalGatewayHandler] = LocalGatewayHandler,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.invoke = invoke
        self.max_body_bytes = max_body_bytes
        super().__init__(address, handler_cls)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"


def create_dev_server(
    app: App,
    host: str,
    port: int,
    handler_cls: type[LocalGatewayHandler] = LocalGatewayHandler,
    timeout_seconds: float = DEFAULT_LAMBDA_TIMEOUT,
    stage: Stage | None = None,
) -> LocalGatewayServer:
    """The app behind a local API Gateway on ``host:port`` (``port=0`` picks a free one);
    ``stage`` says how the events describe the API (a custom domain's name, say)."""
    serve_per_thread(app)
    invoker = Invoker(app, stage=stage, timeout_seconds=timeout_seconds)
    return LocalGatewayServer((host, port), invoker, handler_cls)


def create_url_server(
    app: App,
    host: str,
    port: int,
    handler_cls: type[LocalGatewayHandler] = LocalGatewayHandler,
    timeout_seconds: float = DEFAULT_LAMBDA_TIMEOUT,
) -> LocalGatewayServer:
    """The app behind a local Lambda function URL on ``host:port``: the same HTTP framing as
    the API Gateway lane, events in payload format 2.0."""
    serve_per_thread(app)
    invoker = UrlInvoker(app, timeout_seconds=timeout_seconds)
    return LocalGatewayServer((host, port), invoker, handler_cls)
