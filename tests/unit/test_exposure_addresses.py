"""Per-service client address lists: the document part, its problems, and the decision."""

from __future__ import annotations

import ipaddress
from typing import Any

import fastjsonschema
import pytest

from chalicelib.exposure import addresses
from chalicelib.exposure.addresses import (
    ADDRESSES_SCHEMA,
    MAX_NETWORK_LENGTH,
    MAX_NETWORKS,
    AddressRules,
)

validate = fastjsonschema.compile(ADDRESSES_SCHEMA)


def refused_by_schema(doc: dict[str, Any]) -> bool:
    try:
        validate(doc)
    except fastjsonschema.JsonSchemaValueException:
        return True
    return False


def rules(allow: tuple[str, ...] = (), deny: tuple[str, ...] = ()) -> AddressRules:
    return addresses.from_json({"allow": list(allow), "deny": list(deny)})


# The document part


def test_the_schema_accepts_the_design_example_and_the_largest_lists() -> None:
    assert not refused_by_schema({"allow": ["203.0.113.0/24"], "deny": ["203.0.113.7/32"]})
    many = [f"10.0.{i}.0/24" for i in range(MAX_NETWORKS)]
    assert not refused_by_schema({"allow": many, "deny": many})
    assert not refused_by_schema({})


@pytest.mark.parametrize(
    "doc",
    [
        {"allowed": []},
        {"allow": [f"10.0.{i}.0/24" for i in range(MAX_NETWORKS + 1)]},
        {"deny": [f"10.0.{i}.0/24" for i in range(MAX_NETWORKS + 1)]},
        {"allow": [""]},
        {"deny": ["1" * (MAX_NETWORK_LENGTH + 1)]},
        {"allow": [10]},
        {"allow": "10.0.0.0/8"},
    ],
)
def test_the_schema_refuses_shapes_and_sizes_out_of_bounds(doc: dict[str, Any]) -> None:
    assert refused_by_schema(doc)


