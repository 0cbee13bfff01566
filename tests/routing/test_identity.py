"""Service identities: the SPIFFE IDs the mesh issues, and which a peer's certificate proves."""

from __future__ import annotations

import pytest

from lambdamesh_routing.errors import InvalidName
from lambdamesh_routing.identity import (
    GATEWAY,
    MAX_SPIFFE_ID,
    Identity,
    check_stage,
    check_trust_domain,
    parse,
    peer_identity,
)


def test_an_identity_reads_as_trust_domain_stage_and_name() -> None:
    identity = Identity("lambdamesh", "prod", "orders")
    assert identity.uri == "spiffe://lambdamesh/prod/orders"
    assert parse(identity.uri) == identity
    assert not identity.is_gateway
    assert parse("spiffe://lambdamesh/prod/_gateway") == Identity("lambdamesh", "prod", GATEWAY)
    assert Identity("lambdamesh", "prod", GATEWAY).is_gateway


@pytest.mark.parametrize(
    "uri",
    [
        "https://lambdamesh/prod/orders",
        "SPIFFE://lambdamesh/prod/orders",
        "spiffe://lambdamesh/prod",
        "spiffe://lambdamesh/prod/orders/extra",
        "spiffe://lambdamesh/prod/",
        "spiffe://lambdamesh//orders",
        "spiffe:///prod/orders",
        "spiffe://lambdamesh/prod/Orders",
        "spiffe://lambdamesh/prod/orders?x=1",
        "spiffe://lambdamesh/prod/orders#x",
        "spiffe://lambdamesh/prod/..",
        "spiffe://lambdamesh/prod/_admin",
        "spiffe://Lambdamesh/prod/orders",
        "spiffe://user@lambdamesh/prod/orders",
        "spiffe://lambdamesh:443/prod/orders",
        "spiffe://lambdamesh/prod/orders%2f",
        "spiffe://lambdamesh/prod/" + "a" * 64,
        "spiffe://lambdamesh/prod/" + "a" * MAX_SPIFFE_ID,
    ],
)
def test_anything_the_mesh_does_not_issue_is_no_identity(uri: str) -> None:
    assert parse(uri) is None


def san(*uris: str, dns: tuple[str, ...] = ()) -> dict[str, object]:
    """A peer certificate as ``SSLSocket.getpeercert()`` gives it."""
    return {"subjectAltName": tuple(("URI", u) for u in uris) + tuple(("DNS", d) for d in dns)}


def test_a_peer_proves_the_one_identity_of_this_mesh_and_stage_its_certificate_names() -> None:
    orders = "spiffe://lambdamesh/prod/orders"
    assert peer_identity(san(orders, dns=("orders",)), "lambdamesh", "prod") == parse(orders)
    # Another stage, another mesh, or none of ours: no identity.
    assert peer_identity(san("spiffe://lambdamesh/dev/orders"), "lambdamesh", "prod") is None
    assert peer_identity(san("spiffe://other/prod/orders"), "lambdamesh", "prod") is None
    assert peer_identity(san("https://orders"), "lambdamesh", "prod") is None
    assert peer_identity(san(dns=("orders",)), "lambdamesh", "prod") is None
    assert peer_identity({}, "lambdamesh", "prod") is None
    assert peer_identity(None, "lambdamesh", "prod") is None
    # Two identities in one certificate: the registry never issues one, so it proves neither.
    both = san(orders, "spiffe://lambdamesh/prod/payments")
    assert peer_identity(both, "lambdamesh", "prod") is None


def test_stage_and_trust_domain_names_are_checked() -> None:
    assert check_stage("prod") == "prod"
    assert check_trust_domain("mesh.example.com") == "mesh.example.com"
    for bad in ("", "Prod", "a/b", "-x", "a" * 64):
        with pytest.raises(InvalidName):
            check_stage(bad)
    for bad in ("", "Mesh", "a/b", "a:1", "a" * 254):
        with pytest.raises(InvalidName):
            check_trust_domain(bad)
