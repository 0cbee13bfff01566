"""JWT bearer tokens of an exposed service: the rules, the check, and the key cache.

Tokens are minted here with PyJWT from keys that ``cryptography`` generates; the issuer's JWK
Set comes from an in-memory fetch and the cache's clock is a counter the test moves.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fastjsonschema
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from chalicelib.errors import (
    AmbiguousPath,
    InsufficientScope,
    InvalidToken,
    KeysUnavailable,
    MissingToken,
)
from chalicelib.exposure import jwks, jwt_rules, tokens
from chalicelib.exposure.jwks import MAX_CACHED_URLS, JwksCache, JwksError, KeySet
from chalicelib.exposure.jwt_rules import JwtRules, ScopeRule
from chalicelib.exposure.tokens import Identity, VerifiedTokens, verify

NOW = 1_700_000_000.0
ISSUER = "https://issuer.example.com/pool-1"
AUDIENCE = "orders-client"
JWKS_URL = "https://issuer.example.com/pool-1/.well-known/jwks.json"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(private: Any, kid: str | None, **members: Any) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else ECAlgorithm
    jwk: dict[str, Any] = algorithm.to_jwk(private.public_key(), as_dict=True)
    if kid is not None:
        jwk["kid"] = kid
    return {**jwk, **members}


def claims(**overrides: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "iat": int(NOW) - 10,
        "exp": int(NOW) + 300,
    }
    found.update(overrides)
    return {name: value for name, value in found.items() if value is not None}


def mint(
    private: Any, algorithm: str = "RS256", kid: str | None = "rsa-1", **overrides: Any
) -> str:
    headers = {} if kid is None else {"kid": kid}
    return jwt.encode(claims(**overrides), private, algorithm=algorithm, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return (
        f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{b64(signature)}"
    )


def inline_rules(*jwks: dict[str, Any], **overrides: Any) -> JwtRules:
    fields: dict[str, Any] = {
        "issuer": ISSUER,
        "audiences": (AUDIENCE,),
        "jwks_json": json.dumps({"keys": list(jwks)}),
    }
    fields.update(overrides)
    return JwtRules(**fields)


@dataclass
class Issuer:
    """The issuer's JWK Set endpoint, in memory: what it serves, and every fetch it saw."""

    documents: list[dict[str, Any]]
    fetches: list[str] = field(default_factory=list)
    failing: bool = False

    def fetch(self, url: str) -> bytes:
        self.fetches.append(url)
        if self.failing:
            raise JwksError("answered 503")
        return json.dumps(self.documents[-1]).encode()


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def url_rules(**overrides: Any) -> JwtRules:
    fields: dict[str, Any] = {"issuer": ISSUER, "audiences": (AUDIENCE,), "jwks_url": JWKS_URL}
    fields.update(overrides)
    return JwtRules(**fields)


def refusal(call: Callable[[], Any]) -> str:
    with pytest.raises(InvalidToken) as caught:
        call()
    return caught.value.reason


# --- the rules: schema, problems, and the document both ways ---------------------------


VALID_DOC: dict[str, Any] = {
    "issuer": ISSUER,
    "audiences": [AUDIENCE],
    "algorithms": ["RS256", "ES256"],
    "jwks_url": JWKS_URL,
    "leeway_seconds": 30,
    "scopes": [{"path_prefix": "/admin", "required": ["orders/admin"]}],
    "forward_claims": {"sub": "X-Consumer-Subject"},
    "forward_token": False,
}


def schema_refuses(doc: dict[str, Any]) -> bool:
    try:
        fastjsonschema.compile(jwt_rules.JWT_SCHEMA)(doc)
    except fastjsonschema.JsonSchemaValueException:
        return True
    return False


def test_a_complete_document_passes_the_schema_and_has_no_problems() -> None:
    assert not schema_refuses(VALID_DOC)
    assert jwt_rules.problems(VALID_DOC) == []


@pytest.mark.parametrize(
    "change",
    [
        {"algorithms": ["HS256"]},
        {"algorithms": ["none"]},
        {"algorithms": []},
        {"audiences": []},
        {"audiences": [f"client-{n}" for n in range(17)]},
        {"leeway_seconds": 301},
        {"leeway_seconds": -1},
        {"scopes": [{"path_prefix": f"/p{n}", "required": []} for n in range(33)]},
        {"scopes": [{"path_prefix": "admin", "required": []}]},
        {"scopes": [{"path_prefix": "/admin", "required": ['say "please"']}]},
        {"forward_claims": {f"claim{n}": f"X-Claim-{n}" for n in range(17)}},
        {"forward_claims": {"sub": "X Subject"}},
        {"jwks": {"keys": [{"kty": "RSA"}] * 101}},
        {"unknown": True},
    ],
)
def test_the_schema_refuses_what_no_jwt_rule_may_say(change: dict[str, Any]) -> None:
    assert schema_refuses({**VALID_DOC, **change})


def test_the_issuer_must_be_an_https_url() -> None:
    [problem] = jwt_rules.problems({**VALID_DOC, "issuer": "http://issuer.example.com"})

    assert problem == "jwt.issuer must be an https:// URL"


@pytest.mark.parametrize(
    "url",
    ["http://issuer.example.com/jwks", "https://user@issuer.example.com/jwks", "https:///jwks"],
)
def test_the_jwks_url_must_be_https_with_a_host_and_no_user(url: str) -> None:
    [problem] = jwt_rules.problems({**VALID_DOC, "jwks_url": url})

    assert problem.startswith("jwt.jwks_url ")


def test_an_http_jwks_url_on_loopback_is_allowed_only_by_the_explicit_flag() -> None:
    doc = {**VALID_DOC, "jwks_url": "http://127.0.0.1:8123/jwks.json"}

    assert jwt_rules.problems(doc) == ["jwt.jwks_url must be an https:// URL"]
    assert jwt_rules.problems(doc, allow_loopback_http=True) == []
    elsewhere = {**doc, "jwks_url": "http://10.0.0.5/jwks.json"}
    assert jwt_rules.problems(elsewhere, allow_loopback_http=True) != []


