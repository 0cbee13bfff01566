"""The outbound port over real loopback sockets: scripted upstream instances, a fixed routing
view in place of the registry. What routing decides is the gateway's own code
(``lambdamesh_routing``, tested with the gateway); these tests hold the transport to the same
rules: retries, ejection, headers, errors, streaming, limits and address checks."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sidecar_testkit import FakeClock

from lambdamesh_routing.errors import RegistryUnavailable
from lambdamesh_routing.hosts import AddressPolicy
from lambdamesh_routing.instances import Instance, ServiceView
from lambdamesh_routing.policy import Alias, MatchRule, OutlierDetection, Policy, Timeouts
from lambdamesh_routing.router import Router
from lambdamesh_routing.wire import etag
from lambdamesh_sidecar.catalog import RECHECK_SECONDS, Catalog
from lambdamesh_sidecar.client import ViewAnswer
from lambdamesh_sidecar.outbound import OutboundProxy, OutboundServer
from lambdamesh_sidecar.outbound_call import REPLAY_LIMIT
from lambdamesh_sidecar.outbound_settings import OutboundSettings
from lambdamesh_sidecar.upstreams import IDLE_SECONDS, UpstreamPool

Behaviour = Callable[[BaseHTTPRequestHandler, bytes], None]


def answer(
    status: int = 200, body: bytes = b"ok", headers: dict[str, str] | None = None
) -> Behaviour:
    def behave(handler: BaseHTTPRequestHandler, received: bytes) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    return behave


def echo(handler: BaseHTTPRequestHandler, received: bytes) -> None:
    document = {
        "method": handler.command,
        "path": handler.path,
        "headers": dict(handler.headers.items()),
        "body_length": len(received),
    }
    answer(200, json.dumps(document).encode(), {"Content-Type": "application/json"})(
        handler, received
    )


def reset(handler: BaseHTTPRequestHandler, received: bytes) -> None:
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    handler.close_connection = True
    handler.connection.close()


def slow(seconds: float) -> Behaviour:
    def behave(handler: BaseHTTPRequestHandler, received: bytes) -> None:
        time.sleep(seconds)
        answer()(handler, received)

    return behave


def chunked(total: int) -> Behaviour:
    def behave(handler: BaseHTTPRequestHandler, received: bytes) -> None:
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        if handler.command == "HEAD":
            return
        block = b"x" * 65536
        sent = 0
        while sent < total:
            piece = block[: min(len(block), total - sent)]
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
        handler.wfile.write(b"0\r\n\r\n")

    return behave


class Upstream:
    """One instance: answers with ``behaviour`` and counts what it received."""

    def __init__(self, behaviour: Behaviour = echo) -> None:
        self.behaviour = behaviour
        self.received: list[tuple[str, str, int]] = []
        self.peers: set[Any] = set()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    body = _read_chunked(self.rfile)
                upstream.received.append((self.command, self.path, len(body)))
                upstream.peers.add(self.client_address)
                upstream.behaviour(self, body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _read_chunked(stream: Any) -> bytes:
    data = bytearray()
    while True:
        size = int(stream.readline().split(b";")[0], 16)
        if size == 0:
            stream.readline()
            return bytes(data)
        data += stream.read(size)
        stream.readline()


def instance(name: str, port: int, version: str = "v1", host: str = "127.0.0.1") -> Instance:
    return Instance("inventory", name, version, host, port, 1, None, {}, "UP", 30, 2e9, 0.0, 0.0)


class Views:
    def __init__(self) -> None:
        self.current = ServiceView(())
        self.error: Exception | None = None
        self.rechecks: list[str] = []

    def view(self, service: str) -> ServiceView:
        if self.error is not None:
            raise self.error
        return self.current if service == "inventory" else ServiceView(())

    def recheck(self, service: str) -> ServiceView:
        self.rechecks.append(service)
        return self.view(service)


class Harness:
    def __init__(self) -> None:
        self.views = Views()
        self.upstreams: list[Upstream] = []
        self.router = Router(sleep=lambda seconds: None)
        self.outbound = OutboundProxy(
            self.views,
            self.router,
            AddressPolicy(allow_loopback=True, allow_private=True),
            caller_address="10.0.1.7",
            settings=OutboundSettings(
                timeout_seconds=3.0, connect_timeout_seconds=1.0, max_connections=8
            ),
        )
        self.server: OutboundServer = self.outbound.serve(0)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def instances(
        self, *behaviours: Behaviour, policy: Policy | None = None, version: str = "v1"
    ) -> list[Upstream]:
        started = [Upstream(b) for b in behaviours]
        self.upstreams += started
        self.views.current = ServiceView(
            tuple(instance(f"i{n}", u.port, version) for n, u in enumerate(started)), policy
        )
        return started

    def call(
        self,
        method: str,
        path: str,
        body: bytes | Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            chunked = "Transfer-Encoding" in (headers or {})
            connection.request(
                method, path, body=body, headers=headers or {}, encode_chunked=chunked
            )
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for upstream in self.upstreams:
            upstream.close()


@pytest.fixture
def mesh() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


def error_code(body: bytes) -> str:
    return str(json.loads(body)["error"]["code"])


def test_it_listens_on_loopback_only(mesh: Harness) -> None:
    assert mesh.server.server_address[0] == "127.0.0.1"


def test_a_call_reaches_an_instance_with_its_path_query_and_forwarding_headers(
    mesh: Harness,
) -> None:
    mesh.instances(echo)

    status, headers, body = mesh.call(
        "GET",
        "/inventory/v1/items/a%2Fb//c?x=1&y=%20",
        headers={
            "X-Request-Id": "req-42",
            "Connection": "keep-alive, X-Secret",
            "X-Secret": "hop",
            "X-Real-Ip": "6.6.6.6",
        },
    )

    assert status == 200
    seen = json.loads(body)
    assert seen["path"] == "/items/a%2Fb//c?x=1&y=%20"
    sent = {k.lower(): v for k, v in seen["headers"].items()}
    assert sent["x-request-id"] == "req-42"
    assert sent["x-forwarded-for"] == "10.0.1.7"
    assert sent["x-forwarded-proto"] == "http"
    assert "x-secret" not in sent and "x-real-ip" not in sent
    assert sent["host"] == f"127.0.0.1:{mesh.upstreams[0].port}"
    assert headers["X-Request-Id"] == "req-42"


def test_the_apps_forwarded_proto_and_port_are_not_passed_on(mesh: Harness) -> None:
    # Behind API Gateway these are the edge's; no edge stands between the app and its sidecar.
    mesh.instances(echo)

    _, _, body = mesh.call(
        "GET", "/inventory/v1/x", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"}
    )

    sent = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
    assert sent["x-forwarded-proto"] == "http"
    assert "x-forwarded-port" not in sent


@pytest.mark.parametrize(
    ("sent", "forwarded"),
    [
        ({}, "10.0.1.7"),
        ({"X-Forwarded-For": "203.0.113.9"}, "203.0.113.9, 10.0.1.7"),
        ({"X-Forwarded-For": "203.0.113.9, 198.51.100.2"}, "203.0.113.9, 198.51.100.2, 10.0.1.7"),
        ({"X_Forwarded_For": "6.6.6.6"}, "10.0.1.7"),
    ],
    ids=["none", "one", "a chain", "underscored"],
)
def test_the_apps_forwarded_for_chain_is_kept_and_this_tasks_address_appended(
    mesh: Harness, sent: dict[str, str], forwarded: str
) -> None:
    # As the gateway keeps a client's chain and appends the address API Gateway saw: only
    # the last entry is the proxy's word, and the app may pass on whom it called for.
    mesh.instances(echo)

    _, _, body = mesh.call("GET", "/inventory/v1/x", headers=sent)

    seen = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
    assert seen["x-forwarded-for"] == forwarded
    assert "x_forwarded_for" not in seen


def headers_seen(mesh: Harness, lines: bytes) -> dict[str, str]:
    """The headers the echo instance saw for a GET sent with these raw header lines."""
    mesh.instances(echo)
    with socket.create_connection(("127.0.0.1", mesh.server.port), timeout=5) as sock:
        sock.sendall(
            b"GET /inventory/v1/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + lines + b"\r\n"
        )
        reply = b""
        while part := sock.recv(65536):
            reply += part
    return dict(json.loads(reply.split(b"\r\n\r\n", 1)[1])["headers"])


def test_repeated_forwarded_for_lines_are_one_chain_in_their_order(mesh: Harness) -> None:
    seen = headers_seen(mesh, b"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 198.51.100.2\r\n")

    forwarded = [v for k, v in seen.items() if k.lower() == "x-forwarded-for"]
    assert forwarded == ["203.0.113.9, 198.51.100.2, 10.0.1.7"]


def test_repeated_cookie_lines_reach_the_instance_as_one_cookie_header(mesh: Harness) -> None:
    seen = headers_seen(mesh, b"Cookie: a=1\r\nCookie: b=2\r\nAccept: text/html\r\nAccept: */*\r\n")

    lowered = {k.lower(): v for k, v in seen.items()}
    assert (lowered["cookie"], lowered["accept"]) == ("a=1; b=2", "text/html, */*")


def test_a_call_without_a_request_id_gets_one_both_ways(mesh: Harness) -> None:
    mesh.instances(echo)

    _, headers, body = mesh.call("GET", "/inventory/v1/")

    sent = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
    assert sent["x-request-id"] == headers["X-Request-Id"]
    assert len(headers["X-Request-Id"]) == 32


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/inventory/v9/x", 404, "version_not_found"),
        ("/billing/v1/x", 404, "service_not_found"),
        ("/Inventory!/v1/x", 400, "invalid_name"),
        ("/inventory", 404, "route_not_found"),
        ("/", 404, "route_not_found"),
    ],
)
def test_what_cannot_be_routed_gets_the_gateways_json_error(
    mesh: Harness, path: str, status: int, code: str
) -> None:
    mesh.instances(echo)

    got, headers, body = mesh.call("GET", path)

    assert (got, error_code(body)) == (status, code)
    assert json.loads(body)["error"]["request_id"] == headers["X-Request-Id"]


def test_no_live_instance_and_an_unreachable_registry_are_503s(mesh: Harness) -> None:
    mesh.views.current = ServiceView((instance("down", 1, "v1").replace(status="DOWN"),))
    status, _, body = mesh.call("GET", "/inventory/v1/x")
    assert (status, error_code(body)) == (503, "no_live_instance")

    mesh.views.error = RegistryUnavailable("the registry did not answer")
    status, headers, body = mesh.call("GET", "/inventory/v1/x")
    assert (status, error_code(body), headers["Retry-After"]) == (503, "registry_unavailable", "2")


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH"])
def test_a_refused_connection_is_retried_elsewhere_for_any_method(
    mesh: Harness, method: str
) -> None:
    [good] = mesh.instances(echo)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    mesh.views.current = ServiceView((instance("dead", dead_port), instance("good", good.port)))

    statuses = {mesh.call(method, "/inventory/v1/x", b"{}")[0] for _ in range(4)}

    assert statuses == {200}
    assert mesh.router.outliers.is_ejected(instance("dead", dead_port))


class SilentPool(UpstreamPool):
    """Upstreams that never answer a connect: each one times out after the whole timeout it
    was given, on the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.clock = clock
        self.timeouts: list[float] = []

    def get(
        self, ip: str, port: int, timeout: float, fresh: bool = False
    ) -> tuple[socket.socket, bool]:
        self.timeouts.append(timeout)
        self.clock.now += timeout
        raise TimeoutError("timed out")


