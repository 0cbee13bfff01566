"""Builds the long-lived collaborators once per process and hands out the same ones after.

Nothing here runs at import: the first request of a cold start pays for it, and every warm
invocation reuses the same botocore client, connection pools and instance cache.
"""

from __future__ import annotations

from functools import cache

from chalicelib.balancing import WeightedRoundRobin
from chalicelib.config import MIN_SIGNING_KEY_LENGTH, ConfigError, Settings
from chalicelib.discovery import Discovery
from chalicelib.gateway import Gateway
from chalicelib.hosts import HostPolicy
from chalicelib.registry import Registry
from chalicelib.storage import InstanceStore
from chalicelib.upstream import UpstreamClient


@cache
def settings() -> Settings:
    return Settings.from_environ()


@cache
def store() -> InstanceStore:
    return InstanceStore(settings())


def policy() -> HostPolicy:
    current = settings()
    return HostPolicy(allow_loopback=current.allow_loopback, allow_private=current.allow_private)


@cache
def registry() -> Registry:
    return Registry(store(), policy())


@cache
def gateway() -> Gateway:
    current = settings()
    return Gateway(
        Discovery(store(), ttl=current.cache_seconds, eject_seconds=current.eject_seconds),
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


@cache
def signing_key() -> bytes:
    """The token signing key: from the environment, or an SSM SecureString it names."""
    current = settings()
    key = current.signing_key
    if key is None and current.signing_key_parameter:
        from aws_lambda_powertools.utilities.parameters import get_parameter

        key = get_parameter(current.signing_key_parameter, decrypt=True)
    if not key or len(key) < MIN_SIGNING_KEY_LENGTH:
        raise ConfigError(
            "the token signing key is not configured: set LAMBDAMESH_SIGNING_KEY (at least "
            f"{MIN_SIGNING_KEY_LENGTH} characters) or LAMBDAMESH_SIGNING_KEY_PARAMETER"
        )
    return key.encode()


def reset() -> None:
    """Forget every collaborator, so tests can change the environment between cases."""
    for built in (settings, store, registry, gateway, signing_key):
        built.cache_clear()
