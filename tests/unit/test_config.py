"""Settings from the environment: defaults, ranges, flags, and the AWS SDK's own variables."""

from __future__ import annotations

import pytest

from chalicelib.config import ConfigError, Settings

MIB = 1024 * 1024

# (variable, Settings field, lowest accepted, highest accepted, just below, just above)
NUMBERS = [
    ("LAMBDAMESH_CACHE_SECONDS", "cache_seconds", "0", "60", "-0.01", "60.01"),
    ("LAMBDAMESH_CONNECT_TIMEOUT", "connect_timeout", "0.1", "30", "0.09", "30.5"),
    ("LAMBDAMESH_READ_TIMEOUT", "read_timeout", "0.1", "900", "0.09", "901"),
    ("LAMBDAMESH_MAX_ATTEMPTS", "max_attempts", "1", "10", "0", "11"),
    ("LAMBDAMESH_EJECT_SECONDS", "eject_seconds", "0", "300", "-1", "301"),
    ("LAMBDAMESH_STALE_SECONDS", "stale_seconds", "0", "300", "-1", "301"),
    ("LAMBDAMESH_REQUEST_TIMEOUT", "request_timeout", "0.5", "900", "0.4", "901"),
    ("LAMBDAMESH_MAX_REQUEST_BODY", "max_request_body", "0", "4400000", "-1", "4400001"),
    ("LAMBDAMESH_MAX_RESPONSE_BODY", "max_response_body", "0", "4400000", "-1", "4400001"),
    ("LAMBDAMESH_MAX_INSTANCES_PER_SERVICE", "max_instances_per_service", "1", "1000", "0", "1001"),
    ("LAMBDAMESH_MESH_CERT_SECONDS", "mesh_cert_seconds", "60", "604800", "59", "604801"),
    ("LAMBDAMESH_KEY_STORE_SECONDS", "key_store_seconds", "1", "3600", "0", "3601"),
]
FLAGS = [
    ("LAMBDAMESH_ALLOW_LOOPBACK", "allow_loopback"),
    ("LAMBDAMESH_ALLOW_PRIVATE", "allow_private"),
]


def test_error_code_is_stable() -> None:
    assert (ConfigError.code, ConfigError.status) == ("config_error", 500)


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = Settings.from_environ({})

    assert settings == Settings()
    assert settings.table_name == "lambdamesh-registry"
    assert settings.region == "us-east-1"
    assert settings.dynamodb_endpoint is None
    assert settings.signing_key is None
    assert settings.signing_key_parameter is None
    assert (settings.allow_loopback, settings.allow_private) == (False, False)
    assert (settings.cache_seconds, settings.connect_timeout, settings.read_timeout) == (
        1.0,
        2.0,
        25.0,
    )
    assert (settings.max_attempts, settings.eject_seconds) == (3, 5.0)
    assert (settings.max_request_body, settings.max_response_body) == (4 * MIB, 4 * MIB)
    assert settings.request_timeout == 25.0
    assert settings.max_instances_per_service == 100
    assert (settings.mesh_ca, settings.mesh_ca_secret) == (None, None)
    assert (settings.mesh_cert_seconds, settings.trust_domain, settings.stage) == (
        86400,
        "lambdamesh",
        "dev",
    )


def test_empty_variables_count_as_unset() -> None:
    names = [row[0] for row in NUMBERS] + [row[0] for row in FLAGS]
    names += ["LAMBDAMESH_TABLE", "LAMBDAMESH_SIGNING_KEY", "AWS_ENDPOINT_URL_DYNAMODB"]
    names += ["LAMBDAMESH_MESH_CA", "LAMBDAMESH_MESH_CA_SECRET", "LAMBDAMESH_STAGE"]
    names += ["LAMBDAMESH_TRUST_DOMAIN"]

    assert Settings.from_environ(dict.fromkeys(names, "")) == Settings()