def test_a_connect_cut_short_by_the_calls_deadline_is_a_504_and_ejects_nothing() -> None:
    clock = FakeClock()
    pool = SilentPool(clock)
    router = Router(clock=clock, sleep=lambda seconds: None)
    views = Views()
    first, second = instance("first", 8001), instance("second", 8002)
    views.current = ServiceView((first, second))
    settings = OutboundSettings(timeout_seconds=1.5, connect_timeout_seconds=1.0)
    outbound = OutboundProxy(
        views, router, AddressPolicy(allow_loopback=True), None, settings, pool=pool
    )
    server = outbound.serve(0)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/inventory/v1/x")
        response = connection.getresponse()
        status, code = response.status, error_code(response.read())
        connection.close()
    finally:
        server.shutdown()
        server.server_close()

    # The first instance had its whole connect timeout; the second only what the call had left.
    assert pool.timeouts == [1.0, 0.5]
    assert (status, code) == (504, "upstream_timeout")
    ejected = [i for i in (first, second) if router.outliers.is_ejected(i)]
    assert len(ejected) == 1  # the one that had its whole connect timeout


def test_a_reset_after_sending_is_retried_for_get_and_never_for_post(mesh: Harness) -> None:
    broken, healthy = mesh.instances(reset, echo)
    in_order = Policy(strategy="weighted_round_robin")
    mesh.views.current = ServiceView(mesh.views.current.instances, in_order)

    gets = [mesh.call("GET", "/inventory/v1/x")[0] for _ in range(4)]
    posts = [mesh.call("POST", "/inventory/v1/x", b"pay")[0] for _ in range(4)]

    assert gets == [200] * 4
    assert 502 in posts
    post_deliveries = [r for r in broken.received + healthy.received if r[0] == "POST"]
    assert len(post_deliveries) == 4  # each POST reached exactly one instance


