"""`lambdamesh task-event`: hand the local app an ECS task state change, as EventBridge hands
the deployed function one.

Either a file holding the event (EventBridge's JSON, as ECS documents it, or as copied from
CloudWatch), or ``--stopped TASK_ARN``, which makes the event ECS sends when a task stops.
It goes to `lambdamesh dev`'s Invoke API (``lambdamesh/invocations.py``), never to AWS: on
AWS, EventBridge is the only caller. A task ARN is checked by the registry's own rule
(``chalicelib/validation.py``), so a made event names a task that could have registered.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from lambdamesh.apiclient import EXIT_FAILED, ApiError, UsageError
from lambdamesh_routing.names import MAX_TASK_ARN, TASK_ARN_RULE

DEFAULT_URL = "http://127.0.0.1:8000"
INVOKE_PATH = "/2015-03-31/functions/lambdamesh/invocations"
TIMEOUT_SECONDS = 30.0
MAX_EVENT_BYTES = 256 * 1024  # EventBridge's largest event
DEFAULT_STOP_CODE = "EssentialContainerExited"
# The notice ECS sends two minutes before it stops a Fargate Spot task: the task still runs.
NOTICE = "TerminationNotice"
STOP_CODES = (
    "EssentialContainerExited",
    "TaskFailedToStart",
    "UserInitiated",
    "ServiceSchedulerInitiated",
    "SpotInterruption",
    "TerminationNotice",
)
REASONS = {
    "EssentialContainerExited": "Essential container in task exited",
    "SpotInterruption": "Your Spot Task was interrupted.",
    "TerminationNotice": "Your Spot Task was interrupted.",
}
EXAMPLE_ARN = "arn:aws:ecs:us-east-1:123456789012:task/my-cluster/0123456789abcdef0123456789abcdef"
DESCRIPTION = """\
Invoke the local app with an ECS "ECS Task State Change" event, read from FILE
(- for stdin) or made by --stopped, and print the function's answer: which
instances it removed, or why it removed none. A stopping task's instances
leave the registry at once; other events change nothing.

The event goes to `lambdamesh dev`'s Invoke API (--url), never to AWS: there,
EventBridge delivers ECS's own events to the function."""
EPILOG = f"""\
examples:
  lambdamesh task-event --stopped \\
      {EXAMPLE_ARN}
  lambdamesh task-event --stopped TASK_ARN --stop-code TerminationNotice
  lambdamesh task-event event.json    (an event as ECS documents it)

exit status: 0 the function answered, whatever it did; 2 a bad argument, or a
FILE that holds no JSON event; 5 `lambdamesh dev` could not be reached, or the
function failed."""


def stopped_event(
    task_arn: str,
    stop_code: str = DEFAULT_STOP_CODE,
    last_status: str = "STOPPED",
    now: datetime | None = None,
) -> dict[str, Any]:
    """The "ECS Task State Change" event of a stopped (or stopping) task, in the fields ECS
    documents for it: the envelope EventBridge adds, and the task's ``detail``. A task that
    still runs (``last_status`` RUNNING, as in a Spot termination notice) has no stop times."""
    moment = (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    region, account, cluster = _parts(task_arn)
    leaving = last_status != "RUNNING"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": account,
        "time": moment[:19] + "Z",
        "region": region,
        "resources": [task_arn],
        "detail": {
            "clusterArn": f"arn:aws:ecs:{region}:{account}:cluster/{cluster}",
            "taskArn": task_arn,
            "desiredStatus": "STOPPED",
            "lastStatus": last_status,
            "stopCode": stop_code,
            "stoppedReason": REASONS.get(stop_code, stop_code),
            **({"stoppingAt": moment} if leaving else {}),
            **({"stoppedAt": moment} if last_status == "STOPPED" else {}),
            "updatedAt": moment,
            "launchType": "FARGATE",
            "version": 5,
        },
    }