def test_the_process_environment_is_read_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAMBDAMESH_TABLE", "from-process-env")

    assert Settings.from_environ().table_name == "from-process-env"


def test_strings_are_taken_as_given() -> None:
    settings = Settings.from_environ(
        {
            "LAMBDAMESH_TABLE": "registry-prod",
            "LAMBDAMESH_SIGNING_KEY": "0123456789abcdef0123",
            "LAMBDAMESH_SIGNING_KEY_PARAMETER": "/lambdamesh/signing-key",
        }
    )

    assert settings.table_name == "registry-prod"
    assert settings.signing_key == "0123456789abcdef0123"
    assert settings.signing_key_parameter == "/lambdamesh/signing-key"


@pytest.mark.parametrize(("name", "field", "low", "high", "below", "above"), NUMBERS)
def test_each_number_accepts_its_bounds(
    name: str, field: str, low: str, high: str, below: str, above: str
) -> None:
    assert getattr(Settings.from_environ({name: low}), field) == float(low)
    assert getattr(Settings.from_environ({name: high}), field) == float(high)


@pytest.mark.parametrize(("name", "field", "low", "high", "below", "above"), NUMBERS)
@pytest.mark.parametrize("side", ["below", "above"])
def test_a_number_out_of_range_is_refused_naming_the_variable_and_range(
    name: str, field: str, low: str, high: str, below: str, above: str, side: str
) -> None:
    value = below if side == "below" else above

    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({name: value})

    assert name in caught.value.message
    assert repr(value) in caught.value.message
    assert f"between {float(low):g} and {float(high):g}" in caught.value.message


@pytest.mark.parametrize("name", [row[0] for row in NUMBERS])
@pytest.mark.parametrize("value", ["abc", "5s", "1,5", "nan", "inf"])
def test_a_number_that_is_not_a_finite_number_is_refused_naming_the_variable(
    name: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_environ({name: value})


def test_counts_and_sizes_are_integers() -> None:
    settings = Settings.from_environ(
        {
            "LAMBDAMESH_MAX_ATTEMPTS": "4",
            "LAMBDAMESH_MAX_REQUEST_BODY": "1024",
            "LAMBDAMESH_MAX_INSTANCES_PER_SERVICE": "250",
        }
    )

    assert type(settings.max_attempts) is int
    assert type(settings.max_request_body) is int
    assert type(settings.max_instances_per_service) is int
    assert (settings.max_attempts, settings.max_request_body) == (4, 1024)
    assert settings.max_instances_per_service == 250


@pytest.mark.parametrize(("name", "field"), FLAGS)
@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("true", True),
        ("TRUE", True),
        (" True ", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("off", False),
    ],
)
def test_flags_read_true_and_false_spellings(name: str, field: str, raw: str, value: bool) -> None:
    assert getattr(Settings.from_environ({name: raw}), field) is value