def test_a_503_is_retried_for_get_and_returned_as_given_for_post(mesh: Harness) -> None:
    mesh.instances(answer(503, b"busy", {"X-From": "upstream"}))
    mesh.instances(answer(503, b"busy", {"X-From": "upstream"}), echo)

    gets = {mesh.call("GET", "/inventory/v1/x")[0] for _ in range(4)}
    post = mesh.call("POST", "/inventory/v1/x", b"pay")

    assert gets == {200}
    assert post[0] in (200, 503)
    if post[0] == 503:
        assert (post[2], post[1]["X-From"]) == (b"busy", "upstream")


def test_a_slow_instance_gets_a_504_within_the_per_try_timeout(mesh: Harness) -> None:
    policy = Policy(timeouts=Timeouts(per_try_seconds=0.3))
    mesh.instances(slow(2.0), policy=policy)

    started = time.monotonic()
    status, _, body = mesh.call("GET", "/inventory/v1/x")

    assert (status, error_code(body)) == (504, "upstream_timeout")
    assert time.monotonic() - started < 1.5


def test_an_instance_answering_500_is_ejected_after_the_policys_count(mesh: Harness) -> None:
    rules = OutlierDetection(consecutive_failures=2, failure_statuses="all_5xx")
    bad, good = mesh.instances(answer(500, b"oops"), echo, policy=Policy(outlier_detection=rules))

    for _ in range(10):
        mesh.call("GET", "/inventory/v1/x")

    assert len(bad.received) == 2
    assert len(good.received) == 8


