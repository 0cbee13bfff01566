"""The operator's commands on the registry API, each one request:

* `lambdamesh policy show|set|delete SERVICE`: a service's routing policy
  (`GET/PUT/DELETE /registry/services/{service}/policy`);
* `lambdamesh exposure show|set|delete SERVICE`: how the public gateway serves a service
  (`GET/PUT/DELETE /registry/services/{service}/exposure`);
* `lambdamesh drain SERVICE INSTANCE [--lift]`: an instance out of rotation, or back
  (`PUT/DELETE /registry/services/{service}/instances/{id}/drain`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from lambdamesh.apiclient import Api, UsageError, segment


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help="the registry's base URL (default: $LAMBDAMESH_URL), e.g. the stage URL"
    )
    parser.add_argument(
        "--token",
        help="a token (default: $LAMBDAMESH_TOKEN); policies and drains need an admin one",
    )


@dataclass(frozen=True)
class DocumentKind:
    """A per-service document of the registry API that an operator shows, sets or deletes."""

    command: str
    resource: str
    help: str
    description: str
    when_deleted: str


POLICY = DocumentKind(
    "policy",
    "policy",
    "show, set or delete a service's routing policy",
    "A service's routing policy: version aliases and splits, balancing strategy, timeouts, "
    "retries, outlier ejection. See the README for the format.",
    "defaults apply",
)
EXPOSURE = DocumentKind(
    "exposure",
    "exposure",
    "show, set or delete how the public gateway serves a service",
    "A service's exposure document: whether the public gateway serves it, which versions, "
    "and to which callers (API keys, JWT, addresses, CORS, rate limits). See the README's "
    "'Securing the edge'.",
    "LAMBDAMESH_EDGE_DEFAULT applies (closed: not served)",
)


def add_document_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], kind: DocumentKind
) -> None:
    parser = commands.add_parser(kind.command, help=kind.help, description=kind.description)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help=f"print the {kind.command} as JSON (exit 3 if none)")
    put = actions.add_parser("set", help=f"store the {kind.command}, replacing any")
    put.add_argument("--file", required=True, help="the document, JSON; '-' reads standard input")
    delete = actions.add_parser("delete", help=f"delete it: {kind.when_deleted}")
    for action in (show, put, delete):
        action.add_argument("service", metavar="SERVICE")
        add_connection_options(action)


def add_policy_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_document_command(commands, POLICY)


def add_exposure_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_document_command(commands, EXPOSURE)


def add_drain_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    drain = commands.add_parser(
        "drain",
        help="take an instance out of rotation (its heartbeats cannot undo it), or --lift",
        description="Take a live instance out of rotation until an operator lifts the drain: "
        "the gateway sends it no new requests, whatever its own heartbeats report.",
    )
    drain.add_argument("service", metavar="SERVICE")
    drain.add_argument("instance", metavar="INSTANCE")
    drain.add_argument("--lift", action="store_true", help="put the instance back in rotation")
    add_connection_options(drain)


def drain_command(args: argparse.Namespace) -> int:
    api = Api.from_options(args.url, args.token)
    path = f"/registry/services/{segment(args.service)}/instances/{segment(args.instance)}/drain"
    if args.lift:
        api.call("DELETE", path)
        print(f"{args.service} {args.instance}: drain lifted; back in rotation")
    else:
        api.call("PUT", path)
        print(f"{args.service} {args.instance}: drained; out of rotation until --lift")
    return 0


def document_command(args: argparse.Namespace, kind: DocumentKind, stdin: TextIO) -> int:
    api = Api.from_options(args.url, args.token)
    path = f"/registry/services/{segment(args.service)}/{kind.resource}"
    if args.action == "show":
        print(json.dumps(api.call("GET", path), indent=2, sort_keys=True))
    elif args.action == "set":
        answer = api.call("PUT", path, _document(args.file, stdin))
        print(json.dumps(answer, indent=2, sort_keys=True))
    else:
        api.call("DELETE", path)
        print(f"{kind.command} of {args.service} deleted; {kind.when_deleted}")
    return 0


def policy_command(args: argparse.Namespace, stdin: TextIO = sys.stdin) -> int:
    return document_command(args, POLICY, stdin)


def exposure_command(args: argparse.Namespace, stdin: TextIO = sys.stdin) -> int:
    return document_command(args, EXPOSURE, stdin)


def _document(name: str, stdin: TextIO) -> Any:
    try:
        text = stdin.read() if name == "-" else Path(name).read_text()
        return json.loads(text)
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{name} is not JSON: {exc}") from None


def add_keys_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser(
        "keys",
        help="create, list or revoke a service's API keys",
        description="API keys open a service whose exposure document says auth: api_key. A "
        "new key is printed once; only a hash of it is stored. Needs an admin token.",
    )
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key and print it (shown this once)")
    create.add_argument(
        "--consumer", required=True, help="who the key is for; sent upstream with each call"
    )
    create.add_argument(
        "--expires-in-days",
        type=float,
        metavar="DAYS",
        help="days until it expires (default: never)",
    )
    listing = actions.add_parser("list", help="the keys, without their secrets")
    listing.add_argument("--json", action="store_true", help="the API's answer as JSON")
    revoke = actions.add_parser("revoke", help="revoke a key (within the cache period)")
    for action in (create, listing, revoke):
        action.add_argument("service", metavar="SERVICE")
        add_connection_options(action)
    revoke.add_argument("key_id", metavar="KEY_ID")


def keys_command(args: argparse.Namespace) -> int:
    api = Api.from_options(args.url, args.token)
    path = f"/registry/services/{segment(args.service)}/keys"
    if args.action == "create":
        body = {"consumer": args.consumer, "expires_in_days": args.expires_in_days}
        created = api.call("POST", path, body)
        print(created["key"])
        print(
            f"key {created['key_id']} for {created['consumer']}: store it now, it is not shown "
            "again",
            file=sys.stderr,
        )
    elif args.action == "list":
        found = api.call("GET", path)
        print(json.dumps(found, indent=2) if args.json else _key_table(found["keys"]))
    else:
        api.call("DELETE", f"{path}/{segment(args.key_id)}")
        print(f"key {args.key_id} of {args.service} revoked")
    return 0


def _key_table(keys: list[dict[str, Any]]) -> str:
    heading = ("KEY_ID", "CONSUMER", "CREATED", "EXPIRES", "REVOKED", "LAST USED")
    rows = [heading] + [
        (
            k["key_id"],
            k["consumer"],
            _when(k["created_at"]),
            _when(k["expires_at"]),
            _when(k["revoked_at"]),
            _when(k["last_used_at"]),
        )
        for k in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(heading))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(stamp))
