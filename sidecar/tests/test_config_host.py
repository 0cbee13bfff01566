"""LAMBDAMESH_HOST is read by the registry's own rule (``lambdamesh_routing.hosts``): what the
sidecar starts with, the registry takes at registration, and what the registry would refuse
as malformed stops the sidecar at start instead."""

from __future__ import annotations

import pytest

from lambdamesh_routing.errors import HostNotAllowed, InvalidRequest
from lambdamesh_routing.hosts import AddressPolicy, normalize_host
from lambdamesh_sidecar.config import Settings, load
from lambdamesh_sidecar.ecs import TaskMetadata
from lambdamesh_sidecar.environment import ConfigError

BASE = {
    "LAMBDAMESH_URL": "https://abc.execute-api.eu-west-1.amazonaws.com/api",
    "LAMBDAMESH_TOKEN": "t0ken",
    "LAMBDAMESH_SERVICE": "orders",
    "LAMBDAMESH_VERSION": "v1",
    "LAMBDAMESH_PORT": "8080",
}
# The sidecar cannot know which addresses the gateway's settings allow; the registry's
# refusal of a well-formed host by policy is not the sidecar's to make.
ANY_ADDRESS = AddressPolicy(allow_loopback=True, allow_private=True)

# Each host, and whether it is an IP address or a DNS name to the registry.
HOSTS = [
    ("10.0.1.5", True),
    ("2600:1f18::1", True),
    ("[2600:1f18::1]", True),
    ("App.Example.com", True),
    ("orders.internal.", True),
    ("localhost", True),
    ("xn--bcher-kva.example", True),
    (f"{'a' * 63}.example", True),
    ("app.123a", True),
    ("app.0x7g", True),
    ("app.123", False),
    ("app.0x7f", False),
    ("0x7f.1", False),
    ("2130706433", False),
    ("-app.example", False),
    ("app-.example", False),
    ("app..example", False),
    ("app_1.example", False),
    (f"{'a' * 64}.example", False),
    (".".join(["a" * 63] * 4), False),  # 255 characters, over the 253 a name may have
    ("[app.example.com]", False),
    ("[::1", False),
    ("::1]", False),
    ("[[::1]]", False),
]


def no_lookup(uri: str) -> TaskMetadata:
    raise AssertionError(f"task metadata must not be fetched, asked for {uri}")


def loaded(host: str) -> Settings:
    return load({**BASE, "LAMBDAMESH_HOST": host}, no_lookup)


def sidecar_accepts(host: str) -> bool:
    try:
        loaded(host)
    except ConfigError as exc:
        assert exc.variable == "LAMBDAMESH_HOST"
        return False
    return True


def registry_accepts(host: str) -> bool:
    try:
        normalize_host(host, ANY_ADDRESS)
    except InvalidRequest:
        return False
    except HostNotAllowed:
        pass  # well-formed, refused by the policy alone
    return True


def test_a_host_whose_last_label_is_a_number_stops_the_sidecar() -> None:
    with pytest.raises(ConfigError) as caught:
        loaded("app.123")

    assert caught.value.variable == "LAMBDAMESH_HOST"
    assert caught.value.message == "must be an IP address or a DNS name, got 'app.123'"


def test_a_host_in_upper_case_is_taken_as_the_registry_lower_cases_it() -> None:
    settings = loaded("App.Example.com")

    assert settings.host == "App.Example.com"
    assert normalize_host(settings.host, ANY_ADDRESS) == "app.example.com"


@pytest.mark.parametrize(("host", "accepted"), HOSTS)
def test_the_sidecar_accepts_at_start_exactly_what_the_registry_accepts(
    host: str, accepted: bool
) -> None:
    assert (sidecar_accepts(host), registry_accepts(host)) == (accepted, accepted)


@pytest.mark.parametrize("host", [host for host, accepted in HOSTS if accepted])
def test_the_host_the_sidecar_registers_is_one_the_registry_accepts(host: str) -> None:
    assert registry_accepts(loaded(host).host)
