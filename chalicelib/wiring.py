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
from chalicelib.errors import ConfigError, GatewayMisconfigured
from chalicelib.gateway import Gateway
from chalicelib.hosts import HostPolicy
from chalicelib.keystore import KeyStore
from chalicelib.observability import logger
from chalicelib.registry import Registry
from chalicelib.storage import InstanceStore
from chalicelib.upstream import UpstreamClient


@cache
def settings() -> Settings:
    current = Settings.from_environ()
    refusal = current.routing_refusal()
    if refusal:
        logger.error("the gateway will route nothing", extra={"reason": refusal})
    return current


@cache
def store() -> InstanceStore:
    return InstanceStore(settings())


def policy() -> HostPolicy:
    """The address policy; private addresses are refused while the settings are unsafe."""
    current = settings()
    return HostPolicy(
        allow_loopback=current.allow_loopback,
        allow_private=current.allow_private and current.routing_refusal() is None,
        allowed_networks=current.allowed_networks,
    )


def routing_refusal() -> str | None:
    return settings().routing_refusal()


@cache
def registry() -> Registry:
    return Registry(store(), policy(), max_instances=settings().max_instances_per_service)


def gateway() -> Gateway:
    """The gateway, or GatewayMisconfigured while the settings would expose the VPC."""
    if routing_refusal() is not None:
        raise GatewayMisconfigured("the gateway is misconfigured and routes nothing; see its log")
    return _gateway()


@cache
def _gateway() -> Gateway:
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
    """The token signing keys: from the environment, or the secret or parameter it names.

    The key store keeps what it read for a few minutes, so a rotated key reaches warm
    Lambdas without a redeploy.
    """
    current = settings()
    text = current.signing_key
    if text is None and current.signing_key_secret:
        text = key_store().secret(current.signing_key_secret)
    elif text is None and current.signing_key_parameter:
        text = key_store().parameter(current.signing_key_parameter)
    if not text:
        raise ConfigError(
            "the token signing key is not configured: set LAMBDAMESH_SIGNING_KEY_SECRET (a "
            "Secrets Manager secret), LAMBDAMESH_SIGNING_KEY_PARAMETER (an SSM SecureString) "
            f"or LAMBDAMESH_SIGNING_KEY (at least {MIN_SIGNING_KEY_LENGTH} characters)"
        )
    return _keys(text)


@cache
def key_store() -> KeyStore:
    return KeyStore()


@lru_cache(maxsize=4)
def _keys(text: str) -> tuple[bytes, ...]:
    return parse_keys(text)


def reset() -> None:
    """Forget every collaborator, so tests can change the environment between cases."""
    for built in (settings, store, registry, _gateway, key_store, _keys):
        built.cache_clear()
