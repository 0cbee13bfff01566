"""Registration tokens: who may write what, and that nothing unsigned gets through."""

from __future__ import annotations

import base64
import hmac

import pytest

from chalicelib.auth import (
    MAX_TOKEN_LENGTH,
    Principal,
    bearer_token,
    issue,
    parse_keys,
    require_write,
    verify,
)
from chalicelib.errors import Forbidden, LambdaMeshError, Unauthorized

KEY = b"k3y-that-must-never-leak-0123456789"
OTHER_KEY = b"another-key-of-the-same-length-000"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def refusal(token: str, key: bytes = KEY) -> Unauthorized:
    with pytest.raises(Unauthorized) as caught:
        verify(key, token)
    return caught.value


def assert_tells_nothing_secret(error: LambdaMeshError, token: str) -> None:
    assert KEY.decode() not in error.message
    assert token not in error.message


def test_error_codes_are_stable() -> None:
    assert (Unauthorized.code, Unauthorized.status) == ("unauthorized", 401)
    assert (Forbidden.code, Forbidden.status) == ("forbidden", 403)


def test_a_service_token_verifies_as_that_service() -> None:
    principal = verify(KEY, issue(KEY, service="orders"))

    assert principal == Principal("service:orders")
    assert not principal.is_admin


def test_an_admin_token_verifies_as_admin() -> None:
    principal = verify(KEY, issue(KEY))

    assert principal == Principal("admin")
    assert principal.is_admin


def test_a_token_has_the_documented_shape() -> None:
    prefix, scope, signature = issue(KEY, service="orders").split(".")

    assert prefix == "lm1"
    assert base64.urlsafe_b64decode(scope + "==") == b"service:orders"
    assert "=" not in signature
    assert len(base64.urlsafe_b64decode(signature + "=")) == 32


def test_tokens_for_different_services_differ() -> None:
    assert issue(KEY, service="orders") != issue(KEY, service="billing")


@pytest.mark.parametrize("service", [None, "orders"])
def test_a_token_signed_with_another_key_is_unauthorized(service: str | None) -> None:
    token = issue(OTHER_KEY, service=service)

    error = refusal(token)

    assert error.message == "the bearer token is not valid"
    assert_tells_nothing_secret(error, token)


def test_swapping_in_the_admin_scope_does_not_make_a_service_token_admin() -> None:
    prefix, _, signature = issue(KEY, service="orders").split(".")
    _, admin_scope, _ = issue(KEY).split(".")
    forged = f"{prefix}.{admin_scope}.{signature}"

    assert_tells_nothing_secret(refusal(forged), forged)


def test_swapping_in_another_services_scope_is_unauthorized() -> None:
    prefix, _, signature = issue(KEY, service="orders").split(".")

    refusal(f"{prefix}.{b64(b'service:billing')}.{signature}")


def test_an_admin_signature_does_not_verify_a_service_scope() -> None:
    _, scope, _ = issue(KEY, service="orders").split(".")
    _, _, admin_signature = issue(KEY).split(".")

    refusal(f"lm1.{scope}.{admin_signature}")


def test_a_truncated_signature_is_unauthorized() -> None:
    refusal(issue(KEY, service="orders")[:-4])


@pytest.mark.parametrize(
    "token",
    [
        "",
        "lm1",
        "lm1.c2VydmljZTpvcmRlcnM",
        "lm1.a.b.c",
        "lm2." + issue(KEY).split(".", 1)[1],
        "LM1." + issue(KEY).split(".", 1)[1],
        "lm1.a.b",
        "lm1." + b64(b"\xff\xfe") + ".AAAA",
    ],
    ids=[
        "empty",
        "prefix only",
        "two parts",
        "four parts",
        "other version",
        "uppercase prefix",
        "bad base64",
        "scope not utf-8",
    ],
)
def test_malformed_tokens_are_unauthorized(token: str) -> None:
    error = refusal(token)

    assert error.message == "the bearer token is malformed"


def test_a_correctly_signed_token_longer_than_the_maximum_is_refused_unread() -> None:
    token = issue(KEY, service="s" * MAX_TOKEN_LENGTH)
    assert len(token) > MAX_TOKEN_LENGTH

    error = refusal(token)

    assert error.message == "the bearer token is malformed"


def test_verify_compares_signatures_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def recording(given: bytes, expected: bytes) -> bool:
        compared.append((given, expected))
        return original(given, expected)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    good = issue(KEY, service="orders")
    forged = issue(OTHER_KEY, service="orders")

    verify(KEY, good)
    refusal(forged)

    signature = base64.urlsafe_b64decode(good.split(".")[2] + "=")
    assert compared[0] == (signature, signature)
    assert compared[1][1] == signature
    assert compared[1][0] != signature
    assert len(compared) == 2