@pytest.mark.parametrize(
    "url",
    [
        "https://issuer.example.com/a b",
        "https://issuer.example.com/a\r\nX-Injected: 1",
        "https://issuer.exam\tple.com/jwks.json",
        "https://issuer.example.com/jwks\x00.json",
        "https://issuer.example.com/\u00e4",
        "https://b\u00fccher.example/jwks.json",
    ],
)
def test_a_url_must_be_printable_ascii_without_spaces(url: str) -> None:
    expected = "must be printable ASCII with no spaces: percent-encode anything else"

    assert jwt_rules.problems({**VALID_DOC, "jwks_url": url}) == [f"jwt.jwks_url {expected}"]
    assert jwt_rules.problems({**VALID_DOC, "issuer": url}) == [f"jwt.issuer {expected}"]


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("169.254.169.254", "link-local or instance-metadata"),
        ("[fd00:ec2::254]", "link-local or instance-metadata"),
        ("[fe80::1]", "link-local or instance-metadata"),
        ("[fe80::1%25eth0]", "zone id"),
        ("0.0.0.0", "unspecified"),
        ("[::]", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("[ff02::1]", "multicast"),
        ("10.0.0.5", "private"),
        ("127.0.0.1", "loopback"),
        ("[::ffff:169.254.169.254]", "link-local or instance-metadata"),
        ("2852039166", "neither an IP address nor a valid DNS name"),
        ("0xa9.0xfe.0xa9.0xfe", "neither an IP address nor a valid DNS name"),
    ],
)
def test_a_jwks_url_on_an_address_the_gateway_never_reaches_is_refused(
    host: str, reason: str
) -> None:
    [problem] = jwt_rules.problems({**VALID_DOC, "jwks_url": f"https://{host}/jwks.json"})

    assert problem.startswith("jwt.jwks_url host ")
    assert reason in problem


def test_a_jwks_url_on_a_public_address_or_a_dns_name_is_taken() -> None:
    for url in ("https://198.51.100.0.example.com/jwks", "https://8.8.8.8/jwks", JWKS_URL):
        assert jwt_rules.problems({**VALID_DOC, "jwks_url": url}) == [], url
    local = {**VALID_DOC, "jwks_url": "https://[::1]:8443/jwks"}
    assert jwt_rules.problems(local) != []
    assert jwt_rules.problems(local, allow_loopback_http=True) == []


@pytest.mark.parametrize("keys", [{}, {"jwks_url": JWKS_URL, "jwks": {"keys": [{"kty": "RSA"}]}}])
def test_exactly_one_of_jwks_url_and_jwks_is_required(keys: dict[str, Any]) -> None:
    doc = {name: value for name, value in VALID_DOC.items() if name != "jwks_url"}

    assert jwt_rules.problems({**doc, **keys}) == [
        "jwt needs exactly one of jwks_url (fetched) and jwks (the keys inline)"
    ]