def boom_on(path: str) -> Behaviour:
    """A healthy app with one path that answers 500 on purpose."""

    def behave(handler: BaseHTTPRequestHandler, received: bytes) -> None:
        answer(500 if handler.path == path else 200)(handler, received)

    return behave


@pytest.mark.parametrize(
    ("rules", "ejected"),
    [(None, 0), (OutlierDetection(failure_statuses="all_5xx"), 1)],
    ids=["by default", "all_5xx"],
)
def test_calls_to_a_path_answered_500_eject_nothing_unless_the_policy_counts_all_5xx(
    mesh: Harness, rules: OutlierDetection | None, ejected: int
) -> None:
    policy = None if rules is None else Policy(outlier_detection=rules)
    upstreams = mesh.instances(*[boom_on("/boom")] * 4, policy=policy)

    statuses = {mesh.call("GET", "/inventory/v1/boom")[0] for _ in range(40)}

    assert statuses == {500}
    out = [i for i in mesh.views.current.instances if mesh.router.outliers.is_ejected(i)]
    # At most 10 % of a version by default, and always one instance: one of four.
    assert len(out) == ejected
    served = [len(u.received) for u in upstreams]
    for _ in range(8):
        assert mesh.call("GET", "/inventory/v1/ok")[0] == 200
    assert sum(1 for u, before in zip(upstreams, served) if len(u.received) > before) == 4 - ejected


def test_an_alias_match_rule_picks_the_version(mesh: Harness) -> None:
    old, new = Upstream(answer(200, b"v1")), Upstream(answer(200, b"v2"))
    mesh.upstreams += [old, new]
    policy = Policy(
        aliases={"live": Alias(split=(("v1", 1),), match=(MatchRule("x-canary", "1", "v2"),))}
    )
    mesh.views.current = ServiceView(
        (instance("old", old.port, "v1"), instance("new", new.port, "v2")), policy
    )

    plain = mesh.call("GET", "/inventory/live/x")[2]
    canary = mesh.call("GET", "/inventory/live/x", headers={"X-Canary": "1"})[2]

    assert (plain, canary) == (b"v1", b"v2")


def test_a_large_request_body_streams_through_and_is_not_retried_once_sent(
    mesh: Harness,
) -> None:
    [sink] = mesh.instances(echo)
    body = b"y" * (REPLAY_LIMIT * 3 + 7)

    status, _, answered = mesh.call("PUT", "/inventory/v1/blob", body)

    assert status == 200
    assert json.loads(answered)["body_length"] == len(body)
    assert sink.received == [("PUT", "/blob", len(body))]
    # Framed as the app framed it: with its Content-Length, which every server reads.
    headers = json.loads(answered)["headers"]
    assert headers.get("Content-Length") == str(len(body))
    assert "Transfer-Encoding" not in headers


