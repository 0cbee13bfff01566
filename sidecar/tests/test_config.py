"""Unit tests of settings parsing: no network, the ECS lookup is a stub."""

from __future__ import annotations

import json

import pytest

from lambdamesh_sidecar.config import Settings, TaskLookup, derive_instance_id, load
from lambdamesh_sidecar.ecs import MetadataUnavailable, TaskMetadata
from lambdamesh_sidecar.environment import ConfigError
from lambdamesh_sidecar.variables import (
    DEFAULT_DRAIN_SECONDS,
    DEFAULT_HEARTBEAT_SECONDS,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
)

BASE = {
    "LAMBDAMESH_URL": "https://abc.execute-api.eu-west-1.amazonaws.com/api/",
    "LAMBDAMESH_TOKEN": "t0ken",
    "LAMBDAMESH_SERVICE": "orders",
    "LAMBDAMESH_VERSION": "1.2.0",
    "LAMBDAMESH_PORT": "8080",
    "LAMBDAMESH_HOST": "10.0.1.5",
}

TASK = TaskMetadata(
    task_arn="arn:aws:ecs:us-east-1:123456789012:task/my-cluster/0123456789ABCDEF0123456789abcdef",
    network_mode="awsvpc",
    ipv4="10.0.1.23",
    availability_zone="us-east-1a",
)


def no_lookup(uri: str) -> TaskMetadata:
    raise AssertionError(f"task metadata must not be fetched, asked for {uri}")


def loaded(lookup: TaskLookup = no_lookup, **changes: str | None) -> Settings:
    environ = {**BASE, **changes}
    return load({key: value for key, value in environ.items() if value is not None}, lookup)