def test_an_inline_jwks_without_a_usable_signature_key_is_refused(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    doc = {name: value for name, value in VALID_DOC.items() if name != "jwks_url"}
    broken = {"kty": "EC", "crv": "P-256", "kid": "no-point"}
    encryption = public_jwk(rsa_key, "enc", use="enc")

    [problem] = jwt_rules.problems({**doc, "jwks": {"keys": [broken, encryption]}})

    assert problem.startswith("jwt.jwks holds no usable signature key")
    assert jwt_rules.problems({**doc, "jwks": {"keys": [public_jwk(rsa_key, "sig")]}}) == []


def test_an_inline_jwks_holding_private_key_material_is_refused_without_quoting_it(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    doc = {name: value for name, value in VALID_DOC.items() if name != "jwks_url"}
    private = {**RSAAlgorithm.to_jwk(rsa_key, as_dict=True), "kid": "leaked"}
    secret = {"kty": "oct", "k": b64(b"shared-secret"), "kid": "hmac"}

    problems = jwt_rules.problems(
        {**doc, "jwks": {"keys": [public_jwk(rsa_key, "sig"), private, secret]}}
    )

    assert problems == [
        "jwt.jwks.keys[1] holds private key material (d, p, q, dp, dq, qi): a key set for "
        "checking signatures holds public keys only",
        "jwt.jwks.keys[2] holds private key material (k): a key set for checking signatures "
        "holds public keys only",
    ]
    assert not any(private["d"][:16] in p or secret["k"] in p for p in problems)


def test_only_the_public_members_of_inline_keys_are_kept() -> None:
    key = {"kty": "RSA", "kid": "a", "use": "sig", "alg": "RS256", "n": "x", "e": "y"}
    leaked = {**key, "d": "private-exponent", "oth": [], "k": "secret", "ext": True}
    doc = {"issuer": ISSUER, "audiences": [AUDIENCE], "jwks": {"keys": [leaked], "more": 1}}

    rules = jwt_rules.from_json(doc)

    assert jwt_rules.to_json(rules)["jwks"] == {"keys": [key]}
    assert "private-exponent" not in str(rules) and "secret" not in str(rules)


@pytest.mark.parametrize(
    "prefix",
    ["/admin/", "/a//b", "/a/./b", "/a/../b", "/%61dmin", "/%zz", "/admin;v=1", "/a\\b", "/a#b"],
)
def test_a_path_prefix_must_be_a_plain_path(prefix: str) -> None:
    doc = {**VALID_DOC, "scopes": [{"path_prefix": prefix, "required": ["x"]}]}

    [problem] = jwt_rules.problems(doc)

    assert problem.startswith("jwt.scopes[0].path_prefix ")


def test_a_path_prefix_listed_twice_is_refused() -> None:
    rule = {"path_prefix": "/admin", "required": ["x"]}

    assert jwt_rules.problems({**VALID_DOC, "scopes": [rule, rule]}) == [
        "jwt.scopes[1].path_prefix '/admin' is listed twice"
    ]


@pytest.mark.parametrize(
    "prefix", ["/admin.", "/admin./x", "/a/.../b", "/admin\uff0fx", "/a/\u2025/b", "/a\u0085b"]
)
def test_a_path_prefix_is_refused_when_upstreams_could_read_it_otherwise(prefix: str) -> None:
    doc = {**VALID_DOC, "scopes": [{"path_prefix": prefix, "required": ["x"]}]}

    [problem] = jwt_rules.problems(doc)

    assert problem.startswith("jwt.scopes[0].path_prefix ")


def test_path_prefixes_are_compared_without_case() -> None:
    upper = {"path_prefix": "/Admin", "required": ["x"]}
    lower = {"path_prefix": "/admin", "required": ["y"]}

    assert jwt_rules.problems({**VALID_DOC, "scopes": [upper]}) == []
    assert jwt_rules.problems({**VALID_DOC, "scopes": [upper, lower]}) == [
        "jwt.scopes[1].path_prefix '/admin' is listed twice"
    ]


@pytest.mark.parametrize(
    "header",
    [
        "Host",
        "Content-Length",
        "Authorization",
        "X-Forwarded-For",
        "X_Forwarded_Host",
        "X-Request-Id",
        "Connection",
        "Transfer-Encoding",
        "X-Real-IP",
        "X-Lambdamesh-Consumer",
        "Proxy-Authorization",
    ],
)
def test_a_claim_cannot_be_forwarded_as_a_header_the_gateway_owns(header: str) -> None:
    [problem] = jwt_rules.problems({**VALID_DOC, "forward_claims": {"sub": header}})

    assert "the gateway owns that header" in problem


def test_two_claims_cannot_be_forwarded_as_one_header() -> None:
    forward = {"sub": "X-Consumer", "email": "x-consumer"}

    assert jwt_rules.problems({**VALID_DOC, "forward_claims": forward}) == [
        "jwt.forward_claims names 'x-consumer' for two claims"
    ]


def test_a_document_read_and_written_keeps_its_fields_and_fills_in_defaults() -> None:
    minimal = {"issuer": ISSUER, "audiences": [AUDIENCE], "jwks_url": JWKS_URL}

    rules = jwt_rules.from_json(minimal)

    assert rules.algorithms == ("RS256", "ES256")
    assert rules.leeway_seconds == 30
    assert jwt_rules.to_json(rules) == {
        **minimal,
        "algorithms": ["RS256", "ES256"],
        "jwks": None,
        "leeway_seconds": 30,
        "scopes": [],
        "forward_claims": {},
        "forward_token": False,
    }
    assert jwt_rules.to_json(jwt_rules.from_json(VALID_DOC)) == {**VALID_DOC, "jwks": None}
    inline = {**minimal, "jwks_url": None, "jwks": {"keys": [{"kty": "RSA", "n": "x", "e": "y"}]}}
    assert jwt_rules.to_json(jwt_rules.from_json(inline))["jwks"] == inline["jwks"]


# --- verification ------------------------------------------------------------------------


def test_a_valid_rs256_token_gives_its_subject_and_claims(rsa_key: rsa.RSAPrivateKey) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))

    identity = verify(rules, f"Bearer {mint(rsa_key)}", "/orders", NOW)

    assert identity == Identity(subject="user-42", claims=claims(), headers={})


def test_a_valid_es256_token_is_accepted(ec_key: ec.EllipticCurvePrivateKey) -> None:
    rules = inline_rules(public_jwk(ec_key, "ec-1"))

    identity = verify(rules, f"bearer {mint(ec_key, 'ES256', 'ec-1')}", "/", NOW)

    assert identity.subject == "user-42"


def test_no_authorization_or_another_scheme_is_a_missing_token(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))

    for header in (None, "", "Basic dXNlcjpwYXNz", "ApiKey lmk_1_secret"):
        with pytest.raises(MissingToken) as caught:
            verify(rules, header, "/", NOW)
        assert caught.value.status == 401
        assert caught.value.code == "unauthorized"
        assert caught.value.headers() == {"WWW-Authenticate": 'Bearer realm="lambdamesh"'}


@pytest.mark.parametrize("credentials", ["Bearer", "Bearer ", "Bearer abc", "Bearer a.b.c.d"])
def test_a_bearer_credential_that_is_no_jwt_is_an_invalid_token(
    rsa_key: Any, credentials: str
) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))

    assert refusal(lambda: verify(rules, credentials, "/", NOW)) == "malformed"


def test_an_invalid_token_answers_401_with_the_standard_error_and_never_the_token(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))
    token = mint(rsa_key, exp=int(NOW) - 3600)

    with pytest.raises(InvalidToken) as caught:
        verify(rules, f"Bearer {token}", "/", NOW)

    error = caught.value
    assert (error.status, error.code, error.reason) == (401, "invalid_token", "expired")
    assert error.headers() == {
        "WWW-Authenticate": 'Bearer realm="lambdamesh", error="invalid_token"'
    }
    for part in token.split("."):
        assert part not in f"{error} {error.message} {error!r} {error.headers()}"


def test_an_expired_token_is_refused_but_within_the_leeway_accepted(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"), leeway_seconds=30)
    late = f"Bearer {mint(rsa_key, exp=int(NOW) - 20)}"

    assert verify(rules, late, "/", NOW).subject == "user-42"
    assert refusal(lambda: verify(rules, late, "/", NOW + 11)) == "expired"


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_token_not_yet_valid_is_refused_beyond_the_leeway(rsa_key: Any, claim: str) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"), leeway_seconds=30)
    early_claim: dict[str, Any] = {claim: int(NOW) + 31}
    early = f"Bearer {mint(rsa_key, **early_claim)}"

    assert refusal(lambda: verify(rules, early, "/", NOW)) == "not_yet_valid"
    assert verify(rules, early, "/", NOW + 1).subject == "user-42"


def test_a_token_without_exp_is_refused(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))

    assert refusal(lambda: verify(rules, f"Bearer {mint(rsa_key, exp=None)}", "/", NOW)) == (
        "claims"
    )


