"""`lambdamesh services`, `lambdamesh instances SERVICE` and `lambdamesh deregister SERVICE
INSTANCE`: what the registry holds, as aligned tables for people or JSON for scripts."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from lambdamesh.apiclient import Api, segment

Clock = Callable[[], float]


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns padded to their widest cell, numbers right-aligned, two spaces apart."""
    cells = [[str(c) for c in headers], *([_cell(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [
        all(_is_number(row[i]) for row in cells[1:]) and len(cells) > 1 for i in range(len(headers))
    ]
    lines = [
        "  ".join(
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, numeric, strict=True)
        ).rstrip()
        for row in cells
    ]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("s"))
    except ValueError:
        return text == "-"
    return True


def services_table(answer: Mapping[str, Any]) -> str:
    rows = [
        (
            entry["service"],
            entry["live"],
            entry["total"],
            " ".join(
                f"{version}:{counts['live']}/{counts['total']}"
                for version, counts in entry["versions"].items()
            ),
            edge_cell(entry.get("exposure")),
        )
        for entry in answer["services"]
    ]
    if not rows:
        return "no services registered"
    return table(("SERVICE", "LIVE", "STORED", "VERSIONS (live/stored)", "EDGE"), rows)


def edge_cell(summary: Mapping[str, Any] | None) -> str:
    """How a service faces the internet, in a few words: ``internal``, or who may call
    (``public``, ``api_key``, ``jwt``, ``api_key|jwt``) and which versions when not all;
    ``(default)`` when the service declared nothing and the stage's default applies."""
    if summary is None:
        return "-"
    if not summary["exposed"]:
        found = "internal"
    else:
        auth = summary["auth"]
        found = "public" if "none" in auth else "|".join(auth)
        if summary["versions"] is not None:
            found += f" [{','.join(summary['versions'])}]"
    return found if summary["declared"] else f"{found} (default)"


def instances_table(answer: Mapping[str, Any], now: float) -> str:
    rows = [
        (
            i["instance_id"],
            i["version"],
            i["host"],
            i["port"],
            i["zone"],
            "DRAINED" if i.get("drained") else i["status"],
            i["weight"],
            f"{max(0.0, now - float(i['updated_at'])):.1f}s",
            f"{float(i['expires_in']):.1f}s",
            calls_cell(i, "in", now),
            calls_cell(i, "out", now),
        )
        for i in answer["instances"]
    ]
    if not rows:
        return f"no live instance of {answer['service']}"
    headers = (
        "INSTANCE",
        "VERSION",
        "HOST",
        "PORT",
        "ZONE",
        "STATUS",
        "WEIGHT",
        "BEAT",
        "LEASE",
        "IN",
        "OUT",
    )
    return table(headers, rows)


def calls_cell(instance: Mapping[str, Any], port: str, now: float) -> str | None:
    """One port's figures in a few words: ``120/60s p99 20.5ms 2err`` (calls in the window,
    the 99th percentile, errors when any); None (``-``) when the port reported none. ``stale``
    after them when they are older than two of their windows while heartbeats came since
    without any: the sidecar stopped sending them."""
    figures = instance.get("figures")
    calls = None if figures is None else figures.get(port)
    if figures is None or calls is None:
        return None
    window, reported_at = float(figures["seconds"]), float(figures["reported_at"])
    found = f"{calls['requests']}/{window:.{1 if window < 10 else 0}f}s"
    if calls["p99_ms"] is not None:
        found += f" p99 {calls['p99_ms']:g}ms"
    if calls["errors"]:
        found += f" {calls['errors']}err"
    if float(instance["updated_at"]) > reported_at and now - reported_at > 2 * window:
        found += " stale"
    return found


def add_listing_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    connection_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    services = commands.add_parser(
        "services",
        help="list the services with their live and stored instances per version, and how "
        "each faces the internet",
        description="The registered services. EDGE says how the public gateway serves each: "
        "internal (not at all), public, or the ways a caller proves who it is (api_key, jwt), "
        "with the versions served when not all; (default) marks a service that declared "
        "nothing, served as LAMBDAMESH_EDGE_DEFAULT says. `lambdamesh exposure show SERVICE` "
        "prints the whole document.",
    )
    instances = commands.add_parser(
        "instances",
        help="list a service's live instances (status, heartbeat age, lease left, calls)",
        description="A service's live instances. BEAT is the time since the last heartbeat "
        "(or registration), LEASE the time left on it; DRAINED marks an operator's drain. IN "
        "and OUT are the calls through the sidecar's inbound and outbound ports that its last "
        "figures counted (120/60s: 120 calls in 60 s), their 99th percentile and errors; "
        "stale when those figures are older than two of their windows and heartbeats came "
        "since without any.",
    )
    instances.add_argument("service", metavar="SERVICE")
    instances.add_argument(
        "--version", dest="only_version", metavar="VERSION", help="only this version"
    )
    deregister = commands.add_parser(
        "deregister",
        help="remove an instance from the registry (its sidecar registers it again if alive)",
    )
    deregister.add_argument("service", metavar="SERVICE")
    deregister.add_argument("instance", metavar="INSTANCE")
    for command in (services, instances):
        command.add_argument("--json", action="store_true", help="the API's JSON, as is")
    for command in (services, instances, deregister):
        connection_options(command)


def services_command(args: argparse.Namespace) -> int:
    answer = Api.from_options(args.url, args.token).call("GET", "/registry/services")
    print(json.dumps(answer, indent=2) if args.json else services_table(answer))
    return 0


def instances_command(args: argparse.Namespace, clock: Clock = time.time) -> int:
    query = f"?{urlencode({'version': args.only_version})}" if args.only_version else ""
    path = f"/registry/services/{segment(args.service)}/instances{query}"
    answer = Api.from_options(args.url, args.token).call("GET", path)
    print(json.dumps(answer, indent=2) if args.json else instances_table(answer, clock()))
    return 0


def deregister_command(args: argparse.Namespace) -> int:
    path = f"/registry/services/{segment(args.service)}/instances/{segment(args.instance)}"
    Api.from_options(args.url, args.token).call("DELETE", path)
    print(f"{args.service} {args.instance}: deregistered")
    return 0
