"""The registry client: status mapping over a fake transport, then real HTTP on loopback."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sidecar_testkit import TOKEN, FakeRegistryServer, free_port

from lambdamesh_sidecar import __version__
from lambdamesh_sidecar.client import (
    NotRegistered,
    Registration,
    RegistryClient,
    Rejected,
    Request,
    Response,
    Unavailable,
    UrllibTransport,
)

REGISTRATION = Registration(
    version="v1",
    host="10.0.1.5",
    port=8080,
    lease_seconds=30,
    weight=50,
    zone="us-east-1a",
    metadata={"commit": "abc123"},
)


class ScriptedTransport:
    def __init__(self, status: int, body: bytes = b"") -> None:
        self.response = Response(status, body)
        self.sent: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.sent.append(request)
        return self.response


def client_over(transport: ScriptedTransport) -> RegistryClient:
    return RegistryClient(
        "https://registry.example/api/", TOKEN, "orders", "i-1", transport=transport
    )


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


# ---------------------------------------------------------------- unit: no sockets


def test_registration_body_holds_only_the_settings_given() -> None:
    minimal = Registration(version="v1", host="h", port=1, lease_seconds=30)

    assert minimal.body() == {
        "version": "v1",
        "host": "h",
        "port": 1,
        "lease_seconds": 30,
        "status": "UP",
    }
    assert REGISTRATION.body()["metadata"] == {"commit": "abc123"}
    assert REGISTRATION.body()["weight"] == 50


def test_requests_go_to_the_instance_path_under_the_url_prefix() -> None:
    transport = ScriptedTransport(200, b"{}")
    client = client_over(transport)

    client.register(REGISTRATION)
    client.heartbeat("UP")
    client.deregister()

    base = "https://registry.example/api/registry/services/orders/instances/i-1"
    assert [(r.method, r.url) for r in transport.sent] == [
        ("PUT", base),
        ("PUT", f"{base}/heartbeat"),
        ("DELETE", base),
    ]


def test_request_repr_hides_the_token() -> None:
    transport = ScriptedTransport(200, b"{}")
    client_over(transport).heartbeat("UP")

    assert TOKEN not in repr(transport.sent[0])


def test_deregister_timeout_overrides_the_default() -> None:
    transport = ScriptedTransport(204)
    client = RegistryClient("http://r", TOKEN, "s", "i", timeout=5.0, transport=transport)

    client.deregister(timeout=1.5)
    client.heartbeat("UP")

    assert [request.timeout for request in transport.sent] == [1.5, 5.0]


@pytest.mark.parametrize("status", [404, 204, 200])
def test_deregister_treats_an_unknown_instance_as_done(status: int) -> None:
    client_over(ScriptedTransport(status)).deregister()


def test_heartbeat_404_means_not_registered() -> None:
    transport = ScriptedTransport(404, error_body("instance_not_found", "no such instance"))

    with pytest.raises(NotRegistered) as caught:
        client_over(transport).heartbeat("UP")

    assert (caught.value.status, caught.value.code) == (404, "instance_not_found")


def test_register_404_is_a_rejection_not_a_lapsed_lease() -> None:
    with pytest.raises(Rejected):
        client_over(ScriptedTransport(404)).register(REGISTRATION)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_server_errors_and_throttling_are_unavailable(status: int) -> None:
    transport = ScriptedTransport(status, error_body("registry_unavailable", "try later"))

    with pytest.raises(Unavailable) as caught:
        client_over(transport).register(REGISTRATION)

    assert caught.value.status == status
    assert caught.value.message == "try later"


@pytest.mark.parametrize(
    "code",
    ["registry_misconfigured", "config_error", "mesh_ca_not_configured", "mesh_ca_invalid"],
)
def test_a_misconfigured_deployment_is_a_rejection_not_an_outage(code: str) -> None:
    transport = ScriptedTransport(500, error_body(code, "the registry is misconfigured"))

    with pytest.raises(Rejected) as caught:
        client_over(transport).heartbeat("UP")

    assert (caught.value.status, caught.value.code) == (500, code)


@pytest.mark.parametrize("status", [400, 401, 403, 409, 413])
def test_other_client_errors_are_rejections(status: int) -> None:
    transport = ScriptedTransport(status, error_body("forbidden", "host not allowed"))

    with pytest.raises(Rejected) as caught:
        client_over(transport).heartbeat("UP")

    assert (caught.value.code, caught.value.message) == ("forbidden", "host not allowed")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_rejection_that_names_where_it_points(status: int) -> None:
    transport = ScriptedTransport(status)
    transport.response = Response(status, b"moved", {"location": "https://elsewhere.example/r"})

    with pytest.raises(Rejected) as caught:
        client_over(transport).routing_view("orders")

    assert (caught.value.status, caught.value.code) == (status, "registry_redirected")
    assert "https://elsewhere.example/r" in caught.value.message
    assert "never followed" in caught.value.message


def test_error_without_the_json_envelope_is_summarised_on_one_line() -> None:
    html = b"<html>\n<body>502 Bad Gateway</body>\n</html>\n" + b"x" * 1000

    with pytest.raises(Unavailable) as caught:
        client_over(ScriptedTransport(502, html)).heartbeat("UP")

    assert caught.value.code == "http_502"
    assert "\n" not in caught.value.message
    assert len(caught.value.message) < 400


def test_register_returns_the_stored_instance_and_tolerates_an_odd_body() -> None:
    assert client_over(ScriptedTransport(201, b'{"expires_at": 5}')).register(REGISTRATION) == {
        "expires_at": 5
    }
    assert client_over(ScriptedTransport(200, b"not json")).register(REGISTRATION) == {}
    assert client_over(ScriptedTransport(200, b"[1]")).register(REGISTRATION) == {}


def test_non_http_registry_url_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        RegistryClient("file:///etc/passwd", TOKEN, "s", "i")


# ---------------------------------------------------------------- functional: real HTTP


def no_proxy_transport() -> UrllibTransport:
    """Loopback must not go through whatever proxy the machine running the tests has."""
    return UrllibTransport(proxies={})


@pytest.fixture
def prefixed_server() -> Iterator[FakeRegistryServer]:
    server = FakeRegistryServer(prefix="/api")
    yield server
    server.close()


def real_client(
    server: FakeRegistryServer, token: str = TOKEN, timeout: float = 2.0
) -> RegistryClient:
    return RegistryClient(
        server.url + "/", token, "orders", "task-1", timeout=timeout, transport=no_proxy_transport()
    )


def test_register_sends_the_contracted_request(prefixed_server: FakeRegistryServer) -> None:
    stored = real_client(prefixed_server).register(REGISTRATION)

    (request,) = prefixed_server.requests()
    assert request.method == "PUT"
    assert request.path == "/api/registry/services/orders/instances/task-1"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"lambdamesh-sidecar/{__version__}"
    assert request.body == REGISTRATION.body()
    assert "expires_at" in stored
    assert prefixed_server.instance("orders", "task-1") is not None


def test_heartbeat_and_deregister_over_http(prefixed_server: FakeRegistryServer) -> None:
    client = real_client(prefixed_server)
    client.register(REGISTRATION)

    client.heartbeat("DOWN")
    client.deregister()

    heartbeat, delete = prefixed_server.requests()[1:]
    assert (heartbeat.method, heartbeat.path) == (
        "PUT",
        "/api/registry/services/orders/instances/task-1/heartbeat",
    )
    assert heartbeat.body == {"status": "DOWN"}
    assert (delete.method, delete.path, delete.body) == (
        "DELETE",
        "/api/registry/services/orders/instances/task-1",
        None,
    )
    assert delete.headers["Authorization"] == f"Bearer {TOKEN}"
    assert prefixed_server.instance("orders", "task-1") is None


def test_heartbeat_for_a_forgotten_instance_raises_not_registered(
    prefixed_server: FakeRegistryServer,
) -> None:
    client = real_client(prefixed_server)
    client.register(REGISTRATION)
    prefixed_server.forget("orders", "task-1")

    with pytest.raises(NotRegistered) as caught:
        client.heartbeat("UP")

    assert caught.value.code == "instance_not_found"


def test_deregister_of_an_unknown_instance_succeeds(prefixed_server: FakeRegistryServer) -> None:
    real_client(prefixed_server).deregister()


def test_server_error_over_http_is_unavailable(prefixed_server: FakeRegistryServer) -> None:
    prefixed_server.fail_next(500)

    with pytest.raises(Unavailable) as caught:
        real_client(prefixed_server).register(REGISTRATION)

    assert (caught.value.status, caught.value.code) == (500, "forced_500")


def test_wrong_token_over_http_is_rejected_with_the_registry_reason(
    prefixed_server: FakeRegistryServer,
) -> None:
    with pytest.raises(Rejected) as caught:
        real_client(prefixed_server, token="wrong").register(REGISTRATION)

    assert caught.value.status == 401
    assert caught.value.code == "unauthorized"
    assert caught.value.message == "missing or invalid bearer token"


def test_connection_refused_is_unavailable() -> None:
    client = RegistryClient(
        f"http://127.0.0.1:{free_port()}", TOKEN, "s", "i", transport=no_proxy_transport()
    )

    with pytest.raises(Unavailable):
        client.heartbeat("UP")


def test_slow_registry_times_out_as_unavailable(prefixed_server: FakeRegistryServer) -> None:
    prefixed_server.state.delay = 1.0

    with pytest.raises(Unavailable):
        real_client(prefixed_server, timeout=0.2).heartbeat("UP")


def test_default_transport_speaks_to_a_real_server(
    prefixed_server: FakeRegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    client = RegistryClient(prefixed_server.url, TOKEN, "orders", "task-1")

    client.register(REGISTRATION)

    assert len(prefixed_server.requests("PUT")) == 1


class Elsewhere(http.server.BaseHTTPRequestHandler):
    """Another origin: records the headers of every request that reaches it."""

    server: RecordingServer

    def do_GET(self) -> None:
        self.server.received.append(dict(self.headers.items()))
        body = json.dumps({"service": "orders", "instances": [], "policy": {}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


class Redirecting(http.server.BaseHTTPRequestHandler):
    """The registry URL, answering every request with a redirect to the other origin."""

    server: RecordingServer

    def do_GET(self) -> None:
        self.server.received.append(dict(self.headers.items()))
        self.send_response(self.server.status)
        self.send_header("Location", self.server.location + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


class RecordingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, handler: type[http.server.BaseHTTPRequestHandler], status: int = 0, location: str = ""
    ) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.received: list[dict[str, str]] = []
        self.status, self.location = status, location
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def elsewhere() -> Iterator[RecordingServer]:
    server = RecordingServer(Elsewhere)
    yield server
    server.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_origin_is_never_followed_so_the_token_stays_home(
    elsewhere: RecordingServer, status: int
) -> None:
    registry = RecordingServer(Redirecting, status, elsewhere.url)
    try:
        client = RegistryClient(
            registry.url, TOKEN, "orders", "task-1", timeout=2.0, transport=no_proxy_transport()
        )

        with pytest.raises(Rejected) as caught:
            client.routing_view("orders")
        with pytest.raises(Rejected):
            client.register(REGISTRATION)
    finally:
        registry.close()

    assert [r["Authorization"] for r in registry.received] == [f"Bearer {TOKEN}"] * 2
    assert elsewhere.received == []  # no request, so no Authorization header, ever reached it
    assert caught.value.code == "registry_redirected"
    assert elsewhere.url in caught.value.message


def test_the_task_arn_goes_with_the_registration_and_only_when_known() -> None:
    arn = "arn:aws:ecs:us-east-1:123456789012:task/prod/0123456789abcdef0123456789abcdef"

    assert replace(REGISTRATION, task_arn=arn).body()["task_arn"] == arn
    assert "task_arn" not in REGISTRATION.body()


def test_a_certificate_is_asked_for_this_service_and_an_error_is_typed() -> None:
    transport = ScriptedTransport(200, b'{"identity": "spiffe://lambdamesh/dev/orders"}')
    assert client_over(transport).certificate() == {"identity": "spiffe://lambdamesh/dev/orders"}
    [sent] = transport.sent
    assert (sent.method, sent.url) == (
        "POST",
        "https://registry.example/api/registry/services/orders/certificate",
    )
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    refused = ScriptedTransport(403, error_body("forbidden", "not yours"))
    with pytest.raises(Rejected):
        client_over(refused).certificate()
    down = ScriptedTransport(503, error_body("key_store_unavailable", "later"))
    with pytest.raises(Unavailable):
        client_over(down).certificate()


class Scripted:
    """Answers in turn, recording what was sent."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.sent: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.sent.append(request)
        status = self.statuses.pop(0)
        body = b"" if status < 300 else error_body("invalid_request", "unknown field figures")
        return Response(status, body)


def test_heartbeats_carry_the_figures_until_a_registry_refuses_them_then_none() -> None:
    transport = Scripted(200, 400, 200, 200)
    windows = iter([{"seconds": 60.0}, {"seconds": 61.0}, {"seconds": 62.0}])
    client = RegistryClient(
        "https://registry.example/api/",
        TOKEN,
        "orders",
        "i-1",
        transport=transport,
        figures=lambda: next(windows),
    )
    client.heartbeat("UP")
    client.heartbeat("UP")  # refused with figures, sent again without
    client.heartbeat("UP")
    bodies = [json.loads(sent.body or b"{}") for sent in transport.sent]
    assert bodies == [
        {"status": "UP", "figures": {"seconds": 60.0}},
        {"status": "UP", "figures": {"seconds": 61.0}},
        {"status": "UP"},
        {"status": "UP"},
    ]