def test_a_chunked_request_body_is_decoded_and_forwarded(mesh: Harness) -> None:
    mesh.instances(echo)
    pieces = [b"a" * 1000, b"b" * 70000, b"c"]

    status, _, answered = mesh.call(
        "POST", "/inventory/v1/upload", iter(pieces), {"Transfer-Encoding": "chunked"}
    )

    assert status == 200
    assert json.loads(answered)["body_length"] == sum(map(len, pieces))


def test_a_large_answer_streams_back_whole(mesh: Harness) -> None:
    mesh.instances(chunked(5 * 1024 * 1024 + 3))

    status, headers, body = mesh.call("GET", "/inventory/v1/big")

    assert status == 200
    assert len(body) == 5 * 1024 * 1024 + 3
    assert headers.get("Transfer-Encoding") == "chunked"


def test_head_and_no_content_answers_carry_no_body(mesh: Harness) -> None:
    mesh.instances(answer(200, b"0123456789"))

    status, headers, body = mesh.call("HEAD", "/inventory/v1/x")

    assert (status, body, headers["Content-Length"]) == (200, b"", "10")


def test_keep_alive_connections_carry_many_calls(mesh: Harness) -> None:
    mesh.instances(echo)
    connection = http.client.HTTPConnection("127.0.0.1", mesh.server.port, timeout=10)

    for n in range(20):
        connection.request("POST" if n % 2 else "GET", "/inventory/v1/x", body=b"z" * n)
        response = connection.getresponse()
        assert response.status == 200
        response.read()
    connection.close()


@pytest.mark.parametrize(
    "host",
    ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "224.0.0.1", "0.0.0.0"],
)
def test_an_address_the_gateway_must_not_reach_is_never_connected(mesh: Harness, host: str) -> None:
    mesh.views.current = ServiceView((instance("evil", 80, host=host),))

    status, _, body = mesh.call("GET", "/inventory/v1/latest/meta-data/")

    assert (status, error_code(body)) == (502, "upstream_not_allowed")
    assert not mesh.router.outliers.is_ejected(instance("evil", 80, host=host))


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


class Dialling:
    """An outbound port with the address policy the sidecar makes of its settings, and a
    resolver the test answers for, beside a live upstream on loopback that must never be
    reached unless allowed."""

    def __init__(self, answers: dict[str, list[str]] | None, **settings: Any) -> None:
        self.upstream = Upstream(echo)
        self.views = Views()
        self.router = Router(sleep=lambda seconds: None)
        config = OutboundSettings(
            port=15001,
            allow_loopback=settings.get("loopback", False),
            allow_private=settings.get("private", False),
            allowed_networks=tuple(settings.get("networks", ())),
        )
        self.log = Records()
        logger = logging.Logger("outbound-under-test")
        logger.addHandler(self.log)
        extra: dict[str, Any] = {}
        if answers is not None:
            extra["resolver"] = lambda host, port: answers[host]
        outbound = OutboundProxy(
            self.views,
            self.router,
            config.address_policy(),
            caller_address=None,
            logger=logger,
            **extra,
        )
        self.server = outbound.serve(0)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def call(self, host: str) -> tuple[int, str, Instance]:
        target = instance("named", self.upstream.port, host=host)
        self.views.current = ServiceView((target,))
        status, body = self.get()
        return status, error_code(body), target

    def get(self) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            connection.request("GET", "/inventory/v1/x")
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.upstream.close()


@pytest.mark.parametrize(
    ("answers", "settings"),
    [
        # A name of the VPC that resolves to loopback, with only the tasks' subnets allowed.
        ({"inventory.internal": ["127.0.0.1"]}, {"private": True, "networks": ["10.0.0.0/16"]}),
        # The same name resolving to a private address outside the allowed networks.
        ({"inventory.internal": ["10.9.0.5"]}, {"private": True, "networks": ["10.0.0.0/16"]}),
        # Private addresses asked for with no network list: refused, as the gateway refuses.
        ({"inventory.internal": ["10.0.0.5"]}, {"private": True}),
        # And by default, a name that resolves to the metadata service.
        ({"inventory.internal": ["169.254.169.254"]}, {}),
    ],
)
def test_a_name_resolving_to_a_refused_address_is_never_dialled_nor_ejected(
    answers: dict[str, list[str]], settings: dict[str, Any]
) -> None:
    port = Dialling(answers, **settings)
    try:
        status, code, target = port.call("inventory.internal")

        assert (status, code) == (502, "upstream_not_allowed")
        assert port.upstream.received == []
        assert not port.router.outliers.is_ejected(target)
    finally:
        port.close()


