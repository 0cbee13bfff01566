"""Reading one variable: blank means unset, a bad value is a ``ConfigError`` naming the
variable and showing (a bounded part of) what it held. Secrets are never shown: their readers
do not pass the value to ``show``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping

from lambdamesh_routing.flags import InvalidFlag, parse_flag
from lambdamesh_sidecar.variables import Bounded

_INTEGER = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")


class ConfigError(Exception):
    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable} {message}")
        self.variable = variable
        self.message = message


def optional(environ: Mapping[str, str], name: str) -> str | None:
    """Stripped value, or None when unset or blank (ECS task definitions often carry "")."""
    return environ.get(name, "").strip() or None


def required(environ: Mapping[str, str], name: str) -> str:
    value = optional(environ, name)
    if value is None:
        raise ConfigError(name, "is required")
    return value


def show(raw: str) -> str:
    return repr(raw if len(raw) <= 60 else raw[:60] + "...")


def integer(variable: Bounded, raw: str) -> int:
    if not _INTEGER.fullmatch(raw) or not variable.low <= int(raw) <= variable.high:
        raise ConfigError(variable.name, f"must be an integer in {variable.span}, got {show(raw)}")
    return int(raw)


def optional_integer(environ: Mapping[str, str], variable: Bounded) -> int | None:
    """The value, else the declared default (None when it has none)."""
    raw = optional(environ, variable.name)
    if raw is not None:
        return integer(variable, raw)
    return None if variable.default is None else int(variable.default)


def number(environ: Mapping[str, str], variable: Bounded) -> float:
    """A number of seconds; the declared default when unset."""
    raw = optional(environ, variable.name)
    if raw is None:
        assert variable.default is not None, f"{variable.name} declares no default"
        return variable.default
    value = float(raw) if _NUMBER.fullmatch(raw) else math.nan
    if not variable.low <= value <= variable.high:
        raise ConfigError(
            variable.name, f"must be a number of seconds in {variable.span}, got {show(raw)}"
        )
    return value


def flag(environ: Mapping[str, str], name: str) -> bool:
    """On/off, by the rule all of lambdamesh reads flags with (``lambdamesh_routing.flags``)."""
    try:
        return parse_flag(environ.get(name), default=False)
    except InvalidFlag as exc:
        raise ConfigError(name, str(exc)) from None


def networks(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated CIDRs, each normalised (host bits cleared)."""
    raw = optional(environ, name)
    if raw is None:
        return ()
    found = []
    for part in (p.strip() for p in raw.split(",")):
        try:
            found.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ConfigError(name, f"holds {show(part)}, which is not a CIDR") from None
    return tuple(found)
