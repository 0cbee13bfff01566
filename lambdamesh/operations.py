"""The operator's commands on the registry API, each one request:

* `lambdamesh policy show|set|delete SERVICE`: a service's routing policy
  (`GET/PUT/DELETE /registry/services/{service}/policy`);
* `lambdamesh drain SERVICE INSTANCE [--lift]`: an instance out of rotation, or back
  (`PUT/DELETE /registry/services/{service}/instances/{id}/drain`).
"""

from __future__ import annotations

import argparse
import json
import sys
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


def add_policy_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = commands.add_parser(
        "policy",
        help="show, set or delete a service's routing policy",
        description="A service's routing policy: version aliases and splits, balancing "
        "strategy, timeouts, retries, outlier ejection. See the README for the format.",
    )
    actions = policy.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="print the policy as JSON (exit 3 if none)")
    put = actions.add_parser("set", help="store a policy, replacing any")
    put.add_argument(
        "--file", required=True, help="the policy document, JSON; '-' reads standard input"
    )
    delete = actions.add_parser("delete", help="delete the policy: defaults apply again")
    for action in (show, put, delete):
        action.add_argument("service", metavar="SERVICE")
        add_connection_options(action)


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


def policy_command(args: argparse.Namespace, stdin: TextIO = sys.stdin) -> int:
    api = Api.from_options(args.url, args.token)
    path = f"/registry/services/{segment(args.service)}/policy"
    if args.action == "show":
        print(json.dumps(api.call("GET", path), indent=2, sort_keys=True))
    elif args.action == "set":
        answer = api.call("PUT", path, _document(args.file, stdin))
        print(json.dumps(answer, indent=2, sort_keys=True))
    else:
        api.call("DELETE", path)
        print(f"policy of {args.service} deleted; defaults apply")
    return 0


def _document(name: str, stdin: TextIO) -> Any:
    try:
        text = stdin.read() if name == "-" else Path(name).read_text()
        return json.loads(text)
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{name} is not JSON: {exc}") from None