def _parts(task_arn: str) -> tuple[str, str, str]:
    """Region, account and cluster name of a task ARN (``default`` for the short form)."""
    if len(task_arn) > MAX_TASK_ARN or not TASK_ARN_RULE.fullmatch(task_arn):
        raise UsageError(
            f"not an ECS task ARN: {task_arn[:200]!r}; use "
            "arn:aws:ecs:<region>:<account>:task/<cluster>/<task id>"
        )
    fields = task_arn.split(":", 5)
    path = fields[5].split("/")
    return fields[3], fields[4], path[1] if len(path) == 3 else "default"


def add_task_event_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "task-event",
        help="hand `lambdamesh dev` an ECS task state change, as EventBridge does on AWS",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = command.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", metavar="FILE", help="the event as JSON; - for stdin")
    source.add_argument(
        "--stopped",
        metavar="TASK_ARN",
        help="make the event ECS sends when this task stops: its ARN, "
        "arn:aws:ecs:<region>:<account>:task/<cluster>/<task id>, as the task's sidecar "
        "registered it",
    )
    command.add_argument(
        "--stop-code",
        choices=STOP_CODES,
        metavar="CODE",
        help=f"with --stopped: why ECS stopped it, one of {', '.join(STOP_CODES)} (default: "
        f"{DEFAULT_STOP_CODE}); {NOTICE} makes the Spot warning ECS sends while the task "
        "still runs",
    )
    command.add_argument(
        "--url",
        default=DEFAULT_URL,
        help="`lambdamesh dev`'s address (default: %(default)s)",
    )


def task_event_command(args: argparse.Namespace, stdin: TextIO | None = None) -> int:
    if args.stopped:
        code = args.stop_code or DEFAULT_STOP_CODE
        event = stopped_event(args.stopped, code, "RUNNING" if code == NOTICE else "STOPPED")
    elif args.stop_code:
        raise UsageError("--stop-code goes with --stopped; a FILE's event has its own")
    else:
        event = _read_event(args.file, sys.stdin if stdin is None else stdin)
    answer = invoke(args.url, event)
    print(json.dumps(answer, indent=2, sort_keys=True))
    return 0


def _read_event(name: str, stdin: TextIO) -> Any:
    try:
        text = stdin.read(MAX_EVENT_BYTES + 1) if name == "-" else _read_file(name)
    except UnicodeDecodeError:
        raise UsageError(f"{name}: not UTF-8 text, so not JSON") from None
    if len(text.encode()) > MAX_EVENT_BYTES:
        raise UsageError(f"{name}: larger than EventBridge's {MAX_EVENT_BYTES // 1024} KB")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{name}: not JSON ({exc})") from None


def _read_file(name: str) -> str:
    try:
        with Path(name).open(encoding="utf-8") as handle:
            return handle.read(MAX_EVENT_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{name}: {exc.strerror}") from None


def invoke(url: str, event: Any) -> Any:
    """The function's answer to ``event``, through the Invoke API at ``url``."""
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise UsageError(f"--url must be an http(s) URL, got {url[:200]!r}")
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
        url.rstrip("/") + INVOKE_PATH,
        data=json.dumps(event).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            body = response.read()
            failed = response.headers.get("X-Amz-Function-Error")
    except urllib.error.HTTPError as exc:
        reason = _refusal(exc.read(4096))
        raise ApiError(f"{url} refused the event: HTTP {exc.code}{reason}", EXIT_FAILED) from None
    except OSError as exc:
        raise ApiError(f"cannot reach {url}: {exc}", EXIT_FAILED) from None
    try:
        answer = json.loads(body) if body else None
    except ValueError:
        raise ApiError(
            f"{url} answered, but not as `lambdamesh dev`'s Invoke API (no JSON)", EXIT_FAILED
        ) from None
    if failed:
        message = answer.get("errorMessage") if isinstance(answer, dict) else answer
        raise ApiError(f"the function failed: {message}", EXIT_FAILED)
    return answer


def _refusal(body: bytes) -> str:
    """The reason in an Invoke API error (``{"message": ...}``), if it gave one."""
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        return ""
    return f" ({str(message)[:200]})" if message else ""