@pytest.mark.parametrize(
    ("host", "answers", "settings", "setting"),
    [
        ("10.9.0.5", None, {"private": True, "networks": ["10.0.0.0/16"]}, "ALLOWED_NETWORKS"),
        (
            "inventory.internal",
            {"inventory.internal": ["10.9.0.5"]},
            {"private": True, "networks": ["10.0.0.0/16"]},
            "ALLOWED_NETWORKS",
        ),
        ("127.0.0.1", None, {"private": True, "networks": ["10.0.0.0/16"]}, "ALLOWED_NETWORKS"),
        ("127.0.0.1", None, {}, "ALLOW_LOOPBACK"),
        ("10.0.0.5", None, {"loopback": True}, "ALLOW_PRIVATE"),
    ],
)
def test_a_refused_address_is_logged_as_a_refusal_naming_the_sidecars_own_setting(
    host: str, answers: dict[str, list[str]] | None, settings: dict[str, Any], setting: str
) -> None:
    port = Dialling(answers, **settings)
    try:
        status, code, target = port.call(host)

        assert (status, code) == (502, "upstream_not_allowed")
        [message] = port.log.messages()
        assert f"LAMBDAMESH_OUTBOUND_{setting}" in message
        assert "LAMBDAMESH_ALLOW" not in message  # the gateway's names
        assert "upstream failed" not in message and "error=upstream_not_allowed" in message
        assert not port.router.outliers.is_ejected(target)
    finally:
        port.close()


def test_instances_the_settings_refuse_never_bring_on_panic_mode() -> None:
    # Given two of three instances at an address the settings refuse
    port = Dialling({"far.internal": ["10.9.0.5"], "near.internal": ["127.0.0.1"]}, loopback=True)
    try:
        refused = [instance(f"far-{n}", port.upstream.port, host="far.internal") for n in range(2)]
        allowed = instance("near", port.upstream.port, host="near.internal")
        port.views.current = ServiceView((*refused, allowed))

        # When the app calls many times
        statuses = {port.get()[0] for _ in range(12)}

        # Then every call reaches the one allowed instance, and nothing is ejected, so fewer
        # than half usable never happens and panic mode never starts
        assert statuses == {200}
        assert len(port.upstream.received) == 12
        assert [i for i in refused if port.router.outliers.is_ejected(i)] == []
        messages = port.log.messages()
        assert messages and all("refused by this sidecar's settings" in m for m in messages)
        assert not any("panic" in m or "ejected" in m for m in messages)
    finally:
        port.close()


def test_localhost_is_refused_when_loopback_is_not_allowed() -> None:
    port = Dialling(None, private=True, networks=["10.0.0.0/16"])
    try:
        status, code, _ = port.call("localhost")

        assert (status, code) == (502, "upstream_not_allowed")
        assert port.upstream.received == []
    finally:
        port.close()


def test_an_instance_refused_by_the_settings_is_skipped_for_one_that_is_allowed() -> None:
    port = Dialling({"bad.internal": ["10.9.0.5"], "good.internal": ["127.0.0.1"]}, loopback=True)
    try:
        bad = instance("bad", port.upstream.port, host="bad.internal")
        good = instance("good", port.upstream.port, host="good.internal")
        port.views.current = ServiceView((bad, good))
        connection = http.client.HTTPConnection("127.0.0.1", port.server.port, timeout=10)
        statuses = []
        for _ in range(6):
            connection.request("POST", "/inventory/v1/x", body=b"{}")
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
        connection.close()

        assert statuses == [200] * 6
        assert len(port.upstream.received) == 6
        assert not port.router.outliers.is_ejected(bad)
    finally:
        port.close()


