"""A service behind JWT through the gateway, both front doors: tokens minted here with PyJWT
and RSA and EC keys, the issuer's keys served by a real HTTP server on loopback (allowed for
http because the functional settings allow loopback, as `lambdamesh dev` does)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from chalicelib.exposure import jwks
from lambdamesh.testclient import TestClient as Client
from tests.functional.conftest import Upstream, body_json
from tests.functional.test_exposure_api import closed, expose  # noqa: F401 - fixture
from tests.functional.test_exposure_jwks import JwksServer, issuer  # noqa: F401 - fixture
from tests.functional.test_gateway_api import register
from tests.helpers import admin_token, bearer

ISSUER = "https://issuer.example.com/pool-1"
AUDIENCE = "orders-client"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(private: Any, kid: str) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else ECAlgorithm
    document = json.loads(algorithm.to_jwk(private.public_key()))
    return {**document, "kid": kid, "use": "sig"}


def token(private: Any, kid: str, algorithm: str = "RS256", **claims: Any) -> str:
    now = time.time()
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "iat": now,
        "exp": now + 300,
        "scope": "orders/read",
        **claims,
    }
    kept = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(kept, private, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
def secured(
    closed: Client,  # noqa: F811
    issuer: JwksServer,  # noqa: F811
    upstreams: Callable[[str], Upstream],
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> Iterator[Client]:
    register(closed, "orders", "a", upstreams("orders").port)
    url = issuer.serve(
        "/jwks.json", {"keys": [public_jwk(rsa_key, "r1"), public_jwk(ec_key, "e1")]}
    )
    expose(
        closed,
        {
            "exposed": True,
            "auth": ["jwt"],
            "jwt": {
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "jwks_url": url,
                "scopes": [{"path_prefix": "/admin", "required": ["orders/admin"]}],
                "forward_claims": {"sub": "X-User-Id"},
            },
        },
    )
    yield closed


def call(client: Client, credentials: str | None, path: str = "/items", **headers: str) -> Any:
    if credentials is not None:
        headers["Authorization"] = f"Bearer {credentials}"
    return client.http.get(f"/api/v1/orders/v1{path}", headers=headers)


def test_a_valid_rsa_or_ec_token_reaches_the_service_with_its_claims_forwarded(
    secured: Client, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    by_rsa = call(secured, token(rsa_key, "r1"), **{"X-User-Id": "forged"})
    by_ec = call(secured, token(ec_key, "e1", "ES256"))

    assert by_rsa.status_code == by_ec.status_code == 200
    seen = {k.lower(): v for k, v in body_json(by_rsa)["headers"].items()}
    assert seen["x-user-id"] == "user-42"
    assert "authorization" not in seen


def invalid(secured: Client, credentials: str) -> None:
    answer = call(secured, credentials)
    assert answer.status_code == 401, answer.body
    assert body_json(answer)["error"]["code"] == "invalid_token"
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="lambdamesh", error="invalid_token"'


def test_expired_not_yet_valid_wrong_issuer_and_audience_are_refused(
    secured: Client, rsa_key: rsa.RSAPrivateKey
) -> None:
    now = time.time()
    invalid(secured, token(rsa_key, "r1", exp=now - 3600))
    invalid(secured, token(rsa_key, "r1", nbf=now + 3600))
    invalid(secured, token(rsa_key, "r1", iss="https://elsewhere.example.com"))
    invalid(secured, token(rsa_key, "r1", aud="someone-else"))


def test_alg_none_hs256_with_the_public_key_and_a_tampered_payload_are_refused(
    secured: Client, rsa_key: rsa.RSAPrivateKey
) -> None:
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": time.time() + 300}
    unsigned = jwt.encode(payload, "", algorithm="none", headers={"kid": "r1"})
    public = rsa_key.public_key().public_bytes(
        encoding=Encoding.PEM, format=PublicFormat.SubjectPublicKeyInfo
    )
    header, _, signature = token(rsa_key, "r1").split(".")
    forged_body = jwt.utils.base64url_encode(
        json.dumps({**payload, "sub": "admin"}).encode()
    ).decode()

    invalid(secured, unsigned)
    invalid(secured, _hs256_with(public, payload))
    invalid(secured, f"{header}.{forged_body}.{signature}")


def _hs256_with(secret: bytes, payload: dict[str, Any]) -> str:
    """HS256 signed with the public key's PEM: the classic algorithm confusion. PyJWT refuses
    to sign with a PEM as an HMAC secret, so the token is assembled by hand."""
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT","kid":"r1"}').decode()
    body = jwt.utils.base64url_encode(json.dumps(payload).encode()).decode()
    mac = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{jwt.utils.base64url_encode(mac).decode()}"


def test_no_token_is_asked_for_with_the_bearer_challenge(secured: Client) -> None:
    answer = call(secured, None)

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="lambdamesh"'


def test_a_path_needing_a_scope_the_token_lacks_is_refused_403(
    secured: Client, rsa_key: rsa.RSAPrivateKey
) -> None:
    lacking = call(secured, token(rsa_key, "r1"), path="/admin/users")
    sneaking = call(secured, token(rsa_key, "r1"), path="/public/../admin/users")
    holding = call(secured, token(rsa_key, "r1", scope="orders/admin"), path="/admin/users")

    assert lacking.status_code == sneaking.status_code == 403
    assert body_json(lacking)["error"]["code"] == "insufficient_scope"
    assert holding.status_code == 200


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ADMIN", 403),
        ("/Admin/users", 403),
        ("/admin.", 403),
        ("/admin%20", 403),
        ("/%EF%BC%A1dmin", 403),
        ("/admin%00", 400),
        ("/admin%23", 400),
        ("/%2561dmin", 400),
        ("/a/%252e%252e/admin", 400),
        ("/admin%EF%BC%8F", 400),
    ],
)
def test_no_spelling_of_a_guarded_path_escapes_its_scope_rule(
    secured: Client, rsa_key: rsa.RSAPrivateKey, path: str, status: int
) -> None:
    lacking = call(secured, token(rsa_key, "r1"), path=path)
    holding = call(secured, token(rsa_key, "r1", scope="orders/admin"), path=path)

    assert lacking.status_code == status, lacking.body
    expected = "insufficient_scope" if status == 403 else "invalid_request"
    assert body_json(lacking)["error"]["code"] == expected
    assert f'error="{expected}"' in lacking.headers["WWW-Authenticate"]
    assert holding.status_code == (200 if status == 403 else 400)


def jwt_document(**settings: Any) -> str:
    return json.dumps(
        {
            "exposed": True,
            "auth": ["jwt"],
            "jwt": {"issuer": ISSUER, "audiences": [AUDIENCE], **settings},
        }
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://issuer.example.com/\u00e4", "printable ASCII"),
        ("https://issuer.example.com/a b", "printable ASCII"),
        ("https://issuer.example.com/a\r\nX-Injected: 1", "printable ASCII"),
        ("https://issuer.exam\tple.com/jwks.json", "printable ASCII"),
        ("https://169.254.169.254/latest/meta-data/", "instance-metadata"),
        ("https://[fd00:ec2::254]/jwks.json", "instance-metadata"),
        ("https://0.0.0.0/jwks.json", "unspecified"),
        ("https://224.0.0.251/jwks.json", "multicast"),
    ],
)
def test_a_jwks_url_the_gateway_could_not_or_must_not_fetch_is_refused_when_set(
    closed: Client,  # noqa: F811
    url: str,
    reason: str,
) -> None:
    answer = closed.http.put(
        "/registry/services/orders/exposure",
        headers={"Content-Type": "application/json", **bearer(admin_token())},
        body=jwt_document(jwks_url=url),
    )

    assert answer.status_code == 400, answer.body
    assert reason in body_json(answer)["error"]["message"]


def test_inline_keys_with_private_material_are_refused_and_never_stored(
    closed: Client,  # noqa: F811
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    private = {**RSAAlgorithm.to_jwk(rsa_key, as_dict=True), "kid": "p1"}
    secret = {"kty": "oct", "k": "c3VwZXItc2VjcmV0LWhtYWMta2V5", "kid": "h1"}
    admin = {"Content-Type": "application/json", **bearer(admin_token())}

    answer = closed.http.put(
        "/registry/services/orders/exposure",
        headers=admin,
        body=jwt_document(jwks={"keys": [private, secret]}),
    )
    stored = closed.http.get("/registry/services/orders/exposure", headers=admin)

    assert answer.status_code == 400
    message = body_json(answer)["error"]["message"]
    assert "jwt.jwks.keys[0] holds private key material (d, p, q, dp, dq, qi)" in message
    assert private["d"][:16] not in answer.body.decode()
    assert secret["k"] not in answer.body.decode()
    assert stored.status_code == 404


def test_a_key_rotated_in_at_the_issuer_is_fetched_on_its_first_token(
    secured: Client,
    issuer: JwksServer,  # noqa: F811
    rsa_key: rsa.RSAPrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One fetch for the new key id. The minute between refetches, which bounds a flood of
    made-up ids, is waived here; tests/unit covers it on a fake clock."""
    monkeypatch.setattr(jwks, "REFETCH_SECONDS", 0.0)
    assert call(secured, token(rsa_key, "r1")).status_code == 200
    fetches = len(issuer.requests)
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer.serve("/jwks.json", {"keys": [public_jwk(rsa_key, "r1"), public_jwk(rotated, "r2")]})

    answer = call(secured, token(rotated, "r2"))

    assert answer.status_code == 200
    assert len(issuer.requests) == fetches + 1