# The Authorization header


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def", "abc.def"),
        ("bearer abc.def", "abc.def"),
        ("BEARER abc.def", "abc.def"),
        ("  Bearer   abc.def  ", "abc.def"),
    ],
)
def test_the_bearer_token_is_taken_from_the_header(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, ""])
def test_a_missing_authorization_header_says_how_to_send_one(header: str | None) -> None:
    with pytest.raises(Unauthorized, match="Authorization: Bearer <token>"):
        bearer_token(header)


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpwYXNz", "Token abc", "Bearer", "Bearer    ", "Bearerabc", "abc"]
)
def test_another_scheme_or_an_empty_token_is_unauthorized(header: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        bearer_token(header)

    assert caught.value.message == "the Authorization header must be 'Bearer <token>'"


# Who may write


def test_a_service_principal_may_write_only_its_own_service() -> None:
    principal = Principal("service:orders")

    assert principal.can_write("orders")
    assert not principal.can_write("billing")
    assert not principal.can_write("orders-v2")
    assert not principal.can_write("")


def test_an_admin_principal_may_write_any_service() -> None:
    assert Principal("admin").can_write("orders")
    assert Principal("admin").can_write("billing")


def test_a_scope_that_merely_contains_admin_is_not_admin() -> None:
    assert not Principal("service:admin").is_admin
    assert not Principal("administrator").can_write("orders")


def test_require_write_lets_the_owner_and_admin_through() -> None:
    require_write(verify(KEY, issue(KEY, service="orders")), "orders")
    require_write(verify(KEY, issue(KEY)), "orders")


def test_require_write_forbids_another_services_token_and_names_the_service() -> None:
    token = issue(KEY, service="orders")

    with pytest.raises(Forbidden) as caught:
        require_write(verify(KEY, token), "billing")

    assert "'billing'" in caught.value.message
    assert_tells_nothing_secret(caught.value, token)


def test_a_signature_with_characters_outside_base64url_is_refused() -> None:
    key = b"k" * 32
    prefix, scope, signature = issue(key, service="orders").split(".")
    # Lenient decoders skip stray characters; the same token must not verify in two spellings.
    padded = ".".join((prefix, scope, signature[:10] + "!" + signature[10:]))

    with pytest.raises(Unauthorized):
        verify(key, padded)


# One spelling per token

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def with_part(token: str, index: int, part: str) -> str:
    parts = token.split(".")
    parts[index] = part
    return ".".join(parts)


def with_unused_bits_flipped(text: str) -> str:
    """The same bytes in another spelling: the last character's unused low bits set."""
    last = ALPHABET.index(text[-1])
    unused = {2: 0b1111, 3: 0b11}[len(text) % 4]
    assert last & unused == 0
    return text[:-1] + ALPHABET[last | unused]


@pytest.mark.parametrize("service", [None, "orders"])
@pytest.mark.parametrize(("index", "name"), [(1, "scope"), (2, "signature")])
def test_a_part_with_its_unused_bits_flipped_is_malformed(
    service: str | None, index: int, name: str
) -> None:
    token = issue(KEY, service=service)
    respelled = with_part(token, index, with_unused_bits_flipped(token.split(".")[index]))
    # The lenient decoder reads the same bytes from both spellings.
    assert base64.urlsafe_b64decode(respelled.split(".")[index] + "==") == (
        base64.urlsafe_b64decode(token.split(".")[index] + "==")
    )

    assert refusal(respelled).message == "the bearer token is malformed"


def test_a_signature_in_the_plus_slash_alphabet_is_malformed() -> None:
    token = issue(KEY, service="billing")
    signature = token.split(".")[2]
    assert "-" in signature or "_" in signature
    standard = signature.replace("-", "+").replace("_", "/")

    assert refusal(with_part(token, 2, standard)).message == "the bearer token is malformed"


def test_a_scope_in_the_plus_slash_alphabet_is_malformed() -> None:
    # "service:>?" encodes to a scope with both characters base64url spells differently.
    token = issue(KEY, service=">?")
    scope = token.split(".")[1]
    assert "-" in scope or "_" in scope
    standard = scope.replace("-", "+").replace("_", "/")

    assert refusal(with_part(token, 1, standard)).message == "the bearer token is malformed"


@pytest.mark.parametrize("service", [None, "orders"])
@pytest.mark.parametrize("index", [1, 2])
def test_a_padded_part_is_malformed(service: str | None, index: int) -> None:
    token = issue(KEY, service=service)
    part = token.split(".")[index]
    padded = part + "=" * (-len(part) % 4)
    assert padded != part

    assert refusal(with_part(token, index, padded)).message == "the bearer token is malformed"


def test_the_token_as_issued_still_verifies_after_the_canonical_check() -> None:
    for service in (None, "orders", "billing", ">?"):
        token = issue(KEY, service=service)

        assert verify(KEY, token).scope == ("admin" if service is None else f"service:{service}")


class TestKeyRotation:
    OLD = b"old-signing-key-0123456789"
    NEW = b"new-signing-key-0123456789"

    def test_tokens_of_every_listed_key_verify(self) -> None:
        keys = parse_keys(f"{self.NEW.decode()}, {self.OLD.decode()}")

        assert keys == (self.NEW, self.OLD)
        assert verify(keys, issue(self.OLD, service="orders")).scope == "service:orders"
        assert verify(keys, issue(self.NEW)).is_admin

    def test_a_token_of_a_dropped_key_is_refused(self) -> None:
        with pytest.raises(Unauthorized):
            verify(parse_keys(self.NEW.decode()), issue(self.OLD))

    @pytest.mark.parametrize("text", ["", " , ", "short", "long-enough-key-0123456789,short"])
    def test_empty_or_short_keys_are_a_configuration_error(self, text: str) -> None:
        from chalicelib.config import ConfigError

        with pytest.raises(ConfigError, match="at least 16 characters"):
            parse_keys(text)
