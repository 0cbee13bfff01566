"""Which requests arrive on the console's origin: a pure decision over the setting and the
domain the request was sent to."""

from __future__ import annotations

import pytest

from chalicelib.config import Settings
from chalicelib.console import FUNCTION_URL, Arrival, is_console, parse_console_domain
from chalicelib.errors import ConfigError


def test_no_setting_means_no_console_anywhere() -> None:
    assert not is_console("", Arrival("console.example.com"))
    assert not is_console("", Arrival("abc.lambda-url.eu-west-1.on.aws", via_function_url=True))
    assert Settings.from_environ({}).console_domain == ""


def test_a_domain_setting_matches_that_domain_through_api_gateway_only() -> None:
    setting = parse_console_domain("Console.Example.com.")

    assert setting == "console.example.com"
    assert is_console(setting, Arrival("CONSOLE.example.com"))
    assert is_console(setting, Arrival("console.example.com."))
    assert not is_console(setting, Arrival("example.com"))
    assert not is_console(setting, Arrival("console.example.com.evil.test"))
    assert not is_console(setting, Arrival(None))
    assert not is_console(setting, Arrival("console.example.com", via_function_url=True))


def test_function_url_names_the_function_urls_own_lane() -> None:
    assert is_console(FUNCTION_URL, Arrival("abc.lambda-url.eu-west-1.on.aws", True))
    assert not is_console(FUNCTION_URL, Arrival("abc.lambda-url.eu-west-1.on.aws"))
    assert not is_console(FUNCTION_URL, Arrival("function-url"))


@pytest.mark.parametrize(
    "raw",
    ["https://console.example.com", "console.example.com/dashboard", "host:8000", "a b", "*"],
)
def test_anything_but_a_domain_name_or_function_url_is_refused_naming_the_variable(
    raw: str,
) -> None:
    with pytest.raises(ConfigError, match="LAMBDAMESH_CONSOLE_DOMAIN"):
        Settings.from_environ({"LAMBDAMESH_CONSOLE_DOMAIN": raw})