def test_a_jwks_url_over_http_elsewhere_than_loopback_is_refused(closed: Client) -> None:  # noqa: F811
    answer = closed.http.put(
        "/registry/services/orders/exposure",
        headers={"Content-Type": "application/json", **bearer(admin_token())},
        body=json.dumps(
            {
                "exposed": True,
                "auth": ["jwt"],
                "jwt": {
                    "issuer": ISSUER,
                    "audiences": [AUDIENCE],
                    "jwks_url": "http://issuer.example.com/jwks.json",
                },
            }
        ),
    )

    assert answer.status_code == 400
    assert "https" in body_json(answer)["error"]["message"]


def test_no_spelling_of_a_claim_header_from_a_client_reaches_the_upstream(
    secured: Client, rsa_key: rsa.RSAPrivateKey
) -> None:
    answer = call(
        secured,
        token(rsa_key, "r1"),
        **{"X_User_Id": "root", "x-user-id": "root", "Connection": "X-User-Id"},
    )

    seen: dict[str, list[str]] = {}
    for name, value in body_json(answer)["headers"].items():
        seen.setdefault(name.lower().replace("_", "-"), []).append(value)
    assert seen["x-user-id"] == ["user-42"]


def test_tokens_without_a_subject_are_rate_limited_by_their_client(
    secured: Client,
    closed: Client,  # noqa: F811
    rsa_key: rsa.RSAPrivateKey,
    issuer: JwksServer,  # noqa: F811
) -> None:
    url = issuer.url("/jwks.json")
    expose(
        closed,
        {
            "exposed": True,
            "auth": ["jwt"],
            "jwt": {"issuer": ISSUER, "audiences": [AUDIENCE], "jwks_url": url},
            "rate_limits": {"consumer_per_second": 0.02, "burst_seconds": 50},
        },
    )
    machine = token(rsa_key, "r1", sub=None, client_id="batch-job")

    statuses = [call(closed, machine).status_code for _ in range(3)]

    assert statuses == [200, 429, 429]