@pytest.mark.parametrize("exp", ["1700000300", True, 1e400])
def test_a_time_claim_that_is_no_finite_number_is_refused(rsa_key: Any, exp: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))
    token = jwt.encode(claims(exp=exp), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})

    assert refusal(lambda: verify(rules, f"Bearer {token}", "/", NOW)) in ("claims", "malformed")


def test_a_token_from_another_issuer_is_refused(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))
    token = mint(rsa_key, iss="https://issuer.example.com/pool-2")

    assert refusal(lambda: verify(rules, f"Bearer {token}", "/", NOW)) == "issuer"


def test_a_token_for_another_audience_is_refused(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))

    assert refusal(lambda: verify(rules, f"Bearer {mint(rsa_key, aud='other')}", "/", NOW)) == (
        "audience"
    )
    assert refusal(lambda: verify(rules, f"Bearer {mint(rsa_key, aud=None)}", "/", NOW)) == (
        "claims"
    )


def test_any_one_listed_audience_in_the_token_is_enough(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"), audiences=("web", AUDIENCE))
    token = mint(rsa_key, aud=["billing", AUDIENCE])

    assert verify(rules, f"Bearer {token}", "/", NOW).subject == "user-42"


def test_an_unsigned_token_alg_none_is_refused(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))
    token = unsigned({"alg": "none", "kid": "rsa-1"}, claims())

    assert refusal(lambda: verify(rules, f"Bearer {token}", "/", NOW)) == "algorithm"


def hs256_with_the_public_key_as_secret(private: rsa.RSAPrivateKey) -> str:
    """The algorithm-confusion attack: an HMAC whose secret is the issuer's public key PEM,
    which a verifier that takes ``alg`` from the token would check with that same key."""
    secret = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    payload = b64(json.dumps(claims()).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def test_hs256_signed_with_the_rsa_public_key_as_secret_is_refused(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))
    token = hs256_with_the_public_key_as_secret(rsa_key)

    assert refusal(lambda: verify(rules, f"Bearer {token}", "/", NOW)) == "algorithm"


def test_even_rules_that_list_hs256_find_no_key_to_check_an_hmac_with(rsa_key: Any) -> None:
    # The schema never lets HS256 in; rules built some other way still fail safe.
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"), algorithms=("HS256", "RS256"))
    token = hs256_with_the_public_key_as_secret(rsa_key)

    assert refusal(lambda: verify(rules, f"Bearer {token}", "/", NOW)) == "unknown_key"


def test_an_algorithm_that_does_not_fit_the_key_type_is_refused(rsa_key: Any, ec_key: Any) -> None:
    # ES256 is allowed, but the key named by kid is an RSA key.
    rules = inline_rules(public_jwk(rsa_key, "shared-kid"), public_jwk(ec_key, "ec-1"))
    token = mint(ec_key, "ES256", "shared-kid")

    assert refusal(lambda: verify(rules, f"Bearer {token}", "/", NOW)) == "unknown_key"


def test_a_key_with_an_alg_verifies_only_that_algorithm(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1", alg="RS256"), algorithms=("RS256", "PS256"))

    assert verify(rules, f"Bearer {mint(rsa_key)}", "/", NOW).subject == "user-42"
    token = mint(rsa_key, "PS256")
    assert refusal(lambda: verify(rules, f"Bearer {token}", "/", NOW)) == "unknown_key"


def test_an_rsa_key_without_alg_verifies_every_allowed_rsa_algorithm(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"), algorithms=("RS256", "PS256", "RS512"))

    for algorithm in ("RS256", "PS256", "RS512"):
        assert verify(rules, f"Bearer {mint(rsa_key, algorithm)}", "/", NOW).subject == "user-42"


def test_an_algorithm_the_service_does_not_allow_is_refused(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"), algorithms=("ES256",))

    assert refusal(lambda: verify(rules, f"Bearer {mint(rsa_key)}", "/", NOW)) == "algorithm"


def test_a_tampered_payload_fails_the_signature(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))
    header, _, signature = mint(rsa_key).split(".")
    forged = b64(json.dumps(claims(sub="admin")).encode())

    assert refusal(lambda: verify(rules, f"Bearer {header}.{forged}.{signature}", "/", NOW)) == (
        "signature"
    )


def test_a_token_signed_by_another_key_under_a_known_kid_fails_the_signature(
    rsa_key: Any, other_rsa_key: Any
) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))

    assert refusal(lambda: verify(rules, f"Bearer {mint(other_rsa_key)}", "/", NOW)) == (
        "signature"
    )


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_an_rsa_key_shorter_than_2048_bits_is_refused() -> None:
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    rules = inline_rules(public_jwk(short, "rsa-1"))

    assert refusal(lambda: verify(rules, f"Bearer {mint(short)}", "/", NOW)) == "key"


def test_a_token_without_kid_uses_the_one_key_of_its_type(rsa_key: Any, ec_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"), public_jwk(ec_key, "ec-1"))

    assert verify(rules, f"Bearer {mint(rsa_key, kid=None)}", "/", NOW).subject == "user-42"


def test_a_token_without_kid_is_refused_when_two_keys_fit(rsa_key: Any, other_rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"), public_jwk(other_rsa_key, "rsa-2"))

    assert refusal(lambda: verify(rules, f"Bearer {mint(rsa_key, kid=None)}", "/", NOW)) == (
        "unknown_key"
    )


def test_a_token_with_an_unknown_kid_is_refused(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))

    assert refusal(lambda: verify(rules, f"Bearer {mint(rsa_key, kid='rsa-9')}", "/", NOW)) == (
        "unknown_key"
    )


def test_a_deeply_nested_header_is_refused_as_malformed(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))
    nested = b64(("[" * 3000 + "]" * 3000).encode())

    assert refusal(lambda: verify(rules, f"Bearer {nested}.e30.", "/", NOW)) == "malformed"


# --- scopes ------------------------------------------------------------------------------


SCOPED = (
    ScopeRule("/", ("orders/read",)),
    ScopeRule("/admin", ("orders/admin",)),
    ScopeRule("/admin/health", ()),
)