def error_for(lookup: TaskLookup = no_lookup, **changes: str | None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        loaded(lookup, **changes)
    return caught.value


def test_minimal_environment_gets_the_defaults() -> None:
    settings = loaded()

    assert settings.registry_url == "https://abc.execute-api.eu-west-1.amazonaws.com/api"
    assert (settings.service, settings.version) == ("orders", "1.2.0")
    assert (settings.host, settings.port) == ("10.0.1.5", 8080)
    assert settings.instance_id == "10-0-1-5-8080"
    assert settings.heartbeat_seconds == DEFAULT_HEARTBEAT_SECONDS
    assert settings.lease_seconds == DEFAULT_LEASE_SECONDS
    assert settings.request_timeout_seconds == DEFAULT_REQUEST_TIMEOUT_SECONDS
    assert settings.drain_seconds == DEFAULT_DRAIN_SECONDS
    assert settings.health_path is None
    assert settings.weight is None
    assert settings.zone is None
    assert settings.metadata is None
    assert settings.log_level == "INFO"


def test_every_optional_setting_is_read() -> None:
    settings = loaded(
        LAMBDAMESH_INSTANCE_ID="orders-a_1.b",
        LAMBDAMESH_HEALTH_PATH="/health?deep=1",
        LAMBDAMESH_HEARTBEAT_SECONDS="0.5",
        LAMBDAMESH_LEASE_SECONDS="5",
        LAMBDAMESH_WEIGHT="1000",
        LAMBDAMESH_ZONE="eu-west-1b",
        LAMBDAMESH_METADATA='{"commit": "abc123", "team/owner": "payments"}',
        LAMBDAMESH_REQUEST_TIMEOUT_SECONDS="2.5",
        LAMBDAMESH_DRAIN_SECONDS="12.5",
        LAMBDAMESH_LOG_LEVEL="debug",
    )

    assert settings.instance_id == "orders-a_1.b"
    assert settings.health_path == "/health?deep=1"
    assert (settings.heartbeat_seconds, settings.lease_seconds) == (0.5, 5)
    assert settings.weight == 1000
    assert settings.zone == "eu-west-1b"
    assert settings.metadata == {"commit": "abc123", "team/owner": "payments"}
    assert settings.request_timeout_seconds == 2.5
    assert settings.drain_seconds == 12.5
    assert settings.log_level == "DEBUG"


def test_blank_optional_values_count_as_unset() -> None:
    settings = loaded(LAMBDAMESH_WEIGHT="", LAMBDAMESH_ZONE="  ", LAMBDAMESH_METADATA="")

    assert (settings.weight, settings.zone, settings.metadata) == (None, None, None)


def test_token_never_appears_in_the_settings_repr() -> None:
    assert "t0ken" not in repr(loaded())


@pytest.mark.parametrize(
    "variable",
    [
        "LAMBDAMESH_URL",
        "LAMBDAMESH_TOKEN",
        "LAMBDAMESH_SERVICE",
        "LAMBDAMESH_VERSION",
        "LAMBDAMESH_PORT",
    ],
)
@pytest.mark.parametrize("absent", [None, "", "   "])
def test_missing_required_variable_is_named(variable: str, absent: str | None) -> None:
    error = error_for(no_lookup, **{variable: absent})

    assert error.variable == variable
    assert str(error) == f"{variable} is required"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("LAMBDAMESH_URL", "ftp://registry", "http:// or https://"),
        ("LAMBDAMESH_URL", "registry.example.com", "http:// or https://"),
        ("LAMBDAMESH_URL", "https://user:pw@registry.example.com", "credentials"),
        ("LAMBDAMESH_URL", "https://registry.example.com/?a=b", "query"),
        ("LAMBDAMESH_TOKEN", "two words", "whitespace"),
        ("LAMBDAMESH_SERVICE", "Orders", "lowercase"),
        ("LAMBDAMESH_SERVICE", "-orders", "a-z"),
        ("LAMBDAMESH_SERVICE", "o" * 64, "1-63"),
        ("LAMBDAMESH_VERSION", "V1", "lowercase"),
        ("LAMBDAMESH_VERSION", "1.2.", "1-32"),
        ("LAMBDAMESH_PORT", "abc", "must be an integer in 1..65535, got 'abc'"),
        ("LAMBDAMESH_PORT", "0", "1..65535"),
        ("LAMBDAMESH_PORT", "65536", "1..65535"),
        ("LAMBDAMESH_PORT", "80.0", "1..65535"),
        ("LAMBDAMESH_PORT", "-1", "1..65535"),
        ("LAMBDAMESH_HOST", "not a host", "IP address or a DNS name"),
        ("LAMBDAMESH_HOST", "http://10.0.0.1", "IP address or a DNS name"),
        ("LAMBDAMESH_INSTANCE_ID", "Task-1", "lowercase"),
        ("LAMBDAMESH_INSTANCE_ID", "a" * 129, "1-128"),
        ("LAMBDAMESH_HEALTH_PATH", "health", "must start with '/'"),
        ("LAMBDAMESH_HEALTH_PATH", "/he alth", "no spaces"),
        ("LAMBDAMESH_HEARTBEAT_SECONDS", "0.1", "0.2..300"),
        ("LAMBDAMESH_HEARTBEAT_SECONDS", "301", "0.2..300"),
        ("LAMBDAMESH_HEARTBEAT_SECONDS", "nan", "0.2..300"),
        ("LAMBDAMESH_HEARTBEAT_SECONDS", "1e1", "0.2..300"),
        ("LAMBDAMESH_LEASE_SECONDS", "4", "5..300"),
        ("LAMBDAMESH_LEASE_SECONDS", "301", "5..300"),
        ("LAMBDAMESH_LEASE_SECONDS", "30.5", "5..300"),
        ("LAMBDAMESH_WEIGHT", "0", "1..1000"),
        ("LAMBDAMESH_WEIGHT", "1001", "1..1000"),
        ("LAMBDAMESH_ZONE", "EU West", "a-z"),
        ("LAMBDAMESH_REQUEST_TIMEOUT_SECONDS", "0", "0.1..60"),
        ("LAMBDAMESH_REQUEST_TIMEOUT_SECONDS", "61", "0.1..60"),
        ("LAMBDAMESH_DRAIN_SECONDS", "-1", "0..120"),
        ("LAMBDAMESH_DRAIN_SECONDS", "121", "0..120"),
        ("LAMBDAMESH_LOG_LEVEL", "chatty", "DEBUG, INFO, WARNING, ERROR"),
    ],
)
def test_invalid_value_is_refused_naming_the_variable(
    variable: str, value: str, expected: str
) -> None:
    error = error_for(no_lookup, **{variable: value})

    assert error.variable == variable
    assert str(error).startswith(f"{variable} ")
    assert expected in str(error)
    assert "\n" not in str(error)


def test_invalid_token_error_does_not_echo_the_token() -> None:
    error = error_for(LAMBDAMESH_TOKEN="secret value")

    assert "secret" not in str(error)


def test_long_invalid_value_is_shortened_in_the_message() -> None:
    error = error_for(LAMBDAMESH_SERVICE="x" * 500)

    assert len(str(error)) < 200