def test_networks_of_both_versions_and_lone_addresses_raise_no_problem() -> None:
    doc = {"allow": ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"], "deny": ["::1/128"]}
    assert addresses.problems(doc) == []


@pytest.mark.parametrize(
    "text", ["not-a-network", "10.0.0.0/33", "010.0.0.0/8", "2001:db8::/129", " 10.0.0.0/8"]
)
def test_an_unparsable_network_is_reported_with_its_value(text: str) -> None:
    assert addresses.problems({"deny": ["10.0.0.0/8", text]}) == [
        f"addresses.deny[1] {text!r} is not an IPv4 or IPv6 network in CIDR notation, such "
        "as 203.0.113.0/24 or 2001:db8::/32"
    ]


def test_host_bits_set_are_refused_with_both_readings_offered() -> None:
    assert addresses.problems({"allow": ["10.0.0.1/8"]}) == [
        "addresses.allow[0] '10.0.0.1/8' has host bits set: write 10.0.0.0/8 for the network, "
        "or 10.0.0.1/32 for the one address"
    ]


def test_ipv6_host_bits_set_are_refused_with_both_readings_offered() -> None:
    assert addresses.problems({"deny": ["2001:db8::1/32"]}) == [
        "addresses.deny[0] '2001:db8::1/32' has host bits set: write 2001:db8::/32 for the "
        "network, or 2001:db8::1/128 for the one address"
    ]


def test_an_ipv4_mapped_network_is_refused_since_no_client_would_match_it() -> None:
    [found] = addresses.problems({"allow": ["::ffff:203.0.113.0/120"]})
    assert found.startswith(
        "addresses.allow[0] '::ffff:203.0.113.0/120' is an IPv4-mapped IPv6 network"
    )
    assert found.endswith("write the IPv4 network instead")


@pytest.mark.parametrize(
    "text", ["fe80::1%eth0/128", "fe80::%eth0/64", "fe80::1%25eth0", "fe80::1%0/10"]
)
def test_a_network_with_a_zone_id_is_refused(text: str) -> None:
    for field in ("allow", "deny"):
        [found] = addresses.problems({field: [text]})

        assert found.startswith(f"addresses.{field}[0] {text!r} has a zone id")


def test_an_allowed_network_wholly_inside_a_denied_one_is_reported() -> None:
    assert addresses.problems({"allow": ["10.1.0.0/16"], "deny": ["10.0.0.0/8"]}) == [
        "addresses.allow '10.1.0.0/16' lies wholly inside deny '10.0.0.0/8', which wins: it "
        "allows nothing"
    ]


def test_an_allowed_network_equal_to_a_denied_one_is_reported() -> None:
    assert len(addresses.problems({"allow": ["2001:db8::/32"], "deny": ["2001:db8::/32"]})) == 1


@pytest.mark.parametrize(
    ("allow", "deny"),
    [
        ("10.0.0.0/8", "10.1.0.0/16"),  # a hole in the allowed network: the usual use
        ("10.0.0.0/8", "11.0.0.0/8"),
        ("2001:db8::/32", "0.0.0.0/0"),  # versions never cover each other
        ("0.0.0.0/0", "::/0"),
    ],
)
def test_a_deny_that_does_not_cover_an_allow_is_fine(allow: str, deny: str) -> None:
    assert addresses.problems({"allow": [allow], "deny": [deny]}) == []


def test_every_problem_is_reported_not_only_the_first() -> None:
    doc = {"allow": ["x", "10.0.0.1/8", "10.2.0.0/16"], "deny": ["y", "10.0.0.0/8"]}
    assert len(addresses.problems(doc)) == 4


def test_networks_are_written_back_in_their_canonical_spelling() -> None:
    given = rules(allow=("2001:DB8::/32", "198.51.100.7"), deny=("10.0.0.0/255.0.0.0",))
    assert addresses.to_json(given) == {
        "allow": ["2001:db8::/32", "198.51.100.7/32"],
        "deny": ["10.0.0.0/8"],
    }


def test_absent_lists_are_empty_and_to_json_fills_both() -> None:
    assert addresses.from_json({}) == AddressRules()
    assert addresses.to_json(addresses.from_json({})) == {"allow": [], "deny": []}


def test_a_document_round_trips_and_its_json_passes_its_own_checks() -> None:
    doc = {"allow": ["203.0.113.0/24", "2001:db8::/32"], "deny": ["203.0.113.7/32"]}
    again = addresses.to_json(addresses.from_json(doc))
    assert again == doc
    assert not refused_by_schema(again)
    assert addresses.problems(again) == []


# The decision


@pytest.mark.parametrize("client", ["203.0.113.7", "2001:db8::1", None, "", "not an address"])
def test_without_lists_every_client_is_allowed_even_an_unknown_one(client: str | None) -> None:
    assert addresses.allowed(AddressRules(), client)


def test_an_allow_list_admits_only_its_networks() -> None:
    given = rules(allow=("203.0.113.0/24", "2001:db8::/32"))
    assert addresses.allowed(given, "203.0.113.200")
    assert addresses.allowed(given, "2001:db8:1::5")
    assert not addresses.allowed(given, "198.51.100.1")
    assert not addresses.allowed(given, "2001:db9::1")


def test_deny_wins_over_allow() -> None:
    given = rules(allow=("203.0.113.0/24",), deny=("203.0.113.7/32",))
    assert not addresses.allowed(given, "203.0.113.7")
    assert addresses.allowed(given, "203.0.113.8")


def test_a_deny_list_alone_admits_everyone_else() -> None:
    given = rules(deny=("203.0.113.0/24",))
    assert not addresses.allowed(given, "203.0.113.7")
    assert addresses.allowed(given, "198.51.100.1")
    assert addresses.allowed(given, "2001:db8::1")


@pytest.mark.parametrize("client", [None, "", "garbage", "203.0.113.7:443", "203.0.113.7 "])
@pytest.mark.parametrize(
    "given",
    [rules(allow=("0.0.0.0/0", "::/0")), rules(deny=("203.0.113.0/24",))],
    ids=["allow-list", "deny-list"],
)
def test_an_unknown_client_address_is_refused_whenever_a_list_exists(
    given: AddressRules, client: str | None
) -> None:
    assert not addresses.allowed(given, client)


def test_an_ipv4_mapped_client_is_judged_as_its_ipv4_address() -> None:
    assert addresses.allowed(rules(allow=("203.0.113.0/24",)), "::ffff:203.0.113.7")
    assert not addresses.allowed(rules(deny=("203.0.113.7/32",)), "::ffff:203.0.113.7")
    assert not addresses.allowed(rules(allow=("::/0",)), "::ffff:203.0.113.7")


def test_a_client_of_one_version_never_matches_a_network_of_the_other() -> None:
    assert not addresses.allowed(rules(allow=("0.0.0.0/0",)), "2001:db8::1")
    assert addresses.allowed(rules(deny=("::/0",)), "203.0.113.7")


def test_the_client_address_of_a_mapped_ipv6_address_is_ipv4() -> None:
    assert addresses.client_address("::ffff:203.0.113.7") == ipaddress.IPv4Address("203.0.113.7")
    assert addresses.client_address("2001:db8::1") == ipaddress.IPv6Address("2001:db8::1")
    assert addresses.client_address("nope") is None
    assert addresses.client_address(None) is None
