"""Typed settings, read from the environment once per cold start and validated there."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from chalicelib.console import parse_console_domain
from chalicelib.errors import ConfigError
from lambdamesh_routing.errors import InvalidName
from lambdamesh_routing.flags import InvalidFlag, parse_flag
from lambdamesh_routing.hosts import IPNetwork, misconfiguration
from lambdamesh_routing.identity import DEFAULT_TRUST_DOMAIN, check_stage, check_trust_domain
from lambdamesh_routing.policy import INTENTION_ACTIONS, MTLS_MODES

__all__ = ["ConfigError", "Settings"]


DEFAULT_TABLE = "lambdamesh-registry"
MIN_SIGNING_KEY_LENGTH = 16
MIB = 1024 * 1024
# Lambda takes and returns at most 6 MB, and every body crosses it base64-encoded (4/3 larger),
# so no body above about 4.4 MB can pass whatever the settings say.
MAX_BODY_LIMIT = 4_400_000
# The most instances a service may be allowed: with validation's MAX_INSTANCE_JSON each, the
# largest instance list still fits in MAX_BODY_LIMIT (and, with each instance's longest
# figures of calls too, less than 1 % over it, still in a Lambda answer).
MAX_INSTANCES_LIMIT = 1000
EDGE_DEFAULTS = ("closed", "open")
# A service certificate's life: at least a minute (tests, demos), at most a week (a stolen
# key is good until then; no revocation list is published).
MIN_MESH_CERT_SECONDS = 60
MAX_MESH_CERT_SECONDS = 7 * 24 * 3600


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    try:
        return parse_flag(environ.get(name), default)
    except InvalidFlag as exc:
        raise ConfigError(f"{name} {exc}") from None


def _number(
    environ: Mapping[str, str], name: str, default: float, low: float, high: float
) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {raw!r}")
    return value


def _named(environ: Mapping[str, str], name: str, default: str, check: Callable[[str], str]) -> str:
    value = environ.get(name) or default
    try:
        return check(value)
    except InvalidName as exc:
        raise ConfigError(f"{name}: {exc.message}") from None


def _networks(environ: Mapping[str, str], name: str) -> tuple[IPNetwork, ...]:
    raw = environ.get(name) or ""
    try:
        return tuple(ipaddress.ip_network(p.strip()) for p in raw.split(",") if p.strip())
    except ValueError as exc:
        raise ConfigError(f"{name} must be comma-separated CIDR blocks: {exc}") from None


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = (environ.get(name) or default).strip().lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {environ[name]!r}")
    return value


def _integer(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = _number(environ, name, default, low, high)
    if value != int(value):
        raise ConfigError(f"{name} must be a whole number, got {environ[name]!r}")
    return int(value)


@dataclass(frozen=True)
class Settings:
    """Everything the Lambda is told by its environment.

    Limits live here so that one place documents them and tests can lower them.
    """

    table_name: str = DEFAULT_TABLE
    region: str = "us-east-1"
    dynamodb_endpoint: str | None = None
    signing_key: str | None = None
    signing_key_parameter: str | None = None
    signing_key_secret: str | None = None
    # How long a read from the key store (the signing key, the mesh CA) is kept per
    # execution environment: how soon a rotation reaches warm Lambdas, against one store read
    # per environment this often.
    key_store_seconds: int = 300
    allow_loopback: bool = False
    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    cache_seconds: float = 1.0
    connect_timeout: float = 2.0
    read_timeout: float = 25.0
    # API Gateway waits 29 s for the integration, counting a cold start's initialisation
    # (up to 10 s on Lambda; about 0.8 s at 512 MB by make bench), which the function's own
    # time left does not:
    # 25 s leaves room for one, so the client gets the gateway's 504 rather than API
    # Gateway's.
    request_timeout: float = 25.0
    max_attempts: int = 3
    eject_seconds: float = 5.0
    stale_seconds: float = 30.0
    max_request_body: int = 4 * MIB
    max_response_body: int = 4 * MIB
    pool_maxsize: int = 10
    max_instances_per_service: int = 100
    # The console's own domain, or "function-url"; empty: no dashboard anywhere (console.py).
    console_domain: str = ""
    # What the public gateway does with a service that has no exposure document: "closed"
    # (not served: it answers as an unknown name) or "open" (served to anyone, as before
    # exposure documents existed).
    edge_default: str = "closed"
    # Service identity (mesh certificates): the mesh CA inline (PEM, for `lambdamesh dev` and
    # tests) or the Secrets Manager secret that holds it; unset: no certificates are issued.
    mesh_ca: str | None = None
    mesh_ca_secret: str | None = None
    # How long a service certificate lasts (its holder renews at half its life).
    mesh_cert_seconds: int = 24 * 3600
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    stage: str = "dev"
    # What a service's inbound ports enforce where its policy does not say: the mutual TLS
    # mode ("permissive" takes plain text too; "strict" mesh certificates only), and what a
    # call that no intention matches gets.
    mtls_default: str = "permissive"
    intentions_default: str = "allow"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            table_name=env.get("LAMBDAMESH_TABLE") or cls.table_name,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or cls.region,
            dynamodb_endpoint=env.get("AWS_ENDPOINT_URL_DYNAMODB")
            or env.get("AWS_ENDPOINT_URL")
            or None,
            signing_key=env.get("LAMBDAMESH_SIGNING_KEY") or None,
            signing_key_parameter=env.get("LAMBDAMESH_SIGNING_KEY_PARAMETER") or None,
            signing_key_secret=env.get("LAMBDAMESH_SIGNING_KEY_SECRET") or None,
            key_store_seconds=_integer(
                env, "LAMBDAMESH_KEY_STORE_SECONDS", cls.key_store_seconds, 1, 3600
            ),
            allow_loopback=_flag(env, "LAMBDAMESH_ALLOW_LOOPBACK", cls.allow_loopback),
            allow_private=_flag(env, "LAMBDAMESH_ALLOW_PRIVATE", cls.allow_private),
            allowed_networks=_networks(env, "LAMBDAMESH_ALLOWED_NETWORKS"),
            cache_seconds=_number(env, "LAMBDAMESH_CACHE_SECONDS", cls.cache_seconds, 0.0, 60.0),
            connect_timeout=_number(
                env, "LAMBDAMESH_CONNECT_TIMEOUT", cls.connect_timeout, 0.1, 30.0
            ),
            read_timeout=_number(env, "LAMBDAMESH_READ_TIMEOUT", cls.read_timeout, 0.1, 900.0),
            max_attempts=_integer(env, "LAMBDAMESH_MAX_ATTEMPTS", cls.max_attempts, 1, 10),
            eject_seconds=_number(env, "LAMBDAMESH_EJECT_SECONDS", cls.eject_seconds, 0.0, 300.0),
            stale_seconds=_number(env, "LAMBDAMESH_STALE_SECONDS", cls.stale_seconds, 0.0, 300.0),
            request_timeout=_number(
                env, "LAMBDAMESH_REQUEST_TIMEOUT", cls.request_timeout, 0.5, 900.0
            ),
            max_request_body=_integer(
                env, "LAMBDAMESH_MAX_REQUEST_BODY", cls.max_request_body, 0, MAX_BODY_LIMIT
            ),
            max_response_body=_integer(
                env, "LAMBDAMESH_MAX_RESPONSE_BODY", cls.max_response_body, 0, MAX_BODY_LIMIT
            ),
            max_instances_per_service=_integer(
                env,
                "LAMBDAMESH_MAX_INSTANCES_PER_SERVICE",
                cls.max_instances_per_service,
                1,
                MAX_INSTANCES_LIMIT,
            ),
            console_domain=parse_console_domain(env.get("LAMBDAMESH_CONSOLE_DOMAIN")),
            edge_default=_choice(env, "LAMBDAMESH_EDGE_DEFAULT", EDGE_DEFAULTS, cls.edge_default),
            mesh_ca=env.get("LAMBDAMESH_MESH_CA") or None,
            mesh_ca_secret=env.get("LAMBDAMESH_MESH_CA_SECRET") or None,
            mesh_cert_seconds=_integer(
                env,
                "LAMBDAMESH_MESH_CERT_SECONDS",
                cls.mesh_cert_seconds,
                MIN_MESH_CERT_SECONDS,
                MAX_MESH_CERT_SECONDS,
            ),
            trust_domain=_named(
                env, "LAMBDAMESH_TRUST_DOMAIN", cls.trust_domain, check_trust_domain
            ),
            stage=_named(env, "LAMBDAMESH_STAGE", cls.stage, check_stage),
            mtls_default=_choice(env, "LAMBDAMESH_MTLS_DEFAULT", MTLS_MODES, cls.mtls_default),
            intentions_default=_choice(
                env, "LAMBDAMESH_INTENTIONS_DEFAULT", INTENTION_ACTIONS, cls.intentions_default
            ),
        )

    def routing_refusal(self) -> str | None:
        """Why the gateway must route nothing with these settings, or None when it may: the
        rule the sidecar's outbound port applies to its own (``hosts.misconfiguration``)."""
        problem = misconfiguration(self.allow_private, self.allowed_networks)
        return None if problem is None else str(problem)