def test_lease_must_outlast_a_late_heartbeat() -> None:
    error = error_for(LAMBDAMESH_HEARTBEAT_SECONDS="10", LAMBDAMESH_LEASE_SECONDS="11")

    assert error.variable == "LAMBDAMESH_LEASE_SECONDS"
    assert "at least 12" in str(error)


def test_a_lease_just_long_enough_is_accepted() -> None:
    settings = loaded(LAMBDAMESH_HEARTBEAT_SECONDS="10", LAMBDAMESH_LEASE_SECONDS="12")

    assert (settings.heartbeat_seconds, settings.lease_seconds) == (10, 12)


def test_default_lease_is_checked_against_a_long_heartbeat() -> None:
    error = error_for(LAMBDAMESH_HEARTBEAT_SECONDS="140")

    assert error.variable == "LAMBDAMESH_LEASE_SECONDS"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("not json", "JSON object"),
        ('["a"]', "JSON object"),
        ('"text"', "JSON object"),
        ('{"replicas": 3}', "value of 'replicas' must be a string"),
        ('{"flag": null}', "value of 'flag' must be a string"),
        ('{"nested": {"a": "b"}}', "value of 'nested' must be a string"),
        ('{"bad key": "v"}', "key 'bad key'"),
        (json.dumps({"big": "v" * 513}), "at most 512 characters"),
        (json.dumps({f"k{i}": "v" for i in range(33)}), "at most 32 entries"),
    ],
)
def test_metadata_must_be_a_json_object_of_strings(value: str, expected: str) -> None:
    error = error_for(LAMBDAMESH_METADATA=value)

    assert error.variable == "LAMBDAMESH_METADATA"
    assert expected in str(error)


def test_ipv6_host_in_brackets_is_unwrapped() -> None:
    settings = loaded(LAMBDAMESH_HOST="[fd00::5]")

    assert settings.host == "fd00::5"
    assert settings.instance_id == "fd00-5-8080"


def test_dns_host_is_accepted_and_gives_the_instance_id() -> None:
    settings = loaded(LAMBDAMESH_HOST="Orders.Internal")

    assert settings.host == "Orders.Internal"
    assert settings.instance_id == "orders-internal-8080"


def test_without_host_or_ecs_metadata_the_error_names_the_host() -> None:
    error = error_for(LAMBDAMESH_HOST=None)

    assert error.variable == "LAMBDAMESH_HOST"
    assert "ECS_CONTAINER_METADATA_URI_V4" in str(error)


def test_host_instance_id_and_zone_come_from_task_metadata() -> None:
    asked: list[str] = []

    def lookup(uri: str) -> TaskMetadata:
        asked.append(uri)
        return TASK

    settings = loaded(
        lookup, LAMBDAMESH_HOST=None, ECS_CONTAINER_METADATA_URI_V4="http://169.254.170.2/v4/x"
    )

    assert asked == ["http://169.254.170.2/v4/x"]
    assert settings.host == "10.0.1.23"
    assert settings.instance_id == "0123456789abcdef0123456789abcdef"
    assert settings.zone == "us-east-1a"


def test_explicit_settings_win_over_task_metadata() -> None:
    settings = loaded(
        lambda uri: TASK,
        LAMBDAMESH_ZONE="us-east-1c",
        ECS_CONTAINER_METADATA_URI_V4="http://169.254.170.2/v4/x",
    )

    assert settings.host == "10.0.1.5"
    assert settings.instance_id == "0123456789abcdef0123456789abcdef"
    assert settings.zone == "us-east-1c"


TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/prod/0123456789abcdef0123456789abcdef"


def test_task_metadata_is_not_fetched_when_nothing_is_missing() -> None:
    settings = loaded(
        LAMBDAMESH_INSTANCE_ID="i-1",
        LAMBDAMESH_ZONE="z1",
        LAMBDAMESH_TASK_ARN=TASK_ARN,
        ECS_CONTAINER_METADATA_URI_V4="http://169.254.170.2/v4/x",
    )

    assert (settings.instance_id, settings.task_arn) == ("i-1", TASK_ARN)


def test_the_task_arn_comes_from_task_metadata_even_when_everything_else_is_given() -> None:
    task = TaskMetadata(task_arn=TASK_ARN, network_mode="awsvpc", ipv4="10.0.1.5")

    settings = loaded(
        lambda uri: task,
        LAMBDAMESH_INSTANCE_ID="i-1",
        LAMBDAMESH_ZONE="z1",
        ECS_CONTAINER_METADATA_URI_V4="http://169.254.170.2/v4/x",
    )

    assert settings.task_arn == TASK_ARN


