"""Builds the long-lived collaborators once per process and hands out the same ones after.

Nothing here runs at import: the first request of a cold start pays for it, and every warm
invocation reuses the same botocore client, connection pools and instance cache.
"""

from __future__ import annotations

from functools import cache, lru_cache

from chalicelib.auth import parse_keys
from chalicelib.balancing import WeightedRoundRobin
from chalicelib.config import MIN_SIGNING_KEY_LENGTH, Settings
from chalicelib.discovery import Discovery
from chalicelib.errors import ConfigError
from chalicelib.gateway import Gateway
from chalicelib.hosts import HostPolicy
from chalicelib.registry import Registry
from chalicelib.storage import InstanceStore
from chalicelib.upstream import UpstreamClient

PARAMETER_MAX_AGE = 300


@cache
def settings() -> Settings:
    return Settings.from_environ()


@cache
def store() -> InstanceStore:
    return InstanceStore(settings())


def policy() -> HostPolicy:
    current = settings()
    return HostPolicy(
        allow_loopback=current.allow_loopback,
        allow_private=current.allow_private,
        allowed_networks=current.allowed_networks,
    )


@cache
def registry() -> Registry:
    return Registry(store(), policy())


@cache
def gateway() -> Gateway:
    current = settings()
    return Gateway(
        Discovery(
            store(),
            ttl=current.cache_seconds,
            eject_seconds=current.eject_seconds,
            stale_seconds=current.stale_seconds,
        ),
        WeightedRoundRobin(),
        UpstreamClient(
            policy(),
            connect_timeout=current.connect_timeout,
            read_timeout=current.read_timeout,
            max_response_body=current.max_response_body,
            pool_maxsize=current.pool_maxsize,
        ),
        max_attempts=current.max_attempts,
        max_request_body=current.max_request_body,
    )


def signing_keys() -> tuple[bytes, ...]:
    """The token signing keys: from the environment, or an SSM SecureString it names.

    The parameter is read through Powertools, which keeps it for ``PARAMETER_MAX_AGE``
    seconds, so a rotated key reaches warm Lambdas without a redeploy.
    """
    current = settings()
    text = current.signing_key
    if text is None and current.signing_key_parameter:
        from aws_lambda_powertools.utilities.parameters import get_parameter

        text = get_parameter(current.signing_key_parameter, decrypt=True, max_age=PARAMETER_MAX_AGE)
    if not text:
        raise ConfigError(
            "the token signing key is not configured: set LAMBDAMESH_SIGNING_KEY (at least "
            f"{MIN_SIGNING_KEY_LENGTH} characters) or LAMBDAMESH_SIGNING_KEY_PARAMETER"
        )
    return _keys(text)


@lru_cache(maxsize=4)
def _keys(text: str) -> tuple[bytes, ...]:
    return parse_keys(text)


def reset() -> None:
    """Forget every collaborator, so tests can change the environment between cases."""
    for built in (settings, store, registry, gateway, _keys):
        built.cache_clear()
