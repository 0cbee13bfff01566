"""The `lambdamesh` command: mint tokens, create the table, configure and check a stage,
and (with the `local` extra) run the app locally."""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from chalicelib.config import Settings
from chalicelib.errors import LambdaMeshError
from lambdamesh.apiclient import ApiError
from lambdamesh.cost import add_cost_command, cost_command
from lambdamesh.finishing import finish_command
from lambdamesh.listing import (
    add_listing_commands,
    deregister_command,
    instances_command,
    services_command,
)
from lambdamesh.meshca import add_mesh_ca_command, mesh_ca_command
from lambdamesh.operations import (
    add_connection_options,
    add_drain_command,
    add_exposure_command,
    add_keys_command,
    add_policy_command,
    drain_command,
    exposure_command,
    keys_command,
    policy_command,
)
from lambdamesh.taskevent import add_task_event_command, task_event_command

PROG = "lambdamesh"
# What each extra brings, by the modules a command imports.
EXTRAS = {"local": ("chalice", "moto")}


class CommandError(LambdaMeshError):
    code = "command_error"


def _version() -> str:
    try:
        return version("lambdamesh")
    except PackageNotFoundError:
        return "unknown (not installed)"


def require_extra(extra: str, command: str) -> None:
    """One line naming the extra to install, instead of a traceback from deep inside."""
    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if missing:
        raise CommandError(
            f"`{PROG} {command}` needs {', '.join(missing)}: pip install 'lambdamesh[{extra}]'"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serverless service registry and API gateway for ECS: operator tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser(
        "dev",
        help="run the app locally (needs the `local` extra: pip install 'lambdamesh[local]')",
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
        "--url-port",
        type=int,
        metavar="PORT",
        help="also serve the app as a Lambda function URL (payload 2.0) on this port; "
        "0 picks a free one (default: off)",
    )
    dev.add_argument(
        "--console-port",
        type=int,
        metavar="PORT",
        help="serve the console (the dashboard and the registry API, no gateway routes) on "
        "this port, an origin apart from the gateway's; 0 picks a free one "
        "(default: --port plus one, or a free one with --port 0)",
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
        help="print a registration token signed with the stage's key",
        description="Print a token for SERVICE, or an admin token with --admin, signed with "
        "the first key of $LAMBDAMESH_SIGNING_KEY or of the Secrets Manager secret named.",
    )
    scope = token.add_mutually_exclusive_group(required=True)
    scope.add_argument("service", nargs="?", help="the service the token may write")
    scope.add_argument("--admin", action="store_true", help="a token that may write any service")
    token.add_argument(
        "--signing-key-secret",
        metavar="SECRET",
        help="read the key from this Secrets Manager secret (name or ARN), e.g. "
        "lambdamesh/prod/signing-key, with the usual AWS environment",
    )
    _stage_commands(commands)
    add_cost_command(commands)
    add_listing_commands(commands, add_connection_options)
    add_policy_command(commands)
    add_drain_command(commands)
    add_exposure_command(commands)
    add_keys_command(commands)
    add_task_event_command(commands)
    add_mesh_ca_command(commands)

    commands.add_parser(
        "bootstrap",
        help="create the registry table (idempotent) wherever boto3 points",
        description="Create the registry table $LAMBDAMESH_TABLE with TTL on expires_at, "
        "using the usual AWS environment (AWS_REGION, AWS_ENDPOINT_URL_DYNAMODB, credentials).",
    )
    return parser


def _stage_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    configure = commands.add_parser(
        "configure",
        help="write a stage's VPC settings into .chalice/config.json from stack outputs",
        description="Set the stage's subnet_ids, security_group_ids and "
        "LAMBDAMESH_ALLOWED_NETWORKS from the network stack's outputs (and its table and "
        "signing key, when those stacks are named too), so that no id is copied by hand.",
    )
    configure.add_argument("--stage", required=True, help="the Chalice stage, e.g. prod")
    source = configure.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--network-stack", metavar="NAME", help="the deployed network stack (infra/network.yaml)"
    )
    source.add_argument(
        "--outputs",
        metavar="FILE",
        type=Path,
        help="offline: a JSON file of stack outputs (describe-stacks output, its Outputs "
        'list, or {"SubnetIds": "...", ...})',
    )
    configure.add_argument(
        "--registry-stack", metavar="NAME", help="also take LAMBDAMESH_TABLE from this stack"
    )
    configure.add_argument(
        "--signing-key-stack",
        metavar="NAME",
        help="also take LAMBDAMESH_SIGNING_KEY_SECRET from this stack",
    )
    check = commands.add_parser(
        "check",
        help="refuse a stage that is not safe to deploy (run it before chalice deploy/package)",
        description="Check a stage of .chalice/config.json: private upstreams need "
        "LAMBDAMESH_ALLOWED_NETWORKS and VPC settings; the signing key must come from a secret.",
    )
    check.add_argument("--stage", required=True, help="the Chalice stage, e.g. prod")
    finish = commands.add_parser(
        "finish-package",
        help="make a `chalice package` output fast to cold-start (run it after chalice package)",
        description="Compile the package's modules to bytecode for the runtime (Lambda cannot "
        "write it, so it would compile them on every cold start) and drop botocore's data for "
        "the AWS services the app never calls. Rewrites OUT/deployment.zip in place; run it "
        "with the Python that ran `chalice package`, whose version the runtime names.",
    )
    finish.add_argument("out", type=Path, metavar="OUT", help="the `chalice package` output")
    for command in (configure, check):
        command.add_argument(
            "--project-dir",
            type=Path,
            default=Path.cwd(),
            help="the directory holding .chalice/ (default: the current one)",
        )