def test_outside_ecs_there_is_no_task_arn_unless_given() -> None:
    assert loaded().task_arn is None


@pytest.mark.parametrize(
    "value",
    [
        "arn:aws:ecs:us-east-1:123456789012:service/prod/orders",
        "arn:aws:ecs:us-east-1:12345:task/prod/abc",
        "task/prod/abc",
        TASK_ARN + "/extra",
    ],
)
def test_a_task_arn_that_is_not_one_is_refused(value: str) -> None:
    error = error_for(LAMBDAMESH_TASK_ARN=value)

    assert error.variable == "LAMBDAMESH_TASK_ARN"


def test_a_task_arn_from_metadata_the_registry_would_refuse_is_left_out() -> None:
    odd = TaskMetadata(task_arn="arn:aws:ecs:x:task/odd", network_mode="awsvpc", ipv4="10.0.1.5")

    settings = loaded(lambda uri: odd, ECS_CONTAINER_METADATA_URI_V4="http://169.254.170.2/v4/x")

    assert settings.task_arn is None


def test_bridge_network_mode_requires_an_explicit_host() -> None:
    bridge = TaskMetadata(task_arn=TASK.task_arn, network_mode="bridge", ipv4=None)

    error = error_for(
        lambda uri: bridge,
        LAMBDAMESH_HOST=None,
        ECS_CONTAINER_METADATA_URI_V4="http://169.254.170.2/v4/x",
    )

    assert error.variable == "LAMBDAMESH_HOST"
    assert "'bridge'" in str(error)


def test_unreachable_task_metadata_is_a_config_error() -> None:
    def lookup(uri: str) -> TaskMetadata:
        raise MetadataUnavailable("connection refused")

    error = error_for(
        lookup, LAMBDAMESH_HOST=None, ECS_CONTAINER_METADATA_URI_V4="http://169.254.170.2/v4/x"
    )

    assert error.variable == "ECS_CONTAINER_METADATA_URI_V4"
    assert "connection refused" in str(error)


def test_environment_errors_are_reported_before_any_metadata_lookup() -> None:
    error = error_for(
        no_lookup,
        LAMBDAMESH_HOST=None,
        LAMBDAMESH_PORT="x",
        ECS_CONTAINER_METADATA_URI_V4="http://169.254.170.2/v4/x",
    )

    assert error.variable == "LAMBDAMESH_PORT"


@pytest.mark.parametrize(
    ("task_arn", "expected"),
    [
        (
            "arn:aws:ecs:us-east-1:123456789012:task/my-cluster/0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef",
        ),
        (
            "arn:aws:ecs:us-east-1:123456789012:task/1dc5c17a-422b-4dc4-b493",
            "1dc5c17a-422b-4dc4-b493",
        ),
        ("arn:aws:ecs:eu-west-1:1:task/c/__Weird ID!__", "weird-id"),
        ("arn:aws:ecs:eu-west-1:1:task/c/" + "a" * 200, "a" * 128),
    ],
)
def test_instance_id_is_the_sanitised_task_id(task_arn: str, expected: str) -> None:
    assert derive_instance_id(TaskMetadata(task_arn=task_arn), "10.0.0.1", 80) == expected


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("10.0.1.5", 8080, "10-0-1-5-8080"),
        ("fd00::1", 443, "fd00-1-443"),
        ("::1", 80, "1-80"),
        ("App.Local", 3000, "app-local-3000"),
    ],
)
def test_instance_id_falls_back_to_host_and_port(host: str, port: int, expected: str) -> None:
    assert derive_instance_id(None, host, port) == expected
    assert derive_instance_id(TaskMetadata(task_arn=None), host, port) == expected


def test_the_outbound_port_is_off_unless_a_port_is_given() -> None:
    assert loaded().outbound is None


def test_the_outbound_port_settings_are_read_with_their_defaults() -> None:
    outbound = loaded(LAMBDAMESH_OUTBOUND_PORT="15001").outbound

    assert outbound is not None
    assert (outbound.port, outbound.refresh_seconds, outbound.stale_seconds) == (15001, 5.0, 60.0)
    assert (outbound.timeout_seconds, outbound.max_connections) == (30.0, 256)
    assert (outbound.allow_loopback, outbound.allow_private, outbound.allowed_networks) == (
        False,
        False,
        (),
    )