@pytest.mark.parametrize(("name", "field"), FLAGS)
@pytest.mark.parametrize("raw", ["maybe", "2", "-1", "y", "enabled"])
def test_anything_else_for_a_flag_is_refused_naming_the_variable(
    name: str, field: str, raw: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({name: raw})

    assert name in caught.value.message
    assert repr(raw) in caught.value.message


def test_each_flag_is_read_from_its_own_variable() -> None:
    settings = Settings.from_environ({"LAMBDAMESH_ALLOW_LOOPBACK": "true"})

    assert (settings.allow_loopback, settings.allow_private) == (True, False)


def test_the_dynamodb_endpoint_comes_from_the_sdks_service_specific_variable() -> None:
    settings = Settings.from_environ({"AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:8000"})

    assert settings.dynamodb_endpoint == "http://127.0.0.1:8000"


def test_the_service_specific_endpoint_wins_over_the_global_one() -> None:
    settings = Settings.from_environ(
        {
            "AWS_ENDPOINT_URL": "http://global:4566",
            "AWS_ENDPOINT_URL_DYNAMODB": "http://dynamodb:8000",
        }
    )

    assert settings.dynamodb_endpoint == "http://dynamodb:8000"


def test_the_global_sdk_endpoint_is_used_when_there_is_no_dynamodb_one() -> None:
    assert (
        Settings.from_environ({"AWS_ENDPOINT_URL": "http://global:4566"}).dynamodb_endpoint
        == "http://global:4566"
    )


def test_the_region_comes_from_aws_region_before_aws_default_region() -> None:
    both = {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-west-2"}

    assert Settings.from_environ(both).region == "eu-west-1"
    assert Settings.from_environ({"AWS_DEFAULT_REGION": "us-west-2"}).region == "us-west-2"


@pytest.mark.parametrize(
    "name",
    [
        "LAMBDAMESH_MAX_ATTEMPTS",
        "LAMBDAMESH_MAX_REQUEST_BODY",
        "LAMBDAMESH_MAX_RESPONSE_BODY",
        "LAMBDAMESH_MAX_INSTANCES_PER_SERVICE",
    ],
)
def test_whole_number_settings_refuse_fractions(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_environ({name: "2.5"})


def test_allowed_networks_are_parsed_from_cidr_blocks() -> None:
    import ipaddress

    settings = Settings.from_environ({"LAMBDAMESH_ALLOWED_NETWORKS": "10.0.0.0/20, fd12::/64"})

    assert settings.allowed_networks == (
        ipaddress.ip_network("10.0.0.0/20"),
        ipaddress.ip_network("fd12::/64"),
    )


@pytest.mark.parametrize("value", ["10.0.0.1/20", "not-a-network", "10.0.0.0/33"])
def test_a_bad_allowed_network_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigError, match="LAMBDAMESH_ALLOWED_NETWORKS"):
        Settings.from_environ({"LAMBDAMESH_ALLOWED_NETWORKS": value})


def test_the_stage_and_trust_domain_are_names_an_identity_may_carry() -> None:
    settings = Settings.from_environ(
        {"LAMBDAMESH_STAGE": "prod", "LAMBDAMESH_TRUST_DOMAIN": "mesh.example.com"}
    )
    assert (settings.stage, settings.trust_domain) == ("prod", "mesh.example.com")
    for name, value in [
        ("LAMBDAMESH_STAGE", "Prod"),
        ("LAMBDAMESH_STAGE", "a/b"),
        ("LAMBDAMESH_TRUST_DOMAIN", "mesh:443"),
    ]:
        with pytest.raises(ConfigError, match=name) as caught:
            Settings.from_environ({name: value})
        assert repr(value) in caught.value.message


# (variable, Settings field, default, the other choice)
MESH_CHOICES = [
    ("LAMBDAMESH_MTLS_DEFAULT", "mtls_default", "permissive", "strict"),
    ("LAMBDAMESH_INTENTIONS_DEFAULT", "intentions_default", "allow", "deny"),
]


@pytest.mark.parametrize(("name", "field", "default", "other"), MESH_CHOICES)
def test_the_mesh_defaults_take_either_word_in_any_case(
    name: str, field: str, default: str, other: str
) -> None:
    assert getattr(Settings.from_environ({}), field) == default
    assert getattr(Settings.from_environ({name: ""}), field) == default
    assert getattr(Settings.from_environ({name: other}), field) == other
    assert getattr(Settings.from_environ({name: f" {other.upper()} "}), field) == other
    assert getattr(Settings.from_environ({name: default}), field) == default


@pytest.mark.parametrize(("name", "field", "default", "other"), MESH_CHOICES)
@pytest.mark.parametrize("value", ["yes", "closed", "strict,permissive", "0"])
def test_a_mesh_default_that_is_neither_word_is_refused_naming_the_variable(
    name: str, field: str, default: str, other: str, value: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({name: value})

    assert caught.value.message == (
        f"{name} must be one of {', '.join(sorted((default, other)))}, got {value!r}"
    )