def test_loopback_is_refused_unless_allowed() -> None:
    views = Views()
    upstream = Upstream(echo)
    views.current = ServiceView((instance("local", upstream.port),))
    outbound = OutboundProxy(
        views, Router(), AddressPolicy(allow_private=True), caller_address=None
    )
    server = outbound.serve(0)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/inventory/v1/x")
        response = connection.getresponse()
        assert response.status == 502
        assert upstream.received == []
    finally:
        server.shutdown()
        server.server_close()
        upstream.close()


def test_past_the_connection_limit_the_app_gets_a_503(mesh: Harness) -> None:
    mesh.instances(echo)
    held = [socket.create_connection(("127.0.0.1", mesh.server.port)) for _ in range(8)]
    try:
        time.sleep(0.2)
        status, headers, body = mesh.call("GET", "/inventory/v1/x")
        assert (status, error_code(body), headers["Retry-After"]) == (
            503,
            "sidecar_overloaded",
            "1",
        )
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert mesh.call("GET", "/inventory/v1/x")[0] == 200


def first_line(port: int, timeout: float) -> bytes:
    """The status line a call on a new connection gets; b"" if none comes within ``timeout``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"GET /inventory/v1/x HTTP/1.1\r\nConnection: close\r\n\r\n")
        try:
            return sock.recv(65536).partition(b"\r\n")[0]
        except TimeoutError:
            return b""


def test_a_refused_connection_that_keeps_sending_does_not_stop_the_port_accepting(
    mesh: Harness,
) -> None:
    mesh.instances(echo)
    held = [http.client.HTTPConnection("127.0.0.1", mesh.server.port, timeout=5) for _ in range(8)]
    for connection in held:  # each answered, so each holds one of the 8 slots
        connection.request("GET", "/inventory/v1/x")
        connection.getresponse().read()
    refused, stop = threading.Event(), threading.Event()

    def flood() -> None:
        with socket.create_connection(("127.0.0.1", mesh.server.port), timeout=5) as sock:
            sock.sendall(b"GET /inventory/v1/x HTTP/1.1\r\n\r\n")
            if sock.recv(65536).startswith(b"HTTP/1.1 503"):
                refused.set()
            with contextlib.suppress(OSError):
                while not stop.is_set():
                    sock.sendall(b"x" * 1024)

    flooding = threading.Thread(target=flood, daemon=True)
    flooding.start()
    try:
        assert refused.wait(5)
        for connection in held:
            connection.close()
        for _ in range(50):  # until the closed connections' slots are given back
            status = first_line(mesh.server.port, timeout=1.0)
            if not status.startswith(b"HTTP/1.1 503"):
                break
            time.sleep(0.02)
        assert status == b"HTTP/1.1 200 OK"
    finally:
        stop.set()
        flooding.join(5)


def test_a_burst_of_connections_waits_to_be_accepted_rather_than_being_dropped() -> None:
    outbound = OutboundProxy(
        Views(), Router(), AddressPolicy(allow_loopback=True), caller_address=None
    )
    server = outbound.serve(0)  # listening, but nothing accepts yet
    burst = [socket.socket() for _ in range(64)]
    try:
        for sock in burst:
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", server.port))
        pending, deadline = set(burst), time.monotonic() + 1.0
        while pending and (left := deadline - time.monotonic()) > 0:
            _, connected, _ = select.select([], list(pending), [], left)
            pending -= set(connected)

        # The kernel completed every handshake: none waits on a SYN retried a second later.
        assert not pending
        assert {s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) for s in burst} == {0}
    finally:
        for sock in burst:
            sock.close()
        server.server_close()


def test_idle_connections_to_an_address_no_longer_called_are_closed() -> None:
    clock = FakeClock()
    pool = UpstreamPool(clock)
    old, old_peer = socket.socketpair()
    new, new_peer = socket.socketpair()
    try:
        pool.put("10.0.1.5", 8080, old)
        clock.now += IDLE_SECONDS

        pool.put("10.0.1.6", 8080, new)  # the instance at 10.0.1.5 is never called again

        assert old.fileno() == -1
        assert new.fileno() != -1
    finally:
        for sock in (old, old_peer, new, new_peer):
            sock.close()


def test_a_body_with_both_length_and_chunked_is_refused(mesh: Harness) -> None:
    mesh.instances(echo)
    with socket.create_connection(("127.0.0.1", mesh.server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /inventory/v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk

    assert reply.startswith(b"HTTP/1.1 400")
    assert b"bad_request" in reply
    assert mesh.upstreams[0].received == []


@pytest.mark.parametrize("behaviour", [echo, chunked(100_000)], ids=["length", "chunked"])
def test_calls_reuse_one_upstream_connection(mesh: Harness, behaviour: Behaviour) -> None:
    [upstream] = mesh.instances(behaviour)

    for _ in range(10):
        assert mesh.call("GET", "/inventory/v1/x")[0] == 200
    assert mesh.call("HEAD", "/inventory/v1/x")[0] == 200
    assert mesh.call("GET", "/inventory/v1/x")[0] == 200

    assert len(upstream.received) == 12
    assert len(upstream.peers) == 1


# A view that knows nothing of the service or version called is read again at once.


class Registered:
    """The registry's routing view route over what is registered now: 304 when unchanged."""

    def __init__(self) -> None:
        self.instances: dict[str, list[dict[str, Any]]] = {}
        self.asked: list[tuple[str, str | None]] = []

    def add(self, service: str, instance_id: str, version: str, port: int) -> None:
        self.instances.setdefault(service, []).append(
            {
                "instance_id": instance_id,
                "version": version,
                "host": "127.0.0.1",
                "port": port,
                "weight": 100,
                "zone": None,
                "status": "UP",
                "drained": False,
                "live": True,
            }
        )

    def fetch(self, service: str, tag: str | None) -> ViewAnswer:
        self.asked.append((service, tag))
        document = {
            "service": service,
            "instances": self.instances.get(service, []),
            "policy": None,
        }
        if tag == etag(document):
            return ViewAnswer(None, tag)
        return ViewAnswer(document, etag(document))


