"""Exposure end to end: `lambdamesh dev` as deployed (nothing served undeclared), real apps and
sidecars, and the operator's `lambdamesh` commands as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.e2e.conftest import Mesh
from tests.e2e.processes import ROOT, Process, eventually, http, spawn
from tests.e2e.test_outbound import app, caller
from tests.functional.test_exposure_jwks import JwksServer, handler_for
from tests.helpers import SIGNING_KEY, admin_token, service_token

PUBLIC = {"exposed": True, "auth": ["none"]}
KEYED = {"exposed": True, "auth": ["api_key"]}
ISSUER = "https://issuer.example.com/pool-e2e"
AUDIENCE = "accounts-client"


@pytest.fixture(scope="module")
def closed_server() -> Iterator[Process]:
    """`lambdamesh dev` with the deployed default: LAMBDAMESH_EDGE_DEFAULT unset (closed)."""
    process = spawn(
        "lambdamesh-dev-closed",
        ["-m", "lambdamesh.cli", "dev", "--port", "0"],
        env={"LAMBDAMESH_SIGNING_KEY": SIGNING_KEY, "AWS_ENDPOINT_URL_DYNAMODB": ""},
    )
    process.wait_for_line(r"ready on (http://\S+)")
    yield process
    assert process.stop() == 0, process.output


@pytest.fixture
def closed_mesh(closed_server: Process) -> Iterator[Mesh]:
    created = Mesh(closed_server.wait_for_line(r"ready on (http://\S+)").group(1))
    yield created
    for process in reversed(created.processes):
        process.signal(15)
    for process in reversed(created.processes):
        process.stop()


def lambdamesh(mesh: Mesh, *args: str) -> subprocess.CompletedProcess[str]:
    """The operator's command, as a real process, with the admin token in its environment."""
    return subprocess.run(
        [sys.executable, "-m", "lambdamesh.cli", *args],
        cwd=ROOT,
        env={**os.environ, "LAMBDAMESH_URL": mesh.url, "LAMBDAMESH_TOKEN": admin_token()},
        capture_output=True,
        text=True,
        timeout=60,
    )


def expose(mesh: Mesh, service: str, document: dict[str, object], tmp_path: Path) -> None:
    path = tmp_path / f"{service}-exposure.json"
    path.write_text(json.dumps(document))
    done = lambdamesh(mesh, "exposure", "set", service, "--file", str(path))
    assert done.returncode == 0, done.stderr


def test_an_internal_service_is_hidden_from_the_internet_but_reached_by_a_sidecar(
    closed_mesh: Mesh, tmp_path: Path
) -> None:
    _, port = app(closed_mesh, "billing", "billing-0")
    closed_mesh.sidecar("billing", port, "billing-0")
    outbound = caller(closed_mesh, "orders")
    expose(closed_mesh, "orders", PUBLIC, tmp_path)
    eventually(lambda: "billing-0" in closed_mesh.live("billing"), 15, "billing registered")

    from_internet = closed_mesh.get("/api/v1/billing/v1/charges")
    unknown = closed_mesh.get("/api/v1/nosuch/v1/charges")
    through_sidecar = http("GET", f"http://127.0.0.1:{outbound}/billing/v1/charges")
    public = closed_mesh.get("/api/v1/orders/v1/items")

    assert from_internet.status == unknown.status == 404
    assert from_internet.json()["error"]["code"] == "service_not_found"
    assert from_internet.json()["error"]["message"] == "no service named 'billing' is registered"
    assert through_sidecar.status == 200
    assert through_sidecar.json()["service"] == "billing"
    assert public.status == 200


def test_an_api_key_is_created_used_and_revoked_with_the_cli(
    closed_mesh: Mesh, tmp_path: Path
) -> None:
    _, port = app(closed_mesh, "partners", "partners-0")
    closed_mesh.sidecar("partners", port, "partners-0")
    expose(closed_mesh, "partners", KEYED, tmp_path)
    eventually(lambda: "partners-0" in closed_mesh.live("partners"), 15, "partners registered")

    created = lambdamesh(closed_mesh, "keys", "create", "partners", "--consumer", "acme")
    key = created.stdout.strip()
    used = closed_mesh.get("/api/v1/partners/v1/orders", headers={"X-Api-Key": key})
    without = closed_mesh.get("/api/v1/partners/v1/orders")
    listed = lambdamesh(closed_mesh, "keys", "list", "partners")
    key_id = key.split("_")[1]
    revoked = lambdamesh(closed_mesh, "keys", "revoke", "partners", key_id)

    assert created.returncode == 0, created.stderr
    assert "not shown again" in created.stderr
    assert used.status == 200
    assert used.json()["headers"]["X-Lambdamesh-Consumer"] == "acme"
    assert without.status == 401
    assert without.headers["WWW-Authenticate"] == 'ApiKey realm="lambdamesh"'
    assert listed.returncode == 0 and key_id in listed.stdout and "acme" in listed.stdout
    assert key.removeprefix(f"lmk_{key_id}_") not in listed.stdout  # the secret may hold "_"
    assert revoked.returncode == 0, revoked.stderr
    # Revocation reaches the gateway within its cache period (1 s under lambdamesh dev).
    eventually(
        lambda: (
            closed_mesh.get("/api/v1/partners/v1/orders", headers={"X-Api-Key": key}).status == 401
        ),
        10,
        "the revoked key still opens the service",
    )


def test_a_service_token_cannot_expose_its_own_service(closed_mesh: Mesh) -> None:
    answer = closed_mesh.put(
        "/registry/services/orders/exposure", PUBLIC, token=service_token("orders")
    )

    assert answer.status == 403


