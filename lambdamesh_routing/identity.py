"""Service identities: the SPIFFE ID a mesh certificate names, and what a peer's certificate
proves. One rule for the registry, which issues certificates, and the sidecar, which checks
its peers' (the standard library's ``ssl`` gives a peer certificate's URI names after the
handshake; it checks host names only, which an identity is not).

An identity reads ``spiffe://<trust domain>/<stage>/<service>``: the trust domain names the
mesh (``lambdamesh`` unless the operator picks another), the stage keeps a dev stage's
certificates from passing in prod even where both stages trust one CA. The gateway's identity
is ``spiffe://<trust domain>/<stage>/_gateway``: ``_`` is in no service name, so no service's
certificate can pass as the gateway's.

See https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md for the form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from lambdamesh_routing import hosts
from lambdamesh_routing.errors import InvalidName

SCHEME = "spiffe://"
DEFAULT_TRUST_DOMAIN = "lambdamesh"
GATEWAY = "_gateway"
# SPIFFE's trust domain characters (lower case letters, digits, '.', '-', '_'), at most a
# DNS name's length; a stage is one DNS label, as a service name is.
TRUST_DOMAIN_PATTERN = r"^[a-z0-9._-]{1,253}$"
TRUST_DOMAIN_RULE = re.compile(TRUST_DOMAIN_PATTERN)
LABEL_RULE = re.compile(hosts.DNS_LABEL_PATTERN)
# One URI name in a certificate the mesh accepts; longer ones are no identity it issued.
MAX_SPIFFE_ID = 2048


class Identity(NamedTuple):
    trust_domain: str
    stage: str
    name: str
    """A service's name, or ``GATEWAY``."""

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.trust_domain}/{self.stage}/{self.name}"

    @property
    def is_gateway(self) -> bool:
        return self.name == GATEWAY


def check_trust_domain(value: str) -> str:
    if not TRUST_DOMAIN_RULE.fullmatch(value):
        raise InvalidName(
            f"trust domain {value[:80]!r} is not valid: use 1-253 characters of a-z, 0-9, "
            "'.', '-' and '_'"
        )
    return value


def check_stage(value: str) -> str:
    if not LABEL_RULE.fullmatch(value):
        raise InvalidName(
            f"stage {value[:80]!r} is not valid: use 1-63 characters of a-z, 0-9 and '-'"
        )
    return value


def parse(uri: str) -> Identity | None:
    """The identity a URI names, or None for anything that is not one the mesh issues: another
    scheme, a query or fragment, a dot segment, an empty or extra segment, a name no service
    may have. Exact and case-sensitive, as SPIFFE IDs compare."""
    if len(uri) > MAX_SPIFFE_ID or not uri.startswith(SCHEME):
        return None
    parts = uri[len(SCHEME) :].split("/")
    if len(parts) != 3:
        return None
    trust_domain, stage, name = parts
    if not TRUST_DOMAIN_RULE.fullmatch(trust_domain) or not LABEL_RULE.fullmatch(stage):
        return None
    if name != GATEWAY and not LABEL_RULE.fullmatch(name):
        return None
    return Identity(trust_domain, stage, name)


def peer_identities(peer_certificate: Mapping[str, Any] | None) -> list[str]:
    """The URI names in a peer certificate as ``ssl.SSLSocket.getpeercert()`` gives them."""
    if not peer_certificate:
        return []
    names = peer_certificate.get("subjectAltName") or ()
    return [value for kind, value in names if kind == "URI"]


def peer_identity(
    peer_certificate: Mapping[str, Any] | None, trust_domain: str, stage: str
) -> Identity | None:
    """The one identity of this mesh and stage the peer's certificate names, or None when it
    names none, or more than one (a certificate the registry issues names exactly one)."""
    found = [
        identity
        for identity in map(parse, peer_identities(peer_certificate))
        if identity is not None
    ]
    if len(found) != 1:
        return None
    identity = found[0]
    if identity.trust_domain != trust_domain or identity.stage != stage:
        return None
    return identity
