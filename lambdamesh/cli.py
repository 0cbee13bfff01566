"""The `lambdamesh` command: run the app locally, mint tokens, create the table."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from chalicelib.config import MIN_SIGNING_KEY_LENGTH, Settings
from chalicelib.errors import ConfigError, LambdaMeshError

PROG = "lambdamesh"


class CommandError(LambdaMeshError):
    code = "command_error"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serverless service registry and API gateway for ECS: local tools.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser(
        "dev",
        help="run the app locally (Chalice's local server, DynamoDB embedded or named)",
        description="Run lambdamesh locally in the foreground until Ctrl-C or SIGTERM.",
    )
    dev.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    dev.add_argument(
        "--port",
        type=int,
        default=8000,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )
    dev.add_argument(
        "--demo",
        action="store_true",
        help="also start two demo services, two instances each, each with a real sidecar",
    )
    dev.add_argument(
        "--dynamodb-endpoint",
        metavar="URL",
        help="use this DynamoDB endpoint instead of an embedded moto server "
        "(default: $AWS_ENDPOINT_URL_DYNAMODB, else embedded)",
    )

    token = commands.add_parser(
        "token",
        help="print a registration token signed with $LAMBDAMESH_SIGNING_KEY",
        description="Print a token for SERVICE, or an admin token with --admin.",
    )
    scope = token.add_mutually_exclusive_group(required=True)
    scope.add_argument("service", nargs="?", help="the service the token may write")
    scope.add_argument("--admin", action="store_true", help="a token that may write any service")

    commands.add_parser(
        "bootstrap",
        help="create the registry table (idempotent) wherever boto3 points",
        description="Create the registry table $LAMBDAMESH_TABLE with TTL on expires_at, "
        "using the usual AWS environment (AWS_REGION, AWS_ENDPOINT_URL_DYNAMODB, credentials).",
    )
    return parser


def _signing_key() -> bytes:
    """The key that signs: the first of ``LAMBDAMESH_SIGNING_KEY``'s comma-separated keys."""
    from chalicelib.auth import parse_keys
    from lambdamesh.devserver import DEV_SIGNING_KEY

    text = os.environ.get("LAMBDAMESH_SIGNING_KEY", "")
    try:
        return parse_keys(text)[0]
    except ConfigError:
        raise ConfigError(
            f"set LAMBDAMESH_SIGNING_KEY to the app's signing key (at least "
            f"{MIN_SIGNING_KEY_LENGTH} characters; `lambdamesh dev` uses {DEV_SIGNING_KEY} "
            "unless it is set)"
        ) from None


def token_command(service: str | None, admin: bool) -> int:
    from chalicelib.auth import issue
    from chalicelib.validation import check_name

    if not admin:
        assert service is not None
        check_name("service", service)
    print(issue(_signing_key(), service=None if admin else service))
    return 0


def bootstrap_command() -> int:
    from chalicelib.storage import InstanceStore

    settings = Settings.from_environ()
    created = InstanceStore(settings).create_table()
    state = "created" if created else "already exists"
    print(f"table {settings.table_name} {state}")
    return 0


def dev_command(host: str, port: int, demo: bool, dynamodb_endpoint: str | None) -> int:
    from lambdamesh.demo import Demo
    from lambdamesh.devserver import DevServer
    from lambdamesh.processes import Supervisor

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    if not _is_loopback(host) and not os.environ.get("LAMBDAMESH_SIGNING_KEY"):
        raise CommandError(
            f"listening on {host} with the published development signing key would let anyone "
            "who can reach it mint tokens (and reach this machine's loopback services through "
            "the gateway): set LAMBDAMESH_SIGNING_KEY, or listen on 127.0.0.1"
        )
    server = DevServer(host=host, port=port, dynamodb_endpoint=dynamodb_endpoint)
    supervisor = Supervisor()
    try:
        try:
            url = server.start()
        except OSError as exc:
            message = f"cannot listen on {host}:{port}: {exc.strerror} (try --port)"
            raise CommandError(message) from None
        dynamodb = os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
        print(f"lambdamesh dev ready on {url} (DynamoDB at {dynamodb})", flush=True)
        if demo:
            showcase = Demo(url, _signing_key(), supervisor)
            showcase.start()
            if not showcase.wait_until_registered():
                print("warning: the demo instances have not all registered yet", flush=True)
            print(showcase.instructions(), flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        stop.wait()
        print("stopping...", flush=True)
    finally:
        supervisor.stop_all()
        server.stop()
    print("stopped", flush=True)
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "token":
            return token_command(args.service, args.admin)
        if args.command == "bootstrap":
            return bootstrap_command()
        return dev_command(args.host, args.port, args.demo, args.dynamodb_endpoint)
    except LambdaMeshError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