@pytest.mark.parametrize(
    ("path", "needed"),
    [
        ("/orders", ("orders/read",)),
        ("/administrator", ("orders/read",)),
        ("/admin", ("orders/admin",)),
        ("/admin/users?x=1", ("orders/admin",)),
        ("/admin/health", ()),
        ("/admin/healthz", ("orders/admin",)),
        ("/%61dmin/users", ("orders/admin",)),
        ("/admin/health/../users", ("orders/admin",)),
        ("//admin//users", ("orders/admin",)),
        ("/admin;jsessionid=1/users", ("orders/admin",)),
        ("/admin%2Fusers", ("orders/admin",)),
        ("\\admin\\users", ("orders/admin",)),
    ],
)
def test_the_longest_prefix_holding_the_path_as_upstreams_read_it_names_the_scopes(
    path: str, needed: tuple[str, ...]
) -> None:
    rules = url_rules(scopes=SCOPED)

    assert jwt_rules.required_scopes(rules, path) == needed


def test_no_rule_means_no_scope_is_needed() -> None:
    rules = url_rules(scopes=(ScopeRule("/admin", ("orders/admin",)),))

    assert jwt_rules.required_scopes(rules, "/orders") is None


@pytest.mark.parametrize(
    "path",
    [
        "/ADMIN",
        "/Admin/x",
        "/admin.",
        "/admin..",
        "/admin%2E",
        "/admin%20",
        "/admin%20./x",
        "/%EF%BC%A1dmin",
        "/\uff41dmin",
        "/x/..%2fADMIN%2e/users",
    ],
)
def test_case_look_alikes_and_trailing_dots_and_spaces_do_not_escape_a_rule(path: str) -> None:
    rules = url_rules(scopes=SCOPED)

    assert jwt_rules.required_scopes(rules, path) == ("orders/admin",)


def test_a_rule_written_in_capitals_holds_the_path_in_any_case() -> None:
    rules = url_rules(scopes=(ScopeRule("/Admin", ("orders/admin",)),))

    assert jwt_rules.required_scopes(rules, "/admin/users") == ("orders/admin",)
    assert jwt_rules.required_scopes(rules, "/ADMIN") == ("orders/admin",)


@pytest.mark.parametrize(
    "path",
    [
        "/admin%00",
        "/admin%0A",
        "/admin%7F/x",
        "/admin%C2%85",
        "/admin%23",
        "/admin%3Fx",
        "/%2561dmin",
        "/a/%252e%252e/admin",
        "/admin%",
        "/admin%EF%BC%8F",
        "/admin\uff0f",
        "/a/%EF%BC%8E%EF%BC%8E/admin",
        "/a/%E2%80%A5/admin",
        "/%EF%BC%BCadmin",
        "/%C0%AFadmin",
        "/x/.../admin",
        "/x/..%20/admin",
        "/x/..;/admin",
    ],
)
def test_a_path_upstreams_could_route_elsewhere_is_refused_400_while_there_are_rules(
    path: str,
) -> None:
    with pytest.raises(AmbiguousPath) as caught:
        jwt_rules.required_scopes(url_rules(scopes=SCOPED), path)

    assert (caught.value.status, caught.value.code) == (400, "invalid_request")
    assert caught.value.headers() == {
        "WWW-Authenticate": 'Bearer realm="lambdamesh", error="invalid_request"'
    }
    assert jwt_rules.required_scopes(url_rules(), path) is None


def test_an_ambiguous_path_is_refused_to_a_token_holding_every_scope_but_only_a_valid_one(
    rsa_key: Any,
) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"), scopes=SCOPED)
    holding = f"Bearer {mint(rsa_key, scope='orders/read orders/admin')}"
    expired = f"Bearer {mint(rsa_key, scope='orders/read orders/admin', exp=int(NOW) - 60)}"

    with pytest.raises(AmbiguousPath):
        verify(rules, holding, "/%2561dmin", NOW)
    assert refusal(lambda: verify(rules, expired, "/%2561dmin", NOW)) == "expired"
    assert verify(rules, holding, "/admin", NOW).subject == "user-42"


@pytest.mark.parametrize(
    "granted",
    [
        {"scope": "orders/read orders/admin"},
        {"scp": ["orders/admin", "orders/read"]},
        {"scp": "orders/read orders/admin"},
        {"scope": "orders/read", "scp": ["orders/admin"]},
    ],
)
def test_scopes_come_from_scope_or_scp(rsa_key: Any, granted: dict[str, Any]) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"), scopes=SCOPED)
    token = mint(rsa_key, **granted)

    assert verify(rules, f"Bearer {token}", "/admin/users", NOW).subject == "user-42"


def test_a_missing_scope_answers_403_insufficient_scope_naming_what_is_needed(
    rsa_key: Any,
) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"), scopes=SCOPED)
    token = f"Bearer {mint(rsa_key, scope='orders/read')}"

    assert verify(rules, token, "/orders", NOW).subject == "user-42"
    assert verify(rules, token, "/admin/health", NOW).subject == "user-42"
    with pytest.raises(InsufficientScope) as caught:
        verify(rules, token, "/admin/users", NOW)
    error = caught.value
    assert (error.status, error.code) == (403, "insufficient_scope")
    assert error.headers() == {
        "WWW-Authenticate": (
            'Bearer realm="lambdamesh", error="insufficient_scope", scope="orders/admin"'
        )
    }


