"""Which upstream addresses the gateway and the sidecar's outbound port may reach: pure
decisions over plain data.

A registration names a host; the gateway, and any sidecar's outbound port, later connects to
it. Anything that would let a caller aim the Lambda or a task at its own metadata service, a
link-local or multicast address, or (unless the deployment says so) loopback and private
networks, is refused here. Both sides turn their settings into an ``AddressPolicy`` with
``address_policy`` and check them with ``misconfiguration``, so one rule holds on both paths; a
refusal names the settings as the refusing process reads them.

What a host is at all, an IP address or a DNS name, is decided here too: by the registry for
every registration, and by a sidecar for its own host before it starts.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

from lambdamesh_routing.errors import ConnectFailed, HostNotAllowed, InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_HOST_LENGTH = 253
# One label of a DNS name as the registry stores it (RFC 1123, lower case: hosts are
# lower-cased before they are read). Also the rule of service names and of an origin's host
# name labels; a JSON Schema ``pattern`` too, hence anchored and without lookbehind.
DNS_LABEL_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_LABEL = re.compile(DNS_LABEL_PATTERN)
# EC2's IPv6 instance metadata endpoint lives in the unique-local range, so "private" is
# not enough to refuse it.
_METADATA_V6 = ipaddress.ip_network("fd00:ec2::/32")
_SHARED_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
# The 6to4 relay anycast prefix (RFC 3068, deprecated by RFC 7526): no host of a deployment
# lives there, whatever Python's tables say.
_SIXTOFOUR_RELAY = ipaddress.ip_network("192.88.99.0/24")
# A last label that is a number, in any base browsers and resolvers accept, makes the whole
# name an IPv4 address to some parsers ("0x7f.1", "2130706433"): never a DNS name.
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
_LOOPBACK = "a loopback address"
_PRIVATE = "a private address"
# Raises OSError when the name does not resolve, ValueError (UnicodeError) when it cannot even
# be asked for, as socket.getaddrinfo does for a name IDNA cannot encode.
Resolver = Callable[[str, int], list[str]]


class AddressPolicy:
    """``allowed_networks``, when given, narrows everything else: with private ranges allowed
    for ECS tasks, it keeps a service token from publishing any other host of the VPC.

    Immutable: its fields are ``Final``, which mypy holds every caller to. Its methods are
    written out rather than a dataclass's, which every cold start would pay to generate.
    """

    __slots__ = ("allow_loopback", "allow_private", "allowed_networks", "settings_prefix")

    def __init__(
        self,
        allow_loopback: bool = False,
        allow_private: bool = False,
        allowed_networks: tuple[IPNetwork, ...] = (),
        settings_prefix: str = "LAMBDAMESH_",
    ) -> None:
        self.allow_loopback: Final = allow_loopback
        self.allow_private: Final = allow_private
        self.allowed_networks: Final = allowed_networks
        # How the process names the settings behind the policy, for its refusals: not part of
        # what the policy decides, so two policies that decide alike are equal.
        self.settings_prefix: Final = settings_prefix

    def _decides(self) -> tuple[bool, bool, tuple[IPNetwork, ...]]:
        """What equality and hashing compare: every field but ``settings_prefix``."""
        return self.allow_loopback, self.allow_private, self.allowed_networks

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AddressPolicy) or type(other) is not type(self):
            return NotImplemented
        return self._decides() == other._decides()

    def __hash__(self) -> int:
        return hash(self._decides())

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(allow_loopback={self.allow_loopback!r}, "
            f"allow_private={self.allow_private!r}, "
            f"allowed_networks={self.allowed_networks!r}, "
            f"settings_prefix={self.settings_prefix!r})"
        )


class Misconfiguration(NamedTuple):
    """Address settings that must not route: ``variable`` is the setting that makes them
    unsafe, ``problem`` what is wrong, worded to follow its name."""

    variable: str
    problem: str

    def __str__(self) -> str:
        return f"{self.variable} {self.problem}"


def misconfiguration(
    allow_private: bool, allowed_networks: Sequence[IPNetwork], prefix: str = "LAMBDAMESH_"
) -> Misconfiguration | None:
    """Why these settings must not route, or None when they may. ``prefix`` names the
    variables as the process reads them (``LAMBDAMESH_`` for the gateway,
    ``LAMBDAMESH_OUTBOUND_`` for the sidecar).

    Private upstreams are where ECS tasks live, but also the VPC's databases and admin
    consoles: allowing them with no network list would let any service token publish any of
    those, and have them called through the gateway or any outbound port.
    """
    if allow_private and not allowed_networks:
        return Misconfiguration(
            f"{prefix}ALLOW_PRIVATE",
            f"is true but {prefix}ALLOWED_NETWORKS names no network: set it to the tasks' "
            "subnets (CIDR blocks, comma-separated)",
        )
    return None


def address_policy(
    allow_loopback: bool,
    allow_private: bool,
    allowed_networks: Sequence[IPNetwork],
    prefix: str = "LAMBDAMESH_",
) -> AddressPolicy:
    """The policy the three address settings make. Private addresses stay refused while
    ``misconfiguration`` objects: settings that must not route never widen what is reached.
    ``prefix`` names the settings as ``misconfiguration`` takes it."""
    networks = tuple(allowed_networks)
    return AddressPolicy(
        allow_loopback=allow_loopback,
        allow_private=allow_private and misconfiguration(allow_private, networks) is None,
        allowed_networks=networks,
        settings_prefix=prefix,
    )


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo), which is where it leads."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    return address.teredo[1] if address.teredo else None


def refusal_reason(address: IPAddress, policy: AddressPolicy) -> str | None:
    """Why the gateway (or an outbound port) must not connect to ``address``, or None when
    it may."""
    # A zone id ("fe80::1%eth0") names an interface of the connecting machine, which means
    # nothing to a Lambda, and Python accepts any characters in it, line breaks included.
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return "an IPv6 address with a zone id"
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return refusal_reason(embedded, policy)
    if address.is_unspecified or address in _THIS_NETWORK:
        return "an unspecified address"
    if address.is_link_local or address in _METADATA_V6:
        return "a link-local or instance-metadata address"
    if address.is_multicast:
        return "a multicast address"
    if policy.allowed_networks and not any(address in net for net in policy.allowed_networks):
        return f"outside {policy.settings_prefix}ALLOWED_NETWORKS"
    if address.is_loopback:
        return None if policy.allow_loopback else _LOOPBACK
    # Before "private": Python counts broadcast and 240.0.0.0/4 as private too.
    if address.is_reserved or address in _SIXTOFOUR_RELAY:
        return "a reserved address"
    # Site-local IPv6 (fec0::/10) was deprecated for the unique-local range: private still.
    if address.is_private or address in _SHARED_CGNAT or _is_site_local(address):
        return None if policy.allow_private else _PRIVATE
    return None


def _naming_settings(reason: str, policy: AddressPolicy) -> str:
    """A refusal at connecting time, with the settings that would allow such an address named
    as this process reads them: the one thing an operator reading the log can change."""
    prefix = policy.settings_prefix
    if reason == _LOOPBACK:
        return f"{reason} (allowed only with {prefix}ALLOW_LOOPBACK=true)"
    if reason == _PRIVATE:
        return (
            f"{reason} (allowed only with {prefix}ALLOW_PRIVATE=true and inside "
            f"{prefix}ALLOWED_NETWORKS)"
        )
    return reason


def _is_site_local(address: IPAddress) -> bool:
    return isinstance(address, ipaddress.IPv6Address) and address.is_site_local


def parse_ip(host: str) -> IPAddress | None:
    """The address ``host`` spells, in brackets (as URLs write IPv6) or not."""
    inner = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(inner)
    except ValueError:
        return None


def is_dns_label(label: str) -> bool:
    return _LABEL.fullmatch(label) is not None


def is_dns_name(host: str) -> bool:
    if len(host) > MAX_HOST_LENGTH:
        return False
    labels = host.removesuffix(".").split(".")
    return all(is_dns_label(label) for label in labels) and not _NUMERIC_LABEL.fullmatch(labels[-1])


def is_well_formed_host(host: str) -> bool:
    """Whether ``normalize_host`` reads ``host`` as an IP address or a DNS name, before any
    policy has its say: a sidecar checks its own host by it, so that it never starts with one
    the registry would refuse as malformed."""
    candidate = host.strip().lower()
    return parse_ip(candidate) is not None or is_dns_name(candidate)


def normalize_host(host: str, policy: AddressPolicy) -> str:
    """Return the host as it will be stored, or raise why it is refused."""
    if not is_well_formed_host(host):
        raise InvalidRequest(f"host {host!r} is neither an IP address nor a valid DNS name")
    candidate = host.strip().lower()
    address = parse_ip(candidate)
    if address is not None:
        reason = refusal_reason(address, policy)
        if reason:
            raise HostNotAllowed(f"host {host!r} is {reason}, which the gateway will not reach")
        return str(address)
    name = candidate.removesuffix(".")
    if name in _LOOPBACK_NAMES and not policy.allow_loopback:
        raise HostNotAllowed(f"host {host!r} is a loopback name, which the gateway will not reach")
    return name


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def allowed_addresses(
    host: str, port: int, policy: AddressPolicy, resolver: Resolver = resolve
) -> list[str]:
    """The IPs to connect to for a stored instance, in the resolver's order, checked again
    at connecting time: a DNS name can point anywhere, and the policy may have tightened since
    the instance registered. Raises ``HostNotAllowed`` when none may be reached, naming the
    settings that refuse it, and ``ConnectFailed`` when the name does not resolve."""
    literal = parse_ip(host)
    if literal is not None:
        reason = refusal_reason(literal, policy)
        if reason:
            raise HostNotAllowed(f"upstream host {host!r} is {_naming_settings(reason, policy)}")
        return [str(literal)]
    try:
        candidates = resolver(host, port)
    except (OSError, ValueError) as exc:
        raise ConnectFailed(f"cannot resolve upstream host {host!r}: {exc}") from None
    allowed: list[str] = []
    first_refused: str | None = None
    for candidate in dict.fromkeys(candidates):
        address = parse_ip(candidate)
        reason = "no IP address" if address is None else refusal_reason(address, policy)
        if reason is None:
            allowed.append(str(address))
        elif first_refused is None:
            first_refused = f"{candidate!r} is {_naming_settings(reason, policy)}"
    if not allowed:
        raise HostNotAllowed(
            f"upstream host {host!r} resolves to no address that may be reached: "
            f"{first_refused or 'none was given'}"
        )
    return allowed
