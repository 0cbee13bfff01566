"""Which hosts the gateway may be aimed at: refused, allowed by policy, or allowed always."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Sequence

import pytest

from chalicelib import wiring
from chalicelib.errors import BadRequest, HostNotAllowed, InvalidRequest
from chalicelib.upstream import UpstreamClient
from lambdamesh_routing import hosts
from lambdamesh_routing.errors import ConnectFailed
from lambdamesh_routing.hosts import (
    MAX_HOST_LENGTH,
    AddressPolicy,
    address_policy,
    allowed_addresses,
    misconfiguration,
    normalize_host,
    refusal_reason,
)
from lambdamesh_sidecar.outbound_settings import OutboundSettings

STRICT = AddressPolicy()
PERMISSIVE = AddressPolicy(allow_loopback=True, allow_private=True)

ALWAYS_REFUSED = [
    "169.254.169.254",  # EC2 instance metadata
    "169.254.170.2",  # ECS task metadata and credentials
    "fe80::1",
    "fd00:ec2::254",  # EC2 IPv6 instance metadata, inside the unique-local range
    "::ffff:169.254.169.254",
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "ff02::1",
]
LOOPBACK = ["127.0.0.1", "127.8.9.10", "::1"]
PRIVATE = ["10.0.0.1", "172.16.0.1", "172.31.255.254", "192.168.1.1", "fc00::1", "100.64.0.1"]
PUBLIC = ["8.8.8.8", "52.95.110.1", "2600:1f18::1"]


def test_error_codes_are_stable() -> None:
    assert (HostNotAllowed.code, HostNotAllowed.status) == ("host_not_allowed", 400)
    assert (InvalidRequest.code, InvalidRequest.status) == ("invalid_request", 400)
    assert issubclass(HostNotAllowed, BadRequest)


@pytest.mark.parametrize("host", ALWAYS_REFUSED)
@pytest.mark.parametrize("policy", [STRICT, PERMISSIVE], ids=["strict", "permissive"])
def test_metadata_link_local_unspecified_and_multicast_are_refused_whatever_the_policy(
    host: str, policy: AddressPolicy
) -> None:
    assert refusal_reason(ipaddress.ip_address(host), policy) is not None
    with pytest.raises(HostNotAllowed) as caught:
        normalize_host(host, policy)
    assert host in caught.value.message


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("169.254.169.254", "link-local or instance-metadata"),
        ("fd00:ec2::254", "link-local or instance-metadata"),
        ("::ffff:169.254.169.254", "link-local or instance-metadata"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("100.64.0.1", "private"),
    ],
)
def test_the_refusal_says_what_kind_of_address_it_is(host: str, reason: str) -> None:
    assert reason in (refusal_reason(ipaddress.ip_address(host), STRICT) or "")


def test_an_ipv4_mapped_ipv6_address_is_judged_as_the_ipv4_address_it_carries() -> None:
    mapped = ipaddress.ip_address("::ffff:10.0.0.1")

    assert refusal_reason(mapped, STRICT) == "a private address"
    assert refusal_reason(mapped, AddressPolicy(allow_private=True)) is None


@pytest.mark.parametrize("host", [*LOOPBACK, "localhost", "LocalHost", "localhost."])
def test_loopback_is_refused_unless_the_policy_allows_it(host: str) -> None:
    with pytest.raises(HostNotAllowed, match="loopback"):
        normalize_host(host, STRICT)
    with pytest.raises(HostNotAllowed):
        normalize_host(host, AddressPolicy(allow_private=True))

    assert normalize_host(host, AddressPolicy(allow_loopback=True)) == host.lower().rstrip(".")


@pytest.mark.parametrize("host", PRIVATE)
def test_private_and_shared_address_space_is_refused_unless_the_policy_allows_it(
    host: str,
) -> None:
    with pytest.raises(HostNotAllowed, match="private"):
        normalize_host(host, STRICT)
    with pytest.raises(HostNotAllowed):
        normalize_host(host, AddressPolicy(allow_loopback=True))

    assert normalize_host(host, AddressPolicy(allow_private=True)) == host


@pytest.mark.parametrize("host", ["255.255.255.255", "240.0.0.1", "192.88.99.1"])
def test_broadcast_and_reserved_addresses_stay_refused_when_private_networks_are_allowed(
    host: str,
) -> None:
    # Python counts 240.0.0.0/4 and the broadcast address as "private"; allowing the VPC's
    # private networks must not open these up.
    with pytest.raises(HostNotAllowed):
        normalize_host(host, PERMISSIVE)


@pytest.mark.parametrize("host", PUBLIC)
def test_public_addresses_are_allowed_by_the_strictest_policy(host: str) -> None:
    assert refusal_reason(ipaddress.ip_address(host), STRICT) is None
    assert normalize_host(host, STRICT) == host


@pytest.mark.parametrize(
    "host", ["orders.internal", "api.example.com", "a", "x1-y2.eu-west-1.compute.internal"]
)
def test_dns_names_are_allowed(host: str) -> None:
    assert normalize_host(host, STRICT) == host


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Orders.Example.COM", "orders.example.com"),
        ("orders.example.com.", "orders.example.com"),
        ("  orders.example.com  ", "orders.example.com"),
        ("2600:1F18::0001", "2600:1f18::1"),
        ("[2600:1f18::1]", "2600:1f18::1"),
    ],
)
def test_hosts_are_stored_lowercase_without_trailing_dot_or_brackets(
    given: str, stored: str
) -> None:
    assert normalize_host(given, STRICT) == stored


@pytest.mark.parametrize(
    "host",
    [
        "",
        "   ",
        "under_score.example.com",
        "a..example.com",
        ".example.com",
        "-leading.example.com",
        "trailing-.example.com",
        "x" * 64 + ".example.com",
        "1.2.3.999",
        "256.1.1.1",
        "example.123",
        "spa ce.example.com",
        "ex\u00e4mple.com",
        "example.com:8080",
        "http://example.com",
    ],
)
def test_invalid_dns_names_are_refused_as_invalid_requests(host: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalize_host(host, PERMISSIVE)
    assert not isinstance(caught.value, HostNotAllowed)


def test_a_line_break_inside_a_name_is_refused() -> None:
    # The host ends up in the upstream Host header; a line break there splits the request.
    with pytest.raises(InvalidRequest):
        normalize_host("evil\n.example.com", PERMISSIVE)


def test_more_than_one_trailing_dot_is_an_empty_label_and_refused() -> None:
    with pytest.raises(InvalidRequest):
        normalize_host("orders.example.com..", STRICT)


def test_a_label_of_exactly_63_characters_is_accepted() -> None:
    host = "x" * 63 + ".example.com"

    assert normalize_host(host, STRICT) == host


def test_a_name_of_exactly_the_maximum_length_is_accepted_and_one_more_is_refused() -> None:
    labels = ["a" * 63, "b" * 63, "c" * 63, "d" * 61]
    longest = ".".join(labels)
    assert len(longest) == MAX_HOST_LENGTH

    assert normalize_host(longest, STRICT) == longest
    with pytest.raises(InvalidRequest):
        normalize_host(longest + "e", STRICT)


def test_the_refusal_message_names_the_host() -> None:
    with pytest.raises(InvalidRequest, match=re.escape("under_score.example.com")):
        normalize_host("under_score.example.com", STRICT)
    with pytest.raises(HostNotAllowed, match=re.escape("169.254.169.254")):
        normalize_host("169.254.169.254", STRICT)


ZONE_IDS = [
    "2600:1f18::1%eth0",
    "2600:1f18::1%eth0\r\nX-Injected: 1",
    "[2600:1f18::1%25eth0]",
    "fe80::1%1",
    "::ffff:52.95.110.1%x",
    "2600:1f18::1%\u00e9",
]


@pytest.mark.parametrize("host", ZONE_IDS)
@pytest.mark.parametrize("policy", [STRICT, PERMISSIVE], ids=["strict", "permissive"])
def test_an_ipv6_zone_id_is_refused_whatever_the_policy(host: str, policy: AddressPolicy) -> None:
    # Python's ipaddress accepts any characters after "%", line breaks included.
    with pytest.raises(HostNotAllowed, match="zone id") as caught:
        normalize_host(host, policy)
    assert repr(host) in caught.value.message


def test_the_same_address_without_a_zone_id_is_allowed() -> None:
    assert normalize_host("2600:1f18::1", STRICT) == "2600:1f18::1"
    assert refusal_reason(ipaddress.ip_address("2600:1f18::1%eth0"), PERMISSIVE) == (
        "an IPv6 address with a zone id"
    )


class RecordingResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host not in self.answers:
            raise OSError(f"Name or service not known: {host}")
        return self.answers[host]


def client_with(resolver: RecordingResolver, policy: AddressPolicy = STRICT) -> UpstreamClient:
    return UpstreamClient(policy, resolver=resolver)


def test_an_ip_host_is_connected_to_as_is_without_asking_dns() -> None:
    resolver = RecordingResolver({})

    assert client_with(resolver).addresses_for("52.95.110.1", 80) == ["52.95.110.1"]
    assert resolver.asked == []


def test_an_allowed_ip_host_is_checked_once_per_client(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []

    def checking(host: str, port: int, policy: AddressPolicy, resolver: object) -> list[str]:
        checked.append(host)
        return allowed_addresses(host, port, policy)

    monkeypatch.setattr("chalicelib.upstream.allowed_addresses", checking)
    client = client_with(RecordingResolver({}))

    hosts = ("52.95.110.1", "52.95.110.1", "2600:1f18::1", "52.95.110.1")
    answers = [client.addresses_for(host, 80) for host in hosts]

    assert answers == [[host] for host in hosts]
    assert checked == ["52.95.110.1", "2600:1f18::1"]


def test_a_refused_ip_host_and_a_dns_name_are_checked_on_every_request() -> None:
    resolver = RecordingResolver({"orders.example.com": ["52.95.110.2"]})
    client = client_with(resolver)

    for _ in range(2):
        with pytest.raises(HostNotAllowed):
            client.addresses_for("10.0.0.7", 8080)
        assert client.addresses_for("orders.example.com", 8080) == ["52.95.110.2"]

    assert resolver.asked == [("orders.example.com", 8080)] * 2


def test_a_dns_name_is_connected_to_at_the_addresses_the_policy_allows_in_dns_order() -> None:
    resolver = RecordingResolver(
        {"orders.example.com": ["169.254.169.254", "52.95.110.2", "10.0.0.7", "52.95.110.1"]}
    )

    assert client_with(resolver).addresses_for("orders.example.com", 8080) == [
        "52.95.110.2",
        "52.95.110.1",
    ]
    assert resolver.asked == [("orders.example.com", 8080)]


def test_a_dns_name_that_now_points_at_a_private_address_follows_the_policy() -> None:
    resolver = RecordingResolver({"orders.internal": ["10.0.0.7"]})

    with pytest.raises(HostNotAllowed, match=re.escape("orders.internal")):
        client_with(resolver).addresses_for("orders.internal", 8080)
    allowed = client_with(resolver, AddressPolicy(allow_private=True))
    assert allowed.addresses_for("orders.internal", 8080) == ["10.0.0.7"]


def test_a_dns_name_that_resolves_to_metadata_is_refused_even_when_everything_is_allowed() -> None:
    resolver = RecordingResolver({"rebind.example.com": ["169.254.169.254", "fd00:ec2::254"]})

    with pytest.raises(HostNotAllowed, match=re.escape("rebind.example.com")):
        client_with(resolver, PERMISSIVE).addresses_for("rebind.example.com", 80)


def test_a_name_that_cannot_be_resolved_is_a_connect_failure_naming_the_host() -> None:
    with pytest.raises(ConnectFailed, match=re.escape("gone.example.com")):
        client_with(RecordingResolver({})).addresses_for("gone.example.com", 80)


def test_an_ip_host_stored_under_a_looser_policy_is_refused_at_connect_time() -> None:
    # Given an instance registered while private addresses were allowed
    client = client_with(RecordingResolver({}), STRICT)

    # When the gateway, now strict, is about to connect to it
    with pytest.raises(HostNotAllowed, match=re.escape("10.0.0.7")):
        client.addresses_for("10.0.0.7", 8080)


@pytest.mark.parametrize(
    "host",
    [
        "2002:a9fe:a9fe::1",  # 6to4 wrapping 169.254.169.254
        "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo whose client is 169.254.169.254
        "0.1.2.3",  # "this network"
    ],
)
def test_addresses_that_lead_to_forbidden_ipv4_are_refused(host: str) -> None:
    with pytest.raises(HostNotAllowed):
        normalize_host(host, PERMISSIVE)


@pytest.mark.parametrize("host", ["0x7f000001", "0x7f.0x1", "example.0x1", "service.017"])
def test_names_ending_in_a_number_are_not_dns_names(host: str) -> None:
    with pytest.raises(InvalidRequest):
        normalize_host(host, PERMISSIVE)


class TestAllowedNetworks:
    TASK_SUBNETS = AddressPolicy(
        allow_private=True,
        allowed_networks=(ipaddress.ip_network("10.0.0.0/20"), ipaddress.ip_network("fd12::/64")),
    )

    @pytest.mark.parametrize("host", ["10.0.3.7", "fd12::5"])
    def test_addresses_inside_the_task_subnets_are_allowed(self, host: str) -> None:
        assert normalize_host(host, self.TASK_SUBNETS) == host

    @pytest.mark.parametrize("host", ["10.0.16.1", "10.1.0.5", "192.168.0.10", "52.95.110.1"])
    def test_any_other_address_is_refused_naming_the_setting(self, host: str) -> None:
        with pytest.raises(HostNotAllowed, match="LAMBDAMESH_ALLOWED_NETWORKS"):
            normalize_host(host, self.TASK_SUBNETS)

    def test_the_private_flag_is_still_required(self) -> None:
        policy = AddressPolicy(allowed_networks=(ipaddress.ip_network("10.0.0.0/20"),))

        with pytest.raises(HostNotAllowed, match="private"):
            normalize_host("10.0.3.7", policy)

    def test_a_name_resolving_outside_them_is_refused_at_connect_time(self) -> None:
        resolver = RecordingResolver({"rds.internal": ["10.0.200.9"]})

        with pytest.raises(HostNotAllowed):
            client_with(resolver, self.TASK_SUBNETS).addresses_for("rds.internal", 5432)


def test_a_stored_address_with_a_zone_id_is_refused_at_connect_time_without_asking_dns() -> None:
    # Given an address stored before zone ids were refused at registration
    resolver = RecordingResolver({})

    with pytest.raises(HostNotAllowed, match="zone id"):
        client_with(resolver, PERMISSIVE).addresses_for("2600:1f18::1%eth0\r\nX: 1", 80)
    assert resolver.asked == []


def test_a_resolved_address_with_a_zone_id_is_skipped() -> None:
    resolver = RecordingResolver({"orders.example.com": ["2600:1f18::1%eth0", "2600:1f18::2"]})

    assert client_with(resolver).addresses_for("orders.example.com", 80) == ["2600:1f18::2"]


def test_a_name_the_resolver_cannot_encode_is_a_connect_failure() -> None:
    # socket.getaddrinfo raises UnicodeError, not OSError, for a name IDNA cannot encode.
    def idna_resolver(host: str, port: int) -> list[str]:
        host.encode("idna")
        raise AssertionError("the name should not have been encodable")

    client = UpstreamClient(PERMISSIVE, resolver=idna_resolver)

    with pytest.raises(ConnectFailed, match="cannot resolve"):
        client.addresses_for("a" * 64 + ".example.com", 80)


@pytest.mark.parametrize(
    ("stored", "connected"),
    [("2600:1F18::0001", "2600:1f18::1"), ("[2600:1f18::1]", "2600:1f18::1")],
)
def test_an_address_is_connected_to_in_its_canonical_form(stored: str, connected: str) -> None:
    assert client_with(RecordingResolver({})).addresses_for(stored, 80) == [connected]


# One rule for the gateway's settings and the sidecar outbound port's


SUBNET = ipaddress.ip_network("10.0.0.0/20")


def test_private_addresses_allowed_with_no_network_list_is_the_one_misconfiguration() -> None:
    gateway = misconfiguration(True, ())
    sidecar = misconfiguration(True, (), prefix="LAMBDAMESH_OUTBOUND_")

    assert gateway is not None and sidecar is not None
    assert str(gateway).startswith(
        "LAMBDAMESH_ALLOW_PRIVATE is true but LAMBDAMESH_ALLOWED_NETWORKS names no network"
    )
    assert sidecar.variable == "LAMBDAMESH_OUTBOUND_ALLOW_PRIVATE"
    assert sidecar.problem.startswith("is true but LAMBDAMESH_OUTBOUND_ALLOWED_NETWORKS names")
    assert misconfiguration(True, (SUBNET,)) is None
    assert misconfiguration(False, ()) is None


@pytest.mark.parametrize(
    ("loopback", "private", "networks", "expected"),
    [
        (False, False, (), AddressPolicy()),
        (True, False, (), AddressPolicy(allow_loopback=True)),
        (False, True, (), AddressPolicy()),  # misconfigured: private stays refused
        (False, True, (SUBNET,), AddressPolicy(allow_private=True, allowed_networks=(SUBNET,))),
        (False, False, (SUBNET,), AddressPolicy(allowed_networks=(SUBNET,))),
    ],
)
def test_the_three_settings_make_the_policy_and_unsafe_ones_never_widen_it(
    loopback: bool, private: bool, networks: tuple[hosts.IPNetwork, ...], expected: AddressPolicy
) -> None:
    assert address_policy(loopback, private, networks) == expected


@pytest.fixture
def gateway_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The gateway's settings from the process environment, forgotten after the test."""
    monkeypatch.setenv("LAMBDAMESH_ALLOW_LOOPBACK", "false")
    monkeypatch.setenv("LAMBDAMESH_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("LAMBDAMESH_ALLOWED_NETWORKS", str(SUBNET))
    wiring.reset()
    yield
    wiring.reset()


def test_the_gateway_and_the_outbound_port_make_their_policy_with_one_function(
    gateway_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = AddressPolicy(allow_loopback=True, allowed_networks=(SUBNET,))
    calls: list[tuple[bool, bool, tuple[hosts.IPNetwork, ...], str]] = []

    def recording(
        loopback: bool,
        private: bool,
        networks: Sequence[hosts.IPNetwork],
        prefix: str = "LAMBDAMESH_",
    ) -> AddressPolicy:
        calls.append((loopback, private, tuple(networks), prefix))
        return made

    monkeypatch.setattr(hosts, "address_policy", recording)
    outbound = OutboundSettings(port=15001, allow_private=True, allowed_networks=(str(SUBNET),))

    assert wiring.address_policy() is made
    assert outbound.address_policy() is made
    assert calls == [
        (False, True, (SUBNET,), "LAMBDAMESH_"),
        (False, True, (SUBNET,), "LAMBDAMESH_OUTBOUND_"),
    ]


@pytest.mark.parametrize(
    ("loopback", "private", "networks"),
    [(False, False, ()), (True, False, ()), (False, True, ()), (True, True, (SUBNET,))],
)
def test_the_same_settings_give_the_gateway_and_the_outbound_port_the_same_policy(
    monkeypatch: pytest.MonkeyPatch,
    loopback: bool,
    private: bool,
    networks: tuple[hosts.IPNetwork, ...],
) -> None:
    flag = {True: "true", False: "false"}
    monkeypatch.setenv("LAMBDAMESH_ALLOW_LOOPBACK", flag[loopback])
    monkeypatch.setenv("LAMBDAMESH_ALLOW_PRIVATE", flag[private])
    monkeypatch.setenv("LAMBDAMESH_ALLOWED_NETWORKS", ",".join(map(str, networks)))
    wiring.reset()
    try:
        gateway = wiring.address_policy()
    finally:
        wiring.reset()
    outbound = OutboundSettings(
        port=15001,
        allow_loopback=loopback,
        allow_private=private,
        allowed_networks=tuple(map(str, networks)),
    )

    assert outbound.address_policy() == gateway


@pytest.mark.parametrize("prefix", ["LAMBDAMESH_", "LAMBDAMESH_OUTBOUND_"])
@pytest.mark.parametrize(
    ("host", "resolved", "loopback", "private", "named"),
    [
        ("10.1.0.5", [], False, True, ["ALLOWED_NETWORKS"]),
        ("rds.internal", ["10.1.0.5"], False, True, ["ALLOWED_NETWORKS"]),
        ("127.0.0.1", [], False, False, ["ALLOW_LOOPBACK"]),
        ("10.0.3.7", [], True, False, ["ALLOW_PRIVATE", "ALLOWED_NETWORKS"]),
        ("orders.internal", ["127.0.0.1"], False, False, ["ALLOW_LOOPBACK"]),
    ],
)
def test_a_refusal_at_connect_time_names_the_settings_as_the_process_reads_them(
    prefix: str, host: str, resolved: list[str], loopback: bool, private: bool, named: list[str]
) -> None:
    networks = (SUBNET,) if private else ()
    policy = address_policy(loopback, private, networks, prefix=prefix)
    other = "LAMBDAMESH_OUTBOUND_" if prefix == "LAMBDAMESH_" else "LAMBDAMESH_"

    with pytest.raises(HostNotAllowed) as refused:
        allowed_addresses(host, 80, policy, RecordingResolver({host: resolved}))

    assert all(f"{prefix}{setting}" in refused.value.message for setting in named)
    assert other + named[0] not in refused.value.message
    assert repr(host) in refused.value.message


def test_addresses_no_setting_can_allow_name_no_setting() -> None:
    policy = address_policy(True, True, (SUBNET,), prefix="LAMBDAMESH_OUTBOUND_")

    with pytest.raises(HostNotAllowed) as refused:
        allowed_addresses("169.254.169.254", 80, policy)

    assert "LAMBDAMESH" not in refused.value.message


def test_the_prefix_names_settings_and_decides_nothing() -> None:
    gateway = address_policy(True, True, (SUBNET,))
    sidecar = address_policy(True, True, (SUBNET,), prefix="LAMBDAMESH_OUTBOUND_")

    assert gateway == sidecar
    assert (gateway.settings_prefix, sidecar.settings_prefix) == (
        "LAMBDAMESH_",
        "LAMBDAMESH_OUTBOUND_",
    )


def test_deprecated_site_local_ipv6_is_private() -> None:
    with pytest.raises(HostNotAllowed, match="private"):
        normalize_host("fec0::1", STRICT)

    assert normalize_host("fec0::1", AddressPolicy(allow_private=True)) == "fec0::1"