def test_a_scope_string_is_split_on_spaces_not_matched_within_words(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"), scopes=SCOPED)
    token = f"Bearer {mint(rsa_key, scope='orders/readonly orders/administrator')}"

    with pytest.raises(InsufficientScope):
        verify(rules, token, "/admin", NOW)


# --- forwarded claims --------------------------------------------------------------------


def test_forwarded_claims_become_the_named_headers(rsa_key: Any) -> None:
    forward = (
        ("sub", "X-Consumer-Subject"),
        ("groups", "X-Consumer-Groups"),
        ("tenant", "X-Tenant"),
        ("email", "X-Email"),
    )
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"), forward_claims=forward)
    token = mint(rsa_key, groups=["a", "b"], email="a@example.com")

    identity = verify(rules, f"Bearer {token}", "/", NOW)

    assert identity.headers == {
        "X-Consumer-Subject": "user-42",
        "X-Consumer-Groups": '["a","b"]',
        "X-Email": "a@example.com",
    }
    assert jwt_rules.claim_headers(rules) == tuple(header for _, header in forward)


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "caf\u00e9", "x" * 1025])
def test_a_claim_that_cannot_travel_as_one_header_line_is_left_out(
    rsa_key: Any, value: str
) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"), forward_claims=(("name", "X-Name"),))

    identity = verify(rules, f"Bearer {mint(rsa_key, name=value)}", "/", NOW)

    assert identity.headers == {}


# --- the key cache -----------------------------------------------------------------------


def test_the_cache_fetches_a_jwks_url_once_and_keeps_it_fresh_for_ten_minutes(
    rsa_key: Any,
) -> None:
    issuer = Issuer([{"keys": [public_jwk(rsa_key, "rsa-1")]}])
    clock = Clock()
    cache = JwksCache(issuer.fetch, clock)
    token = f"Bearer {mint(rsa_key)}"

    for _ in range(3):
        verify(url_rules(), token, "/", NOW, keys=cache)
    clock.now += 599
    verify(url_rules(), token, "/", NOW, keys=cache)
    assert issuer.fetches == [JWKS_URL]

    clock.now += 1
    verify(url_rules(), token, "/", NOW, keys=cache)
    assert issuer.fetches == [JWKS_URL, JWKS_URL]


def test_a_key_rotated_in_at_the_issuer_is_found_by_one_refetch(
    rsa_key: Any, other_rsa_key: Any
) -> None:
    old = public_jwk(rsa_key, "rsa-1")
    issuer = Issuer([{"keys": [old]}])
    clock = Clock()
    cache = JwksCache(issuer.fetch, clock)
    verify(url_rules(), f"Bearer {mint(rsa_key)}", "/", NOW, keys=cache)

    clock.now += 60
    issuer.documents.append({"keys": [old, public_jwk(other_rsa_key, "rsa-2")]})
    identity = verify(
        url_rules(), f"Bearer {mint(other_rsa_key, kid='rsa-2')}", "/", NOW, keys=cache
    )

    assert identity.subject == "user-42"
    assert len(issuer.fetches) == 2


def test_a_flood_of_unknown_kids_costs_at_most_one_fetch_a_minute(rsa_key: Any) -> None:
    issuer = Issuer([{"keys": [public_jwk(rsa_key, "rsa-1")]}])
    clock = Clock()
    cache = JwksCache(issuer.fetch, clock)
    verify(url_rules(), f"Bearer {mint(rsa_key)}", "/", NOW, keys=cache)

    for n in range(200):
        clock.now += 0.25  # 200 tokens over 50 seconds
        token = f"Bearer {mint(rsa_key, kid=f'made-up-{n}')}"
        assert refusal(lambda: verify(url_rules(), token, "/", NOW, keys=cache)) == "unknown_key"
    assert len(issuer.fetches) == 1  # the first fetch was under a minute ago

    clock.now += 10
    for n in range(200):
        token = f"Bearer {mint(rsa_key, kid=f'more-{n}')}"
        assert refusal(lambda: verify(url_rules(), token, "/", NOW, keys=cache)) == "unknown_key"
    assert len(issuer.fetches) == 2
    verify(url_rules(), f"Bearer {mint(rsa_key)}", "/", NOW, keys=cache)


def test_a_failed_fetch_keeps_the_old_keys_and_is_retried_a_minute_later(rsa_key: Any) -> None:
    issuer = Issuer([{"keys": [public_jwk(rsa_key, "rsa-1")]}])
    clock = Clock()
    cache = JwksCache(issuer.fetch, clock)
    token = f"Bearer {mint(rsa_key)}"
    verify(url_rules(), token, "/", NOW, keys=cache)

    issuer.failing = True
    clock.now += 600
    verify(url_rules(), token, "/", NOW, keys=cache)
    clock.now += 59
    verify(url_rules(), token, "/", NOW, keys=cache)
    assert len(issuer.fetches) == 2

    issuer.failing = False
    clock.now += 1
    verify(url_rules(), token, "/", NOW, keys=cache)
    assert len(issuer.fetches) == 3


def test_without_any_keys_the_answer_is_503_and_the_fetch_waits_a_minute(rsa_key: Any) -> None:
    issuer = Issuer([{"keys": [public_jwk(rsa_key, "rsa-1")]}], failing=True)
    clock = Clock()
    cache = JwksCache(issuer.fetch, clock)
    token = f"Bearer {mint(rsa_key)}"

    for _ in range(2):
        with pytest.raises(KeysUnavailable) as caught:
            verify(url_rules(), token, "/", NOW, keys=cache)
    assert (caught.value.status, caught.value.code) == (503, "jwks_unavailable")
    assert caught.value.headers() == {"Retry-After": "60"}
    assert len(issuer.fetches) == 1

    issuer.failing = False
    clock.now += 60
    assert verify(url_rules(), token, "/", NOW, keys=cache).subject == "user-42"


def test_a_jwks_document_that_is_no_key_set_is_a_failed_fetch(rsa_key: Any) -> None:
    issuer = Issuer([{"not": "keys"}])
    cache = JwksCache(issuer.fetch, Clock())

    with pytest.raises(KeysUnavailable):
        verify(url_rules(), f"Bearer {mint(rsa_key)}", "/", NOW, keys=cache)


def test_a_jwks_of_more_than_100_keys_is_refused_whole(rsa_key: Any) -> None:
    keys = [public_jwk(rsa_key, f"rsa-{n}") for n in range(101)]

    with pytest.raises(JwksError, match="holds 101 keys; the limit is 100"):
        KeySet.from_document({"keys": keys})
    assert KeySet.from_document({"keys": keys[:100]}).find("rsa-99", "RS256") is not None