class Catalogued:
    """An outbound port routing on a real catalog that refreshes only when told, on a fake
    clock, over ``Registered``."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.registry = Registered()
        self.catalog = Catalog(self.registry.fetch, refresh_seconds=300, clock=self.clock)
        self.upstreams: list[Upstream] = []
        outbound = OutboundProxy(
            self.catalog,
            Router(sleep=lambda seconds: None),
            AddressPolicy(allow_loopback=True),
            None,
        )
        self.server = outbound.serve(0)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def start(self, service: str, version: str) -> None:
        upstream = Upstream(answer(200, f"{service} {version}".encode()))
        self.upstreams.append(upstream)
        self.registry.add(service, f"{service}-{version}", version, upstream.port)

    def get(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            return response.status, body if response.status == 200 else error_code(body).encode()
        finally:
            connection.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for upstream in self.upstreams:
            upstream.close()


@pytest.fixture
def catalogued() -> Iterator[Catalogued]:
    port = Catalogued()
    yield port
    port.close()


def test_a_version_registered_after_the_view_was_read_is_routed_without_waiting_for_a_refresh(
    catalogued: Catalogued,
) -> None:
    catalogued.start("inventory", "v1")
    assert catalogued.get("/inventory/v1/x") == (200, b"inventory v1")

    catalogued.start("inventory", "v2")
    catalogued.clock.now += RECHECK_SECONDS

    assert catalogued.get("/inventory/v2/x") == (200, b"inventory v2")
    # One conditional read, not a refresh of everything: the view's ETag went with it.
    assert [tag is None for _, tag in catalogued.registry.asked] == [True, False]


def test_a_service_registered_after_its_name_was_missed_is_routed_after_one_more_read(
    catalogued: Catalogued,
) -> None:
    assert catalogued.get("/billing/v1/x") == (404, b"service_not_found")

    catalogued.start("billing", "v1")
    assert catalogued.get("/billing/v1/x") == (404, b"service_not_found")  # read just now
    catalogued.clock.now += RECHECK_SECONDS

    assert catalogued.get("/billing/v1/x") == (200, b"billing v1")
    assert len(catalogued.registry.asked) == 2


def test_calls_for_made_up_versions_and_names_read_the_registry_at_most_once_a_second_each(
    catalogued: Catalogued,
) -> None:
    catalogued.start("inventory", "v1")
    catalogued.get("/inventory/v1/x")
    catalogued.get("/nobody/v1/x")
    assert len(catalogued.registry.asked) == 2

    for second in range(3):
        for _ in range(10):
            assert catalogued.get("/inventory/v9/x") == (404, b"version_not_found")
            assert catalogued.get("/nobody/v1/x") == (404, b"service_not_found")
        assert len(catalogued.registry.asked) == 2 + 2 * second
        catalogued.clock.now += RECHECK_SECONDS

    assert {service for service, _ in catalogued.registry.asked} == {"inventory", "nobody"}
