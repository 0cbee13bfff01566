"""Per-service client address lists: which networks may call an exposed service.

The client address is what API Gateway or the function URL saw (``sourceIp``), never a header
a client can write. ``deny`` wins over ``allow``; an empty ``allow`` allows every address not
denied. Networks are written in CIDR notation, IPv4 or IPv6, and must name a network (no host
bits set): ``10.0.0.1/8`` is refused rather than read as ``10.0.0.0/8``, since either reading
could be the one its author meant.

Pure decisions over plain data, no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_NETWORKS = 64
# The longest IPv6 network written out in full is 43 characters; the rest is slack for
# spellings the parser accepts.
MAX_NETWORK_LENGTH = 64

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Where an IPv6 socket shows an IPv4 client (``::ffff:203.0.113.7``).
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")

_LIST: dict[str, Any] = {
    "type": "array",
    "maxItems": MAX_NETWORKS,
    "items": {"type": "string", "minLength": 1, "maxLength": MAX_NETWORK_LENGTH},
}

# The ``addresses`` part of an exposure document. Each network's form is checked by
# problems(), which can say what is wrong with it.
ADDRESSES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"allow": _LIST, "deny": _LIST},
}


@dataclass(frozen=True)
class AddressRules:
    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()


def from_json(doc: Mapping[str, Any]) -> AddressRules:
    """Rules from a document that passed ADDRESSES_SCHEMA and problems()."""
    return AddressRules(
        allow=tuple(ipaddress.ip_network(text) for text in doc.get("allow", ())),
        deny=tuple(ipaddress.ip_network(text) for text in doc.get("deny", ())),
    )


def to_json(rules: AddressRules) -> dict[str, Any]:
    """The document, every field present, each network in its canonical spelling
    (``2001:db8::/32``; a lone address as a /32 or /128)."""
    return {"allow": [str(net) for net in rules.allow], "deny": [str(net) for net in rules.deny]}


def problems(doc: Mapping[str, Any]) -> list[str]:
    """What ADDRESSES_SCHEMA cannot say about a document that passed it: each entry must be
    a network, and an ``allow`` entry wholly inside a ``deny`` one allows nothing (deny wins),
    which is a mistake rather than a rule."""
    found: list[str] = []
    parsed: dict[str, list[Network]] = {}
    for field in ("allow", "deny"):
        parsed[field] = []
        for index, text in enumerate(doc.get(field, ())):
            network, problem = parse_network(text)
            if problem:
                found.append(f"addresses.{field}[{index}] {text!r} {problem}")
            if network is not None:
                parsed[field].append(network)
    found.extend(_shadowed(parsed["allow"], parsed["deny"]))
    return found


def parse_network(text: str) -> tuple[Network | None, str | None]:
    """The network ``text`` names, and why it cannot be used (None when it can). A lone
    address is a network of one. An IPv6 zone id (``fe80::1%eth0``) names an interface of
    the machine that reads it, not a network: a client address never carries one, and
    Python takes any characters in it."""
    if "%" in text:
        return None, "has a zone id ('%'), which names an interface, not a network: leave it out"
    try:
        network = ipaddress.ip_network(text)
    except ValueError:
        return None, _unparsable(text)
    if network.version == 6 and network.subnet_of(_IPV4_MAPPED):
        return network, (
            "is an IPv4-mapped IPv6 network, which no client address matches (mapped "
            "client addresses are judged as IPv4): write the IPv4 network instead"
        )
    return network, None


def _unparsable(text: str) -> str:
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return (
            "is not an IPv4 or IPv6 network in CIDR notation, such as 203.0.113.0/24 or "
            "2001:db8::/32"
        )
    one = network.network_address.max_prefixlen
    address = text.partition("/")[0]
    return (
        f"has host bits set: write {network} for the network, or {address}/{one} for the "
        "one address"
    )


def _shadowed(allow: Iterable[Network], deny: list[Network]) -> list[str]:
    found = []
    for network in allow:
        cover = next((outer for outer in deny if _within(network, outer)), None)
        if cover is not None:
            found.append(
                f"addresses.allow {str(network)!r} lies wholly inside deny {str(cover)!r}, "
                "which wins: it allows nothing"
            )
    return found


def _within(inner: Network, outer: Network) -> bool:
    """Whether every address of ``inner`` is in ``outer`` (never across IP versions)."""
    return (
        inner.version == outer.version
        and int(outer.network_address) <= int(inner.network_address)
        and int(inner.broadcast_address) <= int(outer.broadcast_address)
    )


def allowed(rules: AddressRules, client_ip: str | None) -> bool:
    """Whether a request from ``client_ip`` may go on.

    Denied networks win; then an empty ``allow`` admits everyone else. An address that is
    missing or does not parse is refused whenever either list has entries: it can be shown
    neither to be allowed nor not to be denied, and a list is a security control, so it
    fails closed. Only with both lists empty (nothing to judge) is it let through."""
    if not rules.allow and not rules.deny:
        return True
    address = client_address(client_ip)
    if address is None:
        return False
    if any(address in network for network in rules.deny):
        return False
    return not rules.allow or any(address in network for network in rules.allow)


def client_address(text: str | None) -> Address | None:
    """The client's address, an IPv4-mapped IPv6 one (``::ffff:203.0.113.7``) as the IPv4
    address it stands for, so one IPv4 rule covers a client however its socket showed it;
    None when missing or not an address."""
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