def test_unusable_keys_in_a_jwks_are_skipped(rsa_key: Any) -> None:
    keys = [
        {"kty": "oct", "k": b64(b"secret"), "kid": "rsa-1"},
        {"kty": "RSA", "kid": "rsa-1", "n": "not-base64!", "e": "AQAB"},
        "not a key",
        public_jwk(rsa_key, "rsa-1"),
    ]

    found = KeySet.from_document({"keys": keys}).find("rsa-1", "RS256")

    assert found is not None and found.key_type == "RSA"


def test_a_fetched_key_whose_private_half_is_published_verifies_nothing(
    rsa_key: Any, other_rsa_key: Any
) -> None:
    leaked = {**RSAAlgorithm.to_jwk(other_rsa_key, as_dict=True), "kid": "leaked"}
    issuer = Issuer([{"keys": [public_jwk(rsa_key, "rsa-1"), leaked]}])
    cache = JwksCache(issuer.fetch, Clock())
    forged = f"Bearer {mint(other_rsa_key, kid='leaked')}"

    assert refusal(lambda: verify(url_rules(), forged, "/", NOW, keys=cache)) == "unknown_key"
    assert verify(url_rules(), f"Bearer {mint(rsa_key)}", "/", NOW, keys=cache).subject


def test_a_failure_of_a_key_that_pyjwt_does_not_name_is_an_invalid_token(
    rsa_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = KeySet.from_document({"keys": [public_jwk(rsa_key, "rsa-1")]})

    def unbuildable(*args: Any, **kwargs: Any) -> Any:
        raise AttributeError("RSA private key has no verify")

    monkeypatch.setattr(jwt, "PyJWK", unbuildable)

    assert refusal(lambda: keys.find("rsa-1", "RS256")) == "key"


def test_a_failure_of_the_check_that_pyjwt_does_not_name_is_an_invalid_token(
    rsa_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))
    token = f"Bearer {mint(rsa_key)}"

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise AttributeError("RSA private key has no verify")

    monkeypatch.setattr(jwt, "decode", failing)

    assert refusal(lambda: verify(rules, token, "/", NOW)) == "key"


def test_a_fetch_that_fails_with_a_value_error_is_a_failed_fetch(rsa_key: Any) -> None:
    def unsendable(url: str) -> bytes:
        raise UnicodeEncodeError("ascii", "\u00e4", 0, 1, "ordinal not in range(128)")

    cache = JwksCache(unsendable, Clock())

    with pytest.raises(KeysUnavailable):
        verify(url_rules(), f"Bearer {mint(rsa_key)}", "/", NOW, keys=cache)


def test_fetch_jwks_reports_a_url_urllib_cannot_send_as_a_jwks_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Opener:
        def open(self, *args: Any, **kwargs: Any) -> Any:
            raise UnicodeEncodeError("ascii", "\u00e4", 0, 1, "ordinal not in range(128)")

    monkeypatch.setattr(urllib.request, "build_opener", lambda *handlers: Opener())

    with pytest.raises(JwksError, match="cannot be fetched"):
        jwks.fetch_jwks(JWKS_URL)


def test_fetch_jwks_fetches_nothing_from_an_address_the_gateway_never_reaches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(urllib.request, "build_opener", pytest.fail)

    with pytest.raises(JwksError, match="link-local or instance-metadata"):
        jwks.fetch_jwks("https://169.254.169.254/latest/meta-data/")


def test_the_cache_keeps_at_most_its_bound_of_urls_dropping_the_least_recently_used(
    rsa_key: Any,
) -> None:
    issuer = Issuer([{"keys": [public_jwk(rsa_key, "rsa-1")]}])
    clock = Clock()
    cache = JwksCache(issuer.fetch, clock, max_urls=2)
    token = f"Bearer {mint(rsa_key)}"
    urls = [f"https://issuer-{n}.example.com/jwks.json" for n in range(3)]

    for url in urls:
        verify(url_rules(jwks_url=url), token, "/", NOW, keys=cache)
    verify(url_rules(jwks_url=urls[2]), token, "/", NOW, keys=cache)
    assert len(issuer.fetches) == 3
    # The first URL's keys were dropped, and it was fetched less than a minute ago.
    with pytest.raises(KeysUnavailable):
        verify(url_rules(jwks_url=urls[0]), token, "/", NOW, keys=cache)
    clock.now += 60
    verify(url_rules(jwks_url=urls[0]), token, "/", NOW, keys=cache)

    assert issuer.fetches[-1] == urls[0] and len(issuer.fetches) == 4
    assert MAX_CACHED_URLS == 128


def test_cycling_through_more_issuers_than_the_cache_holds_costs_a_fetch_a_minute_each(
    rsa_key: Any,
) -> None:
    issuer = Issuer([{"keys": [public_jwk(rsa_key, "rsa-1")]}])
    cache = JwksCache(issuer.fetch, Clock(), max_urls=2)
    garbage = f"Bearer {mint(rsa_key, kid='made-up')}"
    urls = [f"https://issuer-{n}.example.com/jwks.json" for n in range(3)]

    for n in range(99):
        with pytest.raises((InvalidToken, KeysUnavailable)):
            verify(url_rules(jwks_url=urls[n % 3]), garbage, "/", NOW, keys=cache)

    assert len(issuer.fetches) == 3


def test_the_cache_refuses_an_http_url_unless_built_for_loopback(rsa_key: Any) -> None:
    issuer = Issuer([{"keys": [public_jwk(rsa_key, "rsa-1")]}])
    local = url_rules(jwks_url="http://127.0.0.1:8123/jwks.json")
    token = f"Bearer {mint(rsa_key)}"

    with pytest.raises(KeysUnavailable):
        verify(local, token, "/", NOW, keys=JwksCache(issuer.fetch, Clock()))
    assert issuer.fetches == []

    loopback = JwksCache(issuer.fetch, Clock(), allow_loopback_http=True)
    assert verify(local, token, "/", NOW, keys=loopback).subject == "user-42"
    remote = url_rules(jwks_url="http://issuer.example.com/jwks.json")
    with pytest.raises(KeysUnavailable):
        verify(remote, token, "/", NOW, keys=loopback)


