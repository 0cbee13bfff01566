"""JWK Sets fetched over real HTTP from a server on loopback, and what the app imports.

The issuer here is ``http://127.0.0.1``: the cache and the fetch take it only because the
tests build them with ``allow_loopback_http``, as `lambdamesh dev` may; a deployed gateway
fetches https only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from chalicelib.errors import InvalidToken, KeysUnavailable
from chalicelib.exposure.jwks import MAX_JWKS_BYTES, JwksCache, JwksError, fetch_jwks
from chalicelib.exposure.jwt_rules import JwtRules
from chalicelib.exposure.tokens import verify

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_700_000_000.0
ISSUER = "https://issuer.example.com/pool-1"
AUDIENCE = "orders-client"


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Without Content-Length, in chunks: how a server streams a body of unknown length.
    chunked: bool = False
    # Never answers (the test releases it when it is done).
    stall: threading.Event | None = None
    # Sends the status line and headers as given, and then no body.
    stall_body: bool = False


@dataclass
class JwksServer:
    """An HTTP/1.1 server on loopback answering each path as ``routes`` says, and keeping
    the paths it was asked for."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, document: Any) -> str:
        self.routes[path] = Route(body=json.dumps(document).encode())
        return self.url(path)


def handler_for(server: JwksServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            server.requests.append(self.path)
            route = server.routes.get(self.path, Route(status=404))
            if route.stall is not None:
                route.stall.wait(10)
                return
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            if route.stall_body:
                self.end_headers()
                return
            if route.chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for start in range(0, len(route.body), 4096):
                    chunk = route.body[start : start + 4096]
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
                return
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def issuer() -> Iterator[JwksServer]:
    server = JwksServer()
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(server))
    http.daemon_threads = True
    server.port = http.server_address[1]
    thread = threading.Thread(target=http.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    http.shutdown()
    http.server_close()


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rotated_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(private: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    found: dict[str, Any] = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return {**found, "kid": kid, "use": "sig", "alg": "RS256"}


def bearer(private: rsa.RSAPrivateKey, kid: str) -> str:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-42", "exp": int(NOW) + 300}
    return "Bearer " + jwt.encode(claims, private, algorithm="RS256", headers={"kid": kid})


def rules_for(url: str) -> JwtRules:
    return JwtRules(issuer=ISSUER, audiences=(AUDIENCE,), jwks_url=url)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_verified_with_keys_fetched_from_the_issuer(
    issuer: JwksServer, signing_key: rsa.RSAPrivateKey
) -> None:
    url = issuer.serve("/pool-1/.well-known/jwks.json", {"keys": [jwk(signing_key, "k1")]})
    cache = JwksCache(clock=Clock(), allow_loopback_http=True)

    for _ in range(3):
        identity = verify(rules_for(url), bearer(signing_key, "k1"), "/orders", NOW, keys=cache)

    assert identity.subject == "user-42"
    assert issuer.requests == ["/pool-1/.well-known/jwks.json"]


def test_a_key_the_issuer_rotates_in_is_fetched_once_on_its_first_token(
    issuer: JwksServer, signing_key: rsa.RSAPrivateKey, rotated_key: rsa.RSAPrivateKey
) -> None:
    url = issuer.serve("/jwks.json", {"keys": [jwk(signing_key, "k1")]})
    clock = Clock()
    cache = JwksCache(clock=clock, allow_loopback_http=True)
    verify(rules_for(url), bearer(signing_key, "k1"), "/", NOW, keys=cache)

    issuer.serve("/jwks.json", {"keys": [jwk(signing_key, "k1"), jwk(rotated_key, "k2")]})
    clock.now += 61
    for _ in range(3):
        verify(rules_for(url), bearer(rotated_key, "k2"), "/", NOW, keys=cache)

    assert issuer.requests == ["/jwks.json", "/jwks.json"]


def test_by_default_the_cache_fetches_nothing_over_http(
    issuer: JwksServer, signing_key: rsa.RSAPrivateKey
) -> None:
    url = issuer.serve("/jwks.json", {"keys": [jwk(signing_key, "k1")]})

    with pytest.raises(KeysUnavailable):
        verify(rules_for(url), bearer(signing_key, "k1"), "/", NOW, keys=JwksCache())
    with pytest.raises(JwksError, match="must be an https:// URL"):
        fetch_jwks(url)

    assert issuer.requests == []


def test_a_redirect_is_not_followed(issuer: JwksServer, signing_key: rsa.RSAPrivateKey) -> None:
    target = issuer.serve("/elsewhere.json", {"keys": [jwk(signing_key, "k1")]})
    issuer.routes["/jwks.json"] = Route(status=302, headers={"Location": target})

    with pytest.raises(JwksError, match="answered 302"):
        fetch_jwks(issuer.url("/jwks.json"), allow_loopback_http=True)

    assert issuer.requests == ["/jwks.json"]


@pytest.mark.parametrize("status", [204, 404, 500])
def test_any_answer_but_200_is_a_failed_fetch(issuer: JwksServer, status: int) -> None:
    issuer.routes["/jwks.json"] = Route(status=status, body=b'{"keys": []}')

    with pytest.raises(JwksError, match=f"answered {status}"):
        fetch_jwks(issuer.url("/jwks.json"), allow_loopback_http=True)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_jwks_larger_than_64_kib_is_refused(issuer: JwksServer, chunked: bool) -> None:
    body = b'{"keys": [], "padding": "' + b"x" * MAX_JWKS_BYTES + b'"}'
    issuer.routes["/jwks.json"] = Route(body=body, chunked=chunked)

    with pytest.raises(JwksError, match="limit"):
        fetch_jwks(issuer.url("/jwks.json"), allow_loopback_http=True)


def test_a_declared_length_over_64_kib_is_refused_before_the_body_is_read(
    issuer: JwksServer,
) -> None:
    # The server declares ten megabytes and sends none of them: nothing is waited for.
    issuer.routes["/jwks.json"] = Route(headers={"Content-Length": "10000000"}, stall_body=True)

    with pytest.raises(JwksError, match="is 10000000 bytes; the limit is 65536"):
        fetch_jwks(issuer.url("/jwks.json"), allow_loopback_http=True)


def test_a_jwks_of_exactly_64_kib_is_read_whole(issuer: JwksServer) -> None:
    head = b'{"keys": [], "padding": "'
    body = head + b"x" * (MAX_JWKS_BYTES - len(head) - 2) + b'"}'
    issuer.routes["/jwks.json"] = Route(body=body, chunked=True)

    assert fetch_jwks(issuer.url("/jwks.json"), allow_loopback_http=True) == body


def test_an_oversized_jwks_leaves_the_service_without_keys(
    issuer: JwksServer, signing_key: rsa.RSAPrivateKey
) -> None:
    keys = [jwk(signing_key, f"k{n}") for n in range(101)]
    url = issuer.serve("/jwks.json", {"keys": keys})
    cache = JwksCache(clock=Clock(), allow_loopback_http=True)

    with pytest.raises(KeysUnavailable):
        verify(rules_for(url), bearer(signing_key, "k1"), "/", NOW, keys=cache)


def test_an_issuer_that_does_not_answer_is_given_up_after_the_timeout(
    issuer: JwksServer,
) -> None:
    stall = threading.Event()
    issuer.routes["/jwks.json"] = Route(stall=stall)

    try:
        with pytest.raises(JwksError, match="cannot be fetched"):
            fetch_jwks(issuer.url("/jwks.json"), allow_loopback_http=True, timeout=0.2)
    finally:
        stall.set()


def test_an_unknown_kid_after_a_fetch_is_refused_without_another_fetch_within_a_minute(
    issuer: JwksServer, signing_key: rsa.RSAPrivateKey
) -> None:
    url = issuer.serve("/jwks.json", {"keys": [jwk(signing_key, "k1")]})
    cache = JwksCache(clock=Clock(), allow_loopback_http=True)

    for n in range(20):
        with pytest.raises(InvalidToken):
            verify(rules_for(url), bearer(signing_key, f"random-{n}"), "/", NOW, keys=cache)

    assert issuer.requests == ["/jwks.json"]


def test_a_key_served_with_its_private_half_verifies_nothing_and_fails_nothing(
    issuer: JwksServer, signing_key: rsa.RSAPrivateKey, rotated_key: rsa.RSAPrivateKey
) -> None:
    leaked = {**RSAAlgorithm.to_jwk(rotated_key, as_dict=True), "kid": "leaked"}
    url = issuer.serve("/jwks.json", {"keys": [jwk(signing_key, "k1"), leaked]})
    cache = JwksCache(clock=Clock(), allow_loopback_http=True)

    with pytest.raises(InvalidToken) as caught:
        verify(rules_for(url), bearer(rotated_key, "leaked"), "/", NOW, keys=cache)

    assert caught.value.reason == "unknown_key"
    assert verify(rules_for(url), bearer(signing_key, "k1"), "/", NOW, keys=cache).subject


# --- what a cold start imports ------------------------------------------------------------


# A gateway that admits a public and an API-key service, reading documents that name JWT
# rules too (as the registry would hand them over), and checks what that loaded.
IMPORTS_PROBE = """
import sys
import app
from chalicelib.exposure.checks import Admission, Gate
from chalicelib.exposure.document import from_json, parse_exposure
from chalicelib.exposure.keys import new_key
from chalicelib.exposure.view import GatewayView

PARTS = ("cors", "addresses", "limits", "jwt_rules", "global_limits", "tokens", "jwks")
def parts_loaded():
    return sorted(p for p in PARTS if f"chalicelib.exposure.{p}" in sys.modules)

created = new_key("ci", 0.0, None)
plain_gate = Gate()
for document, keys, headers in (
    ({"exposed": True, "auth": ["none"]}, (), {}),
    ({"exposed": True, "auth": ["api_key"]}, (created.stored,), {"X-Api-Key": created.key}),
):
    # As the gateway reads a stored document: validated when it was written.
    view = GatewayView(instances=(), exposure=from_json(document), keys=keys)
    assert isinstance(plain_gate.admit(view, "svc", "v1", "GET", headers, "203.0.113.9"), Admission)
print("plain:" + ",".join(parts_loaded()))

limited = {"service_per_second": 5}
public = parse_exposure("svc", {"exposed": True, "auth": ["none"], "rate_limits": limited})
origins = {"allow_origins": ["https://a.example"]}
keyed = parse_exposure("svc", {"exposed": True, "auth": ["api_key"], "cors": origins})
rules = {"issuer": "https://i.example", "audiences": ["a"], "jwks_url": "https://i.example/k"}
parse_exposure("svc", {"exposed": True, "auth": ["jwt"], "jwt": rules})
gate = Gate()
for exposure, keys, headers in (
    (public, (), {}),
    (keyed, (created.stored,), {"X-Api-Key": created.key}),
):
    view = GatewayView(instances=(), exposure=exposure, keys=keys)
    admitted = gate.admit(view, "svc", "v1", "GET", headers, "203.0.113.9", "/")
    assert isinstance(admitted, Admission), admitted
lazy = ("jwt", "cryptography", "chalicelib.exposure.tokens", "chalicelib.exposure.jwks")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in lazy[:2] or m in lazy[2:])
print("loaded:" + ",".join(loaded))
"""


def probe_line(probe: str, prefix: str) -> str:
    """The line starting with ``prefix`` that ``probe`` prints, run in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith(prefix)]
    return line


def test_a_gateway_serving_no_jwt_service_loads_neither_pyjwt_nor_the_token_modules() -> None:
    """The cold start of a Lambda whose services take no JWTs: importing the app, reading
    documents (one with JWT rules), and admitting public and API-key requests load neither
    PyJWT, cryptography nor the token and key set modules."""
    assert probe_line(IMPORTS_PROBE, "loaded:") == "loaded:"


def test_a_gateway_whose_services_use_no_optional_part_loads_none_of_their_modules() -> None:
    """Public and API-key services with no CORS, address list, rate limit or JWT rules: the
    modules that read those parts stay unloaded, so their import is no part of the cold
    start."""
    assert probe_line(IMPORTS_PROBE, "plain:") == "plain:"


def test_the_first_verification_loads_pyjwt_and_cryptography() -> None:
    probe = (
        "import sys\n"
        "from chalicelib.errors import InvalidToken\n"
        "from chalicelib.exposure import tokens\n"
        "from chalicelib.exposure.jwt_rules import JwtRules\n"
        "rules = JwtRules(issuer='https://i.example', audiences=('a',),"
        " jwks_json='{\"keys\": []}')\n"
        "try:\n"
        "    tokens.verify(rules, 'Bearer a.b.c', '/', 0.0)\n"
        "except InvalidToken:\n"
        "    pass\n"
        "print('loaded:', 'jwt' in sys.modules, 'cryptography' in sys.modules)\n"
    )
    assert probe_line(probe, "loaded:") == "loaded: True True"
