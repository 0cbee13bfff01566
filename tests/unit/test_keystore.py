"""The key store's answers when its store fails: quick, classified, and not retried at once."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import ClientError, ConnectTimeoutError

from chalicelib.errors import ConfigError, KeyStoreUnavailable
from chalicelib.keystore import KeyStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FlakyProvider:
    """Stands in for a Powertools provider: raises what it is told, counts the reads."""

    def __init__(self) -> None:
        self.reads = 0
        self.failure: Exception | None = None

    def get(self, name: str, **options: Any) -> str:
        self.reads += 1
        if self.failure is None:
            return "k" * 32
        try:
            raise self.failure
        except Exception as exc:
            raise GetParameterError(str(exc)) from None


def store_with(provider: FlakyProvider, clock: Clock) -> KeyStore:
    return KeyStore(clock=clock, secrets=provider)


def test_a_timeout_is_answered_as_unavailable_and_not_retried_within_retry_after() -> None:
    provider, clock = FlakyProvider(), Clock()
    provider.failure = ConnectTimeoutError(endpoint_url="https://secretsmanager")
    store = store_with(provider, clock)

    with pytest.raises(KeyStoreUnavailable):
        store.secret("lambdamesh/prod/signing-key")
    provider.failure = None
    with pytest.raises(KeyStoreUnavailable):
        store.secret("lambdamesh/prod/signing-key")

    assert provider.reads == 1
    clock.now += KeyStoreUnavailable.retry_after or 0
    assert store.secret("lambdamesh/prod/signing-key") == "k" * 32
    assert provider.reads == 2


def test_a_missing_secret_is_a_configuration_error_read_again_next_time() -> None:
    provider, clock = FlakyProvider(), Clock()
    provider.failure = ClientError(
        {"Error": {"Code": "ResourceNotFoundException", "Message": "no"}}, "GetSecretValue"
    )
    store = store_with(provider, clock)

    for _ in range(2):
        with pytest.raises(ConfigError):
            store.secret("lambdamesh/prod/signing-key")

    assert provider.reads == 2


def test_a_throttled_read_is_unavailable_not_a_configuration_error() -> None:
    provider, clock = FlakyProvider(), Clock()
    provider.failure = ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "GetSecretValue"
    )

    with pytest.raises(KeyStoreUnavailable):
        store_with(provider, clock).secret("lambdamesh/prod/signing-key")


def test_reads_are_kept_for_the_configured_age() -> None:
    provider = RecordingProvider()

    KeyStore(secrets=provider).secret("lambdamesh/prod/mesh-ca", "the mesh CA")
    KeyStore(secrets=provider, max_age=2).secret("lambdamesh/prod/mesh-ca", "the mesh CA")

    assert provider.ages == [300, 2]


def test_the_wired_key_store_keeps_reads_for_lambdamesh_key_store_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chalicelib import wiring

    monkeypatch.setenv("LAMBDAMESH_KEY_STORE_SECONDS", "7")
    wiring.reset()
    try:
        provider = RecordingProvider()
        store = wiring.key_store()
        store._secrets = provider
        store.secret("lambdamesh/prod/mesh-ca", "the mesh CA")
    finally:
        wiring.reset()

    assert provider.ages == [7]


class RecordingProvider:
    def __init__(self) -> None:
        self.ages: list[int] = []

    def get(self, name: str, max_age: int, **options: Any) -> str:
        self.ages.append(max_age)
        return "text"