def test_concurrent_first_requests_for_one_url_share_one_fetch(rsa_key: Any) -> None:
    document = json.dumps({"keys": [public_jwk(rsa_key, "rsa-1")]}).encode()
    entered, release = threading.Event(), threading.Event()
    fetches: list[str] = []

    def slow_fetch(url: str) -> bytes:
        fetches.append(url)
        entered.set()
        release.wait(10)
        return document

    cache = JwksCache(slow_fetch, Clock())
    token = f"Bearer {mint(rsa_key)}"
    outcomes: list[object] = []

    def request() -> None:
        try:
            outcomes.append(verify(url_rules(), token, "/", NOW, keys=cache).subject)
        except Exception as exc:  # recorded, so that the test sees it
            outcomes.append(exc)

    first = threading.Thread(target=request)
    first.start()
    assert entered.wait(10)
    others = [threading.Thread(target=request) for _ in range(4)]
    for thread in others:
        thread.start()
    # The others are now waiting for the fetch under way; letting it finish lets them go.
    threading.Event().wait(0.2)
    release.set()
    for thread in [first, *others]:
        thread.join(10)

    assert outcomes == ["user-42"] * 5
    assert fetches == [JWKS_URL]


def test_inline_keys_are_parsed_once_per_document(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))
    token = f"Bearer {mint(rsa_key)}"
    jwks.inline_keys.cache_clear()

    for _ in range(3):
        verify(rules, token, "/", NOW)

    assert jwks.inline_keys.cache_info().misses == 1


# --- tokens that passed, remembered ------------------------------------------------------


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token whose signature and claims are checked, in order."""
    seen: list[str] = []
    real = tokens._decoded

    def counting(token: str, key: Any, rules: JwtRules) -> dict[str, Any]:
        seen.append(token)
        return real(token, key, rules)

    monkeypatch.setattr(tokens, "_decoded", counting)
    return seen


def test_a_token_sent_again_is_not_checked_again(rsa_key: Any, decodes: list[str]) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))
    remembered = VerifiedTokens()
    token = f"Bearer {mint(rsa_key)}"

    first = verify(rules, token, "/", NOW, verified=remembered)
    again = verify(rules, token, "/", NOW + 1, verified=remembered)

    assert len(decodes) == 1
    assert again.claims == first.claims and again.subject == "user-42"


def test_a_remembered_token_still_expires(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"), leeway_seconds=0)
    remembered = VerifiedTokens()
    token = f"Bearer {mint(rsa_key)}"
    verify(rules, token, "/", NOW, verified=remembered)

    assert refusal(lambda: verify(rules, token, "/", NOW + 300, verified=remembered)) == "expired"


def test_a_remembered_token_still_needs_each_paths_scopes(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"), scopes=(ScopeRule("/admin", ("admin",)),))
    remembered = VerifiedTokens()
    token = f"Bearer {mint(rsa_key)}"
    verify(rules, token, "/orders", NOW, verified=remembered)

    with pytest.raises(InsufficientScope):
        verify(rules, token, "/admin/users", NOW, verified=remembered)


def test_a_remembered_token_is_checked_again_when_the_rules_change(
    rsa_key: Any, decodes: list[str]
) -> None:
    jwk = public_jwk(rsa_key, "rsa-1")
    remembered = VerifiedTokens()
    token = f"Bearer {mint(rsa_key)}"
    verify(inline_rules(jwk), token, "/", NOW, verified=remembered)

    other_audience = inline_rules(jwk, audiences=("another-client",))
    assert refusal(lambda: verify(other_audience, token, "/", NOW, verified=remembered)) == (
        "audience"
    )
    assert len(decodes) == 2


def test_a_remembered_token_fails_once_its_key_leaves_the_issuers_set(
    rsa_key: Any, other_rsa_key: Any
) -> None:
    """A key set fetched again builds its keys anew, so every token is checked against it:
    one whose key was withdrawn no longer passes."""
    issuer = Issuer([{"keys": [public_jwk(rsa_key, "rsa-1")]}])
    clock = Clock()
    cache = JwksCache(issuer.fetch, clock)
    remembered = VerifiedTokens()
    token = f"Bearer {mint(rsa_key)}"
    verify(url_rules(), token, "/", NOW, keys=cache, verified=remembered)

    issuer.documents.append({"keys": [public_jwk(other_rsa_key, "rsa-2")]})
    clock.now += 600

    assert refusal(
        lambda: verify(url_rules(), token, "/", NOW, keys=cache, verified=remembered)
    ) == ("unknown_key")


def test_a_refused_token_is_not_remembered(rsa_key: Any, other_rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))
    remembered = VerifiedTokens()
    forged = f"Bearer {mint(other_rsa_key)}"

    for _ in range(2):
        assert refusal(lambda: verify(rules, forged, "/", NOW, verified=remembered)) == (
            "signature"
        )
    assert len(remembered) == 0


def test_at_most_the_bound_of_tokens_is_remembered_dropping_the_least_recently_used(
    rsa_key: Any, decodes: list[str]
) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))
    remembered = VerifiedTokens(size=2)
    first, second, third = (f"Bearer {mint(rsa_key, sub=f'user-{n}')}" for n in range(3))
    for token in (first, second, first, third):
        verify(rules, token, "/", NOW, verified=remembered)

    assert len(remembered) == 2
    verify(rules, first, "/", NOW, verified=remembered)  # kept: used after second
    verify(rules, second, "/", NOW, verified=remembered)  # dropped: checked again
    assert len(decodes) == 4


def test_a_time_claim_too_large_for_a_float_is_refused_as_a_bad_claim(rsa_key: Any) -> None:
    rules = inline_rules(public_jwk(rsa_key, "rsa-1"))

    token = f"Bearer {mint(rsa_key, exp=10**400)}"

    assert refusal(lambda: verify(rules, token, "/", NOW)) == "claims"
