"""Builds the long-lived collaborators once per process and hands out the same ones after.

Nothing here runs at import. On Lambda, ``chalicelib.lifecycle`` calls ``prime`` while the
function initialises, so the first request finds the botocore client built and the key read;
every warm invocation reuses the same client, connection pools and instance cache.
"""

from __future__ import annotations

import random
import time
from functools import cache, lru_cache
from typing import TYPE_CHECKING

from chalicelib.auth import parse_keys
from chalicelib.config import MIN_SIGNING_KEY_LENGTH, Settings
from chalicelib.discovery import Discovery
from chalicelib.errors import ConfigError, GatewayMisconfigured, LambdaMeshError
from chalicelib.exposure.checks import Gate, KeyUse
from chalicelib.exposure.document import CLOSED, OPEN
from chalicelib.gateway import Gateway
from chalicelib.keystore import KeyStore
from chalicelib.observability import logger
from chalicelib.registry import Registry
from chalicelib.storage import InstanceStore
from chalicelib.upstream import UpstreamClient
from lambdamesh_routing import hosts
from lambdamesh_routing.balancing import Strategies
from lambdamesh_routing.hosts import AddressPolicy

if TYPE_CHECKING:
    from chalicelib.certificates import CertificateIssuer
    from chalicelib.eureka.fetches import Fetches
    from chalicelib.eureka.leases import Leases
    from chalicelib.exposure.management import Exposures
    from chalicelib.mesh_ca import MeshCA
    from chalicelib.mesh_pools import MeshPools


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


def address_policy() -> AddressPolicy:
    """The address policy, made as the sidecar's outbound port makes its own; private
    addresses are refused while the settings are unsafe."""
    current = settings()
    return hosts.address_policy(
        current.allow_loopback, current.allow_private, current.allowed_networks
    )


def routing_refusal() -> str | None:
    return settings().routing_refusal()


@cache
def registry() -> Registry:
    current = settings()
    return Registry(
        store(),
        address_policy(),
        max_instances=current.max_instances_per_service,
        default_exposure=OPEN if current.edge_default == "open" else CLOSED,
        registered=lambda service: discovery().forget(service),
    )


def gateway() -> Gateway:
    """The gateway, or GatewayMisconfigured while the settings would expose the VPC."""
    if routing_refusal() is not None:
        raise GatewayMisconfigured("the gateway is misconfigured and routes nothing; see its log")
    return _gateway()


@cache
def discovery() -> Discovery:
    """The gateway's cache of service views; the routing view is read through it too."""
    current = settings()
    return Discovery(store(), ttl=current.cache_seconds, stale_seconds=current.stale_seconds)


@cache
def _gateway() -> Gateway:
    current = settings()
    return Gateway(
        discovery(),
        Strategies(),
        UpstreamClient(
            address_policy(),
            connect_timeout=current.connect_timeout,
            read_timeout=current.read_timeout,
            max_response_body=current.max_response_body,
            pool_maxsize=current.pool_maxsize,
            mesh=_mesh_pools,
        ),
        max_attempts=current.max_attempts,
        max_request_body=current.max_request_body,
        eject_seconds=current.eject_seconds,
        gate=Gate(
            default_open=current.edge_default == "open",
            key_use=KeyUse(store().touch_key),
            # A JWKS over http only where loopback upstreams are allowed: local runs.
            allow_loopback_http=current.allow_loopback,
            global_count=store().count_request,
        ),
    )


@cache
def eureka_fetches() -> Fetches:
    """Eureka's reads, through the gateway's cache. Imported on first use: a function that
    serves no Eureka client never loads the module or its XML parser."""
    from chalicelib.eureka.fetches import Fetches

    return Fetches(discovery(), store(), time.time)


def eureka_leases() -> Leases:
    from chalicelib.eureka.leases import Leases

    return Leases(registry(), eureka_fetches())


@cache
def exposures() -> Exposures:
    """The exposure documents' and API keys' management, for the operator's routes. Imported
    on first use: the gateway reads documents and keys through the store, never through it."""
    from chalicelib.exposure.management import Exposures

    return Exposures(store(), allow_loopback_http=settings().allow_loopback)


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


def certificate_issuer() -> CertificateIssuer:
    """Service certificates, signed by the mesh CA. Imported on first use, with
    ``cryptography``: a function that issues none never loads either."""
    from chalicelib.certificates import CertificateIssuer

    current = settings()
    return CertificateIssuer(
        mesh_ca,
        current.trust_domain,
        current.stage,
        current.mesh_cert_seconds,
        time.time,
    )


def _mesh_pools() -> MeshPools:
    """The gateway's pools to instances that take mutual TLS, on its own certificate, which
    it issues itself from the mesh CA. Imported at the first such call."""
    from chalicelib.gateway_identity import GatewayIdentity
    from chalicelib.mesh_pools import MeshPools

    current = settings()
    identity = GatewayIdentity(
        mesh_ca, current.trust_domain, current.stage, current.mesh_cert_seconds, time.time
    )
    return MeshPools(identity.current, current.pool_maxsize)


def mesh_ca() -> MeshCA:
    """The mesh CA: from the environment, or the secret it names, which the key store keeps
    for a few minutes, so a rotated CA reaches warm Lambdas without a redeploy."""
    from chalicelib.mesh_ca import MeshCANotConfigured

    current = settings()
    text = current.mesh_ca
    if text is None and current.mesh_ca_secret:
        text = key_store().secret(current.mesh_ca_secret, "the mesh CA")
    if not text:
        raise MeshCANotConfigured(
            "this stage has no mesh CA and issues no service certificate: set "
            "LAMBDAMESH_MESH_CA_SECRET (a Secrets Manager secret; docs/mtls.md)"
        )
    return _mesh_ca(text)


@lru_cache(maxsize=2)
def _mesh_ca(text: str) -> MeshCA:
    from chalicelib.mesh_ca import MeshCA

    return MeshCA.load(text)


@cache
def key_store() -> KeyStore:
    current = settings()
    return KeyStore(
        session=lambda: store().session(),
        region=current.region,
        max_age=current.key_store_seconds,
    )


@lru_cache(maxsize=4)
def _keys(text: str) -> tuple[bytes, ...]:
    return parse_keys(text)


def prime() -> None:
    """Do a cold start's one-time work now: read the settings, build the DynamoDB client
    and the gateway, read the signing key. Sends no request to DynamoDB. A key that cannot
    be read is logged and read again by the first request that needs it."""
    store().prime()
    registry()
    if routing_refusal() is None:
        _gateway()
    try:
        signing_keys()
    except LambdaMeshError as exc:
        logger.warning(
            "the signing key was not read at initialisation", extra={"reason": exc.message}
        )


def after_restore() -> None:
    """Make a SnapStart restore its own: new connections (the snapshot's sockets are dead),
    the key read again, and fresh randomness, so restored copies do not all pick instances
    in the same order."""
    random.seed()
    _gateway.cache_clear()
    discovery.cache_clear()
    if store.cache_info().currsize:
        store().drop_connections()
    if key_store.cache_info().currsize:
        key_store().forget()
    _keys.cache_clear()
    _mesh_ca.cache_clear()
    prime()


def reset() -> None:
    """Forget every collaborator, so tests can change the environment between cases."""
    for built in (
        settings,
        store,
        registry,
        discovery,
        _gateway,
        eureka_fetches,
        exposures,
        key_store,
        _keys,
        _mesh_ca,
    ):
        built.cache_clear()