def test_the_outbound_port_settings_can_all_be_changed() -> None:
    outbound = loaded(
        LAMBDAMESH_OUTBOUND_PORT="15001",
        LAMBDAMESH_OUTBOUND_REFRESH_SECONDS="2",
        LAMBDAMESH_OUTBOUND_STALE_SECONDS="0",
        LAMBDAMESH_OUTBOUND_TIMEOUT_SECONDS="2.5",
        LAMBDAMESH_OUTBOUND_CONNECT_TIMEOUT_SECONDS="0.5",
        LAMBDAMESH_OUTBOUND_MAX_CONNECTIONS="16",
        LAMBDAMESH_OUTBOUND_ALLOW_LOOPBACK="TRUE",
        LAMBDAMESH_OUTBOUND_ALLOW_PRIVATE="true",
        LAMBDAMESH_OUTBOUND_ALLOWED_NETWORKS="10.0.0.0/16, 10.1.2.3/24",
    ).outbound

    assert outbound is not None
    assert (outbound.refresh_seconds, outbound.stale_seconds, outbound.timeout_seconds) == (
        2.0,
        0.0,
        2.5,
    )
    assert (outbound.connect_timeout_seconds, outbound.max_connections) == (0.5, 16)
    assert (outbound.allow_loopback, outbound.allow_private) == (True, True)
    assert outbound.allowed_networks == ("10.0.0.0/16", "10.1.2.0/24")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LAMBDAMESH_OUTBOUND_PORT", "0"),
        ("LAMBDAMESH_OUTBOUND_PORT", "65536"),
        ("LAMBDAMESH_OUTBOUND_REFRESH_SECONDS", "0.5"),
        ("LAMBDAMESH_OUTBOUND_STALE_SECONDS", "3601"),
        ("LAMBDAMESH_OUTBOUND_TIMEOUT_SECONDS", "0"),
        ("LAMBDAMESH_OUTBOUND_CONNECT_TIMEOUT_SECONDS", "31"),
        ("LAMBDAMESH_OUTBOUND_MAX_CONNECTIONS", "0"),
        ("LAMBDAMESH_OUTBOUND_ALLOW_LOOPBACK", "maybe"),
        ("LAMBDAMESH_OUTBOUND_ALLOW_PRIVATE", "2"),
        ("LAMBDAMESH_OUTBOUND_ALLOWED_NETWORKS", "10.0.0.0/33"),
    ],
)
def test_a_bad_outbound_setting_names_its_variable(variable: str, value: str) -> None:
    changes = {"LAMBDAMESH_OUTBOUND_PORT": "15001", variable: value}

    assert error_for(no_lookup, **changes).variable == variable


@pytest.mark.parametrize(
    ("raw", "value"),
    [("yes", True), ("1", True), (" On ", True), ("no", False), ("0", False), ("OFF", False)],
)
def test_the_outbound_flags_take_the_gateways_spellings(raw: str, value: bool) -> None:
    outbound = loaded(LAMBDAMESH_OUTBOUND_PORT="15001", LAMBDAMESH_OUTBOUND_ALLOW_LOOPBACK=raw)

    assert outbound.outbound is not None
    assert outbound.outbound.allow_loopback is value


def test_a_bad_flag_is_refused_with_the_words_it_may_be() -> None:
    error = error_for(LAMBDAMESH_OUTBOUND_PORT="15001", LAMBDAMESH_OUTBOUND_ALLOW_LOOPBACK="sure")

    assert str(error) == (
        "LAMBDAMESH_OUTBOUND_ALLOW_LOOPBACK must be one of true/false, 1/0, yes/no, on/off "
        "(any case), got 'sure'"
    )


@pytest.mark.parametrize("networks", [None, "", "  "])
def test_private_addresses_without_allowed_networks_stop_the_sidecar_as_the_gateway_would(
    networks: str | None,
) -> None:
    error = error_for(
        LAMBDAMESH_OUTBOUND_PORT="15001",
        LAMBDAMESH_OUTBOUND_ALLOW_PRIVATE="true",
        LAMBDAMESH_OUTBOUND_ALLOWED_NETWORKS=networks,
    )

    assert error.variable == "LAMBDAMESH_OUTBOUND_ALLOW_PRIVATE"
    assert str(error) == (
        "LAMBDAMESH_OUTBOUND_ALLOW_PRIVATE is true but LAMBDAMESH_OUTBOUND_ALLOWED_NETWORKS "
        "names no network: set it to the tasks' subnets (CIDR blocks, comma-separated)"
    )


def test_the_address_settings_are_not_checked_while_the_outbound_port_is_off() -> None:
    assert loaded(LAMBDAMESH_OUTBOUND_ALLOW_PRIVATE="true").outbound is None
