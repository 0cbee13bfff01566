"""Every default of the Lambda's settings is written once: on the `Settings` field.

The environment reader and the collaborators' constructors name the field instead of
repeating its value, so a default changed there changes everywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from chalicelib.config import Settings

CHALICELIB = Path(__file__).resolve().parents[2] / "chalicelib"
READERS = {"_number", "_integer", "_flag"}
# Constructor parameters that carry a setting: (module, class, parameter) -> Settings field.
SETTING_PARAMETERS = {
    ("upstream.py", "UpstreamClient", "connect_timeout"): "connect_timeout",
    ("upstream.py", "UpstreamClient", "read_timeout"): "read_timeout",
    ("upstream.py", "UpstreamClient", "max_response_body"): "max_response_body",
    ("upstream.py", "UpstreamClient", "pool_maxsize"): "pool_maxsize",
    ("gateway.py", "Gateway", "max_attempts"): "max_attempts",
    ("gateway.py", "Gateway", "max_request_body"): "max_request_body",
    ("discovery.py", "Discovery", "ttl"): "cache_seconds",
    ("gateway.py", "Gateway", "eject_seconds"): "eject_seconds",
    ("discovery.py", "Discovery", "stale_seconds"): "stale_seconds",
    ("registry.py", "Registry", "max_instances"): "max_instances_per_service",
}


def init_defaults(module: str, class_name: str) -> dict[str, ast.expr]:
    tree = ast.parse((CHALICELIB / module).read_text())
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
    [init] = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    arguments = [*init.args.args, *init.args.kwonlyargs]
    defaults = [None] * (len(init.args.args) - len(init.args.defaults)) + [
        *init.args.defaults,
        *init.args.kw_defaults,
    ]
    return {a.arg: d for a, d in zip(arguments, defaults, strict=True) if d is not None}


@pytest.mark.parametrize(
    ("where", "field"),
    SETTING_PARAMETERS.items(),
    ids=lambda v: ".".join(v) if isinstance(v, tuple) else v,
)
def test_constructors_take_their_defaults_from_the_settings_field(
    where: tuple[str, str, str], field: str
) -> None:
    module, class_name, parameter = where

    default = init_defaults(module, class_name)[parameter]

    assert ast.unparse(default) == f"Settings.{field}"


def test_the_environment_reader_falls_back_to_the_settings_fields_themselves() -> None:
    tree = ast.parse((CHALICELIB / "config.py").read_text())
    [reader] = [
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "from_environ"
    ]
    calls = [
        node
        for node in ast.walk(reader)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in READERS
    ]

    assert calls
    for call in calls:
        assert ast.unparse(call.args[2]).startswith("cls."), ast.unparse(call)


def test_settings_built_from_an_empty_environment_are_the_field_defaults() -> None:
    assert Settings.from_environ({}) == Settings()
