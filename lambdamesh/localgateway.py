"""API Gateway in front of the app, locally: the dev server and the functional tests' client;
and a Lambda function URL in front of it, the dev server's second lane.

Both drive the app through its one deployed contract, ``app(event, context)``, with events
from ``lambdamesh.events``; nothing here depends on Chalice's local server or test client.
The HTTP side is the standard library's ``ThreadingHTTPServer``, with the framing a proxy
needs: repeated headers kept, chunked bodies read whole, folded headers, control characters in
header values and bare CRs in the request line or a header line refused, chunk-size lines read
strictly (the sidecar's outbound port refuses the same, by the same rules), and each
``Server``/``Date`` header sent once.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Protocol

from lambdamesh.events import (
    MISSING_ROUTE_BODY,
    MISSING_ROUTE_HEADERS,
    MISSING_ROUTE_STATUS,
    HttpRequest,
    RouteTable,
    Stage,
    build_event,
    build_url_event,
)
from lambdamesh_routing.forwarding import OWS, CheckedReader, bare_cr, chunk_size, header_problem

__all__ = [
    "LANES",
    "Answer",
    "Headers",
    "Invoker",
    "LambdaContext",
    "Lane",
    "LocalGatewayHandler",
    "LocalGatewayServer",
    "ProjectConfig",
    "TestClient",
    "TestHTTPClient",
    "TestResponse",
    "UrlInvoker",
    "create_dev_server",
    "create_test_client",
    "create_url_server",
    "read_url_response",
    "serve_per_thread",
]

# Which front door a test client plays: API Gateway's REST proxy, or a function URL.
Lane = Literal["rest", "url"]
LANES: tuple[Lane, ...] = ("rest", "url")

# Chalice's default when .chalice/config.json names no ``lambda_timeout``.
DEFAULT_LAMBDA_TIMEOUT = 60
# API Gateway refuses a request payload over 10 MB.
MAX_BODY_BYTES = 10 * 1024 * 1024
_MAX_TRAILER_LINES = 100


class App(Protocol):
    """What the local gateway needs of a Chalice app: its public route table, its binary
    media types and the Lambda entry point."""

    routes: Mapping[str, Mapping[str, Any]]
    api: Any

    def __call__(self, event: Any, context: Any) -> Any: ...


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def readline(self, size: int = -1, /) -> bytes: ...


@dataclass
class LambdaContext:
    """The parts of Lambda's context object an app reads, with a deadline that runs."""

    timeout_seconds: float = DEFAULT_LAMBDA_TIMEOUT
    function_name: str = "lambdamesh"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    clock: Callable[[], float] = time.monotonic
    _deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self._deadline = self.clock() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:123456789012:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self.clock()) * 1000))


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, every header in order (repeats kept), body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[-1] if values else None


def missing_route() -> Answer:
    return Answer(MISSING_ROUTE_STATUS, list(MISSING_ROUTE_HEADERS.items()), MISSING_ROUTE_BODY)


def read_proxy_response(response: Mapping[str, Any]) -> Answer:
    """API Gateway's reading of a proxy response: ``headers`` and ``multiValueHeaders``
    merged (a name in both keeps only the multi values), the body base64-decoded if flagged."""
    multi = response.get("multiValueHeaders") or {}
    in_multi = {name.lower() for name in multi}
    headers = [
        (name, str(value))
        for name, value in (response.get("headers") or {}).items()
        if name.lower() not in in_multi
    ]
    headers += [(name, str(value)) for name, values in multi.items() for value in values]
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        payload = base64.b64decode(body)
    else:
        payload = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    return Answer(int(response["statusCode"]), headers, payload)