def concurrently(mesh: Mesh, path: str, clients: int, each: int) -> list[int]:
    """The statuses of ``clients`` threads each sending ``each`` GETs of ``path`` at once."""
    statuses: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(each):
            status = mesh.get(path).status
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses


def test_a_rate_limit_holds_under_eight_concurrent_clients(
    closed_mesh: Mesh, tmp_path: Path
) -> None:
    """Eight clients at once through the threaded dev server: the service admits its
    bucket's capacity and, as overshoot, only what the bucket refills while they run."""
    _, port = app(closed_mesh, "limited", "limited-0")
    closed_mesh.sidecar("limited", port, "limited-0")
    rate, burst = 0.1, 60  # a bucket of 6 requests, refilled one every 10 s
    limits = {"service_per_second": rate, "burst_seconds": burst}
    expose(closed_mesh, "limited", {**PUBLIC, "rate_limits": limits}, tmp_path)
    eventually(lambda: "limited-0" in closed_mesh.live("limited"), 15, "limited registered")
    started = time.monotonic()
    statuses = concurrently(closed_mesh, "/api/v1/limited/v1/x", clients=8, each=10)
    elapsed = time.monotonic() - started

    admitted = statuses.count(200)
    assert len(statuses) == 80
    assert set(statuses) <= {200, 429}
    assert int(rate * burst) <= admitted <= int(rate * burst) + int(rate * elapsed) + 1


def test_a_global_rate_limit_admits_exactly_its_quota_under_eight_concurrent_clients(
    closed_mesh: Mesh, tmp_path: Path
) -> None:
    """The window's count is DynamoDB's (moto's server here), each request one conditional
    write: eight clients at once get exactly the quota, no overshoot, within one window."""
    _, port = app(closed_mesh, "counted", "counted-0")
    closed_mesh.sidecar("counted", port, "counted-0")
    limits = {"service_per_second": 0.1, "burst_seconds": 60, "scope": "global"}  # 6 per 60 s
    expose(closed_mesh, "counted", {**PUBLIC, "rate_limits": limits}, tmp_path)
    eventually(lambda: "counted-0" in closed_mesh.live("counted"), 15, "counted registered")
    if time.time() % 60 > 40:  # start in a fresh window: its end would admit 6 more
        time.sleep(60 - time.time() % 60)
    started = time.time()
    statuses = concurrently(closed_mesh, "/api/v1/counted/v1/x", clients=8, each=5)
    windows = int(time.time() // 60) - int(started // 60) + 1

    assert len(statuses) == 40
    assert set(statuses) <= {200, 429}
    admitted = statuses.count(200)
    assert admitted == 6 if windows == 1 else 6 <= admitted <= 6 * windows


def test_jwts_from_an_issuers_jwks_endpoint_through_lambdamesh_dev(
    closed_mesh: Mesh, tmp_path: Path
) -> None:
    """Tokens minted with PyJWT from RSA and EC keys, the keys served by a JWKS endpoint of
    the test's own on loopback: valid tokens of both kinds reach the app with their claim
    forwarded; expired, foreign, unsigned and unknown-key ones are refused, the last without
    a fetch each. (Rotation at the issuer: tests/functional/test_exposure_jwt.py.)"""
    _, port = app(closed_mesh, "accounts", "accounts-0")
    closed_mesh.sidecar("accounts", port, "accounts-0")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer = JwksServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(issuer))
    issuer.port = int(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = issuer.serve("/jwks.json", {"keys": [jwk(rsa_key, "r1"), jwk(ec_key, "e1")]})
        rules = {
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "jwks_url": url,
            "forward_claims": {"sub": "X-User-Id"},
        }
        expose(closed_mesh, "accounts", {"exposed": True, "auth": ["jwt"], "jwt": rules}, tmp_path)
        eventually(lambda: "accounts-0" in closed_mesh.live("accounts"), 15, "registered")

        def call(credentials: str) -> Any:
            return closed_mesh.get(
                "/api/v1/accounts/v1/me", headers={"Authorization": f"Bearer {credentials}"}
            )

        for key, kid, algorithm in ((rsa_key, "r1", "RS256"), (ec_key, "e1", "ES256")):
            answer = call(minted(key, kid, algorithm, sub=f"user-{kid}"))
            assert answer.status == 200, answer.body
            assert answer.json()["headers"]["X-User-Id"] == f"user-{kid}"
        for refused in (
            minted(rsa_key, "r1", "RS256", exp=time.time() - 3600),
            minted(rsa_key, "r1", "RS256", aud="someone-else"),
            minted(rotated, "r1", "RS256"),
            jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 60}, "", "none"),
        ):
            answer = call(refused)
            assert answer.status == 401, answer.body
            assert answer.json()["error"]["code"] == "invalid_token"

        # Made-up key ids cost the issuer at most one fetch a minute, not one each.
        fetches = len(issuer.requests)
        for n in range(5):
            assert call(minted(rotated, f"made-up-{n}", "RS256")).status == 401
        assert len(issuer.requests) - fetches <= 1
    finally:
        server.shutdown()
        server.server_close()


def jwk(private: Any, kid: str) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else ECAlgorithm
    return {**json.loads(algorithm.to_jwk(private.public_key())), "kid": kid, "use": "sig"}


def minted(private: Any, kid: str, algorithm: str, **claims: Any) -> str:
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "exp": time.time() + 300}
    return jwt.encode({**payload, **claims}, private, algorithm=algorithm, headers={"kid": kid})
