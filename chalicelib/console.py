"""Where the operator's console (the dashboard) is served: on an origin of its own.

A browser lets any page of an origin act on every other page of it: read its session storage,
register a service worker that sees its requests. The gateway serves whatever its upstreams
answer, and anyone holding one service token can register an upstream, so the dashboard (and
the admin token it holds) must never share an origin with that content. The console is
therefore served only on a domain named for it, ``LAMBDAMESH_CONSOLE_DOMAIN``, which serves
the registry API and the dashboard but never the gateway's routes; every other domain serves
the gateway and never the dashboard. Unset, there is no console at all.

The domain is the one API Gateway (or the function URL) received the request on
(``requestContext.domainName``), which the client cannot choose apart from the URL it opens.
A function URL's domain is known only once it exists, so ``function-url`` names it: the
console is then the function URL lane.
"""

from __future__ import annotations

from typing import NamedTuple

from chalicelib.errors import ConfigError
from chalicelib.function_url import URL_LANE as FUNCTION_URL
from lambdamesh_routing.hosts import is_dns_name

__all__ = ["FUNCTION_URL", "Arrival", "is_console", "parse_console_domain"]


class Arrival(NamedTuple):
    """How a request reached the function: the domain it was sent to, and whether it came
    through the function URL rather than API Gateway."""

    domain: str | None
    via_function_url: bool = False


def parse_console_domain(raw: str | None, name: str = "LAMBDAMESH_CONSOLE_DOMAIN") -> str:
    """The setting, lower-cased: empty (no console), ``function-url``, or a DNS name."""
    value = (raw or "").strip().lower().removesuffix(".")
    if value in ("", FUNCTION_URL) or is_dns_name(value):
        return value
    raise ConfigError(
        f"{name} must be a domain name (the console's own, e.g. console.mesh.example.com) "
        f"or {FUNCTION_URL!r}, got {raw!r}"
    )


def is_console(setting: str, arrival: Arrival) -> bool:
    """Whether this request arrived on the console's origin."""
    if not setting:
        return False
    if setting == FUNCTION_URL:
        return arrival.via_function_url
    domain = (arrival.domain or "").strip().lower().removesuffix(".")
    return not arrival.via_function_url and domain == setting