class Invoker:
    """Routes a request as API Gateway does and invokes the app with the deployed event."""

    def __init__(
        self,
        app: App,
        stage: Stage | None = None,
        timeout_seconds: float = DEFAULT_LAMBDA_TIMEOUT,
        function_name: str = "lambdamesh",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.routes = RouteTable(app.routes)
        # Served at the root, as a custom domain with no base path: no stage in the URL.
        self.stage = stage or Stage(binary_types=tuple(app.api.binary_types), url_prefix="")
        self.timeout_seconds = timeout_seconds
        self.function_name = function_name
        self.clock = clock

    def __call__(self, request: HttpRequest) -> Answer:
        match = self.routes.match(request.path)
        if match is None or not _allows(self.app.routes[match.resource], request.method):
            return missing_route()
        event = build_event(
            request,
            match,
            self.stage,
            request_id=str(uuid.uuid4()),
            epoch_ms=int(self.clock() * 1000),
        )
        context = LambdaContext(self.timeout_seconds, self.function_name)
        return read_proxy_response(self.app(event, context))


def read_url_response(response: Mapping[str, Any]) -> Answer:
    """A function URL's reading of a payload 2.0 response: one value per header, each of
    ``cookies`` as its own ``Set-Cookie``, the body base64-decoded if flagged."""
    headers = [(name, str(value)) for name, value in (response.get("headers") or {}).items()]
    headers += [("Set-Cookie", str(cookie)) for cookie in response.get("cookies") or ()]
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        payload = base64.b64decode(body)
    else:
        payload = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    return Answer(int(response.get("statusCode", 200)), headers, payload)


class UrlInvoker:
    """Invokes the app as a Lambda function URL does: every request, unrouted, in payload
    format 2.0; the app routes and answers unknown paths itself."""

    def __init__(
        self,
        app: Callable[[Any, Any], Any],
        stage: Stage | None = None,
        timeout_seconds: float = DEFAULT_LAMBDA_TIMEOUT,
        function_name: str = "lambdamesh",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.stage = stage or Stage()
        self.timeout_seconds = timeout_seconds
        self.function_name = function_name
        self.clock = clock

    def __call__(self, request: HttpRequest) -> Answer:
        event = build_url_event(
            request, self.stage, request_id=str(uuid.uuid4()), epoch_ms=int(self.clock() * 1000)
        )
        context = LambdaContext(self.timeout_seconds, self.function_name)
        return read_url_response(self.app(event, context))


def _allows(methods: Mapping[str, Any], method: str) -> bool:
    return method in methods or "ANY" in methods


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


@dataclass(frozen=True)
class ProjectConfig:
    """What ``.chalice/config.json`` gives the Lambda of one stage: its environment (global,
    then stage, then the ``api_handler`` function's, later ones winning) and its timeout."""

    environment_variables: dict[str, str] = field(default_factory=dict)
    lambda_timeout: float = DEFAULT_LAMBDA_TIMEOUT

    @classmethod
    def load(cls, project_dir: Path, stage: str) -> ProjectConfig:
        path = project_dir / ".chalice" / "config.json"
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        staged = data.get("stages", {}).get(stage, {})
        function = staged.get("lambda_functions", {}).get("api_handler", {})
        environment: dict[str, str] = {}
        timeout = DEFAULT_LAMBDA_TIMEOUT
        for level in (data, staged, function):
            environment.update(level.get("environment_variables", {}))
            timeout = level.get("lambda_timeout", timeout)
        return cls(environment, float(timeout))


@contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block, and what was there before afterwards."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Headers(Mapping[str, Any]):
    """Response headers by case-insensitive name: a string, or a list for a repeated one."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = list(pairs)
        self._names: dict[str, str] = {}
        for name, _ in pairs:
            self._names.setdefault(name.lower(), name)

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self._pairs if k.lower() == name.lower()]

    def __getitem__(self, name: str) -> Any:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return values[0] if len(values) == 1 else values

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.values())

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


@dataclass(frozen=True)
class TestResponse:
    status_code: int
    headers: Headers
    body: bytes

    @property
    def json_body(self) -> Any:
        return json.loads(self.body)


class TestHTTPClient:
    """HTTP verbs in-process: each request is routed and invoked as API Gateway would,
    with the client's environment in ``os.environ`` while the app runs."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, invoker: Callable[[HttpRequest], Answer], environment: Mapping[str, str]
    ) -> None:
        self._invoker = invoker
        self._environment = dict(environment)

    def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | str = b"",
    ) -> TestResponse:
        payload = body.encode("utf-8") if isinstance(body, str) else body
        request = HttpRequest(method.upper(), path, tuple((headers or {}).items()), payload)
        with patched_environ(self._environment):
            answer = self._invoker(request)
        return TestResponse(answer.status, Headers(answer.headers), answer.body)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("GET", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("HEAD", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("DELETE", path, **kwargs)

    def options(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("OPTIONS", path, **kwargs)


class TestClient:
    """The app as the functional tests drive it: ``client.http.get(...)`` and friends.

    The environment, like ``chalice.test.Client``'s, is ``.chalice/config.json``'s for the
    stage under the given ``environment_variables``, applied around each request, so clients
    open side by side each see their own. ``lane`` picks the event shape: ``"rest"`` routes
    as API Gateway does and sends its proxy event, ``"url"`` sends every request unrouted
    as a function URL does (payload format 2.0).
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: App,
        stage_name: str = "dev",
        project_dir: Path | str = ".",
        environment_variables: Mapping[str, str] | None = None,
        lane: Lane = "rest",
    ) -> None:
        config = ProjectConfig.load(Path(project_dir), stage_name)
        environment = {**config.environment_variables, **(environment_variables or {})}
        invoker: Callable[[HttpRequest], Answer]
        if lane == "url":
            invoker = UrlInvoker(app, timeout_seconds=config.lambda_timeout)
        else:
            invoker = Invoker(app, timeout_seconds=config.lambda_timeout)
        self.lane = lane
        self.http = TestHTTPClient(invoker, environment)

    def __enter__(self) -> TestClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


def create_test_client(
    app: App,
    stage_name: str = "dev",
    environment_variables: Mapping[str, str] | None = None,
    lane: Lane = "rest",
) -> TestClient:
    """A test client for ``app``; use it as a context manager."""
    return TestClient(
        app, stage_name=stage_name, environment_variables=environment_variables, lane=lane
    )