def token_command(service: str | None, admin: bool, secret: str | None) -> int:
    from chalicelib.auth import issue
    from lambdamesh.keys import signing_key
    from lambdamesh_routing.names import check_name

    if not admin:
        assert service is not None
        check_name("service", service)
    print(issue(signing_key(secret), service=None if admin else service))
    return 0


def configure_command(args: argparse.Namespace) -> int:
    from lambdamesh import stages

    outputs = stages.outputs_from_file(args.outputs) if args.outputs is not None else {}
    named = [args.network_stack, args.registry_stack, args.signing_key_stack]
    names = [name for name in named if name]
    if names:
        outputs = {**outputs, **stages.outputs_from_stacks(names)}
    config = stages.configure(stages.load(args.project_dir), args.stage, outputs)
    stage = stages.view(config, args.stage)
    Settings.from_environ(stage.environment)  # refuses, before writing, a malformed network
    stages.save(args.project_dir, config)
    print(
        f"stage {args.stage}: {len(stage.subnet_ids)} subnets, security groups "
        f"{','.join(stage.security_group_ids)}, allowed networks "
        f"{stage.environment['LAMBDAMESH_ALLOWED_NETWORKS']}"
    )
    for problem in stages.problems(stage):
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def check_command(args: argparse.Namespace) -> int:
    from lambdamesh import stages

    stage = stages.view(stages.load(args.project_dir), args.stage)
    found = stages.problems(stage)
    for problem in found:
        print(f"{PROG}: stage {args.stage}: {problem}", file=sys.stderr)
    if found:
        return 2
    for warning in stages.warnings(stage):
        print(f"{PROG}: stage {args.stage}: warning: {warning}", file=sys.stderr)
    print(f"stage {args.stage} is ready to deploy")
    return 0


def bootstrap_command() -> int:
    from chalicelib.storage import InstanceStore, missing_task_index_advice

    settings = Settings.from_environ()
    store = InstanceStore(settings)
    created = store.create_table()
    state = "created" if created else "already exists"
    print(f"table {settings.table_name} {state}")
    if not created and not store.has_task_index():
        print(missing_task_index_advice(settings.table_name), file=sys.stderr)
    return 0


def dev_command(
    host: str,
    port: int,
    demo: bool,
    dynamodb_endpoint: str | None,
    url_port: int | None = None,
    console_port: int | None = None,
) -> int:
    require_extra("local", "dev")
    from lambdamesh.demo import Demo
    from lambdamesh.devserver import DevServer
    from lambdamesh.keys import signing_key
    from lambdamesh.processes import Supervisor
    from lambdamesh.stopping import StopRequest

    stop = StopRequest()
    stop.install()
    if not _is_loopback(host) and not os.environ.get("LAMBDAMESH_SIGNING_KEY"):
        raise CommandError(
            f"listening on {host} with the published development signing key would let anyone "
            "who can reach it mint tokens (and reach this machine's loopback services through "
            "the gateway): set LAMBDAMESH_SIGNING_KEY, or listen on 127.0.0.1"
        )
    if console_port is None:
        console_port = port + 1 if port else 0
    server = DevServer(
        host=host,
        port=port,
        dynamodb_endpoint=dynamodb_endpoint,
        url_port=url_port,
        console_port=console_port,
    )
    supervisor = Supervisor()
    try:
        try:
            url = server.start()
        except OSError as exc:
            where = exc.filename or f"{host}:{port}"
            message = f"cannot listen on {where}: {exc.strerror} (try --port or --console-port)"
            raise CommandError(message) from None
        dynamodb = os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
        if server.url_lane is not None:
            print(f"function URL lane on {server.url_lane}", flush=True)
        if server.console is not None:
            print(
                f"console on {server.console} (the dashboard: {server.console}/dashboard)",
                flush=True,
            )
        print(f"lambdamesh dev ready on {url} (DynamoDB at {dynamodb})", flush=True)
        if demo:
            showcase = Demo(url, signing_key(), supervisor, console=server.console)
            showcase.start()
            if not showcase.wait_until_registered():
                print("warning: the demo instances have not all registered yet", flush=True)
            print(showcase.instructions(), flush=True)
        print("Press Ctrl-C to stop (twice to stop at once).", flush=True)
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


# Each command's entry point, given the parsed arguments.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "token": lambda a: token_command(a.service, a.admin, a.signing_key_secret),
    "bootstrap": lambda a: bootstrap_command(),
    "configure": configure_command,
    "check": check_command,
    "cost": cost_command,
    "finish-package": lambda a: finish_command(a.out),
    "services": services_command,
    "instances": instances_command,
    "deregister": deregister_command,
    "policy": policy_command,
    "drain": drain_command,
    "exposure": exposure_command,
    "keys": keys_command,
    "task-event": task_event_command,
    "mesh-ca": mesh_ca_command,
    "dev": lambda a: dev_command(
        a.host, a.port, a.demo, a.dynamodb_endpoint, a.url_port, a.console_port
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A reader that stops early (``lambdamesh cost | head -1``) ends it
    quietly with status 1, as the ``signal`` module's "Note on SIGPIPE" advises: a network
    error is the command's own to report, so a broken pipe here is stdout's."""
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # a closed pipe is then met here, not in the flush at exit
    except BrokenPipeError:
        _drop_stdout()
        return 1


def _drop_stdout() -> None:
    """Point stdout at devnull, so that Python's own flush at exit has nowhere to fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _run(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ApiError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except LambdaMeshError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
