"""`lambdamesh task-event`: hand the local app an ECS task state change, as EventBridge hands
the deployed function one.

Either a file holding the event (EventBridge's JSON, as ECS documents it, or as copied from
CloudWatch), or ``--stopped TASK_ARN``, which makes the event ECS sends when a task stops.
It goes to `lambdamesh dev`'s Invoke API (``lambdamesh/invocations.py``), never to AWS: on
AWS, EventBridge is the only caller. Standard library only.
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

DEFAULT_URL = "http://127.0.0.1:8000"
INVOKE_PATH = "/2015-03-31/functions/lambdamesh/invocations"
TIMEOUT_SECONDS = 30.0
MAX_EVENT_BYTES = 256 * 1024  # EventBridge's largest event
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


def stopped_event(
    task_arn: str,
    stop_code: str = "EssentialContainerExited",
    last_status: str = "STOPPED",
    now: datetime | None = None,
) -> dict[str, Any]:
    """The "ECS Task State Change" event of a stopped (or stopping) task, in the fields ECS
    documents for it: the envelope EventBridge adds, and the task's ``detail``."""
    moment = (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    region, account, cluster = _parts(task_arn)
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
            "stoppingAt": moment,
            **({"stoppedAt": moment} if last_status == "STOPPED" else {}),
            "updatedAt": moment,
            "launchType": "FARGATE",
            "version": 5,
        },
    }


def _parts(task_arn: str) -> tuple[str, str, str]:
    """Region, account and cluster name of a task ARN (``default`` for the short form)."""
    fields = task_arn.split(":", 5)
    if len(fields) != 6 or fields[2] != "ecs" or not fields[5].startswith("task/"):
        raise UsageError(f"not an ECS task ARN: {task_arn[:200]!r}")
    path = fields[5].split("/")
    return fields[3], fields[4], path[1] if len(path) == 3 else "default"


def add_task_event_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "task-event",
        help="hand `lambdamesh dev` an ECS task state change, as EventBridge does on AWS",
        description='Invoke the local app with an ECS "ECS Task State Change" event, from '
        "FILE (- for stdin) or made by --stopped, and print what it did. A stopping task's "
        "instances leave the registry at once.",
    )
    source = command.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", metavar="FILE", help="the event as JSON; - for stdin")
    source.add_argument(
        "--stopped", metavar="TASK_ARN", help="make the event of this task stopping"
    )
    command.add_argument(
        "--stop-code",
        choices=STOP_CODES,
        default="EssentialContainerExited",
        help="with --stopped: why ECS stopped it (default: %(default)s)",
    )
    command.add_argument(
        "--url",
        default=DEFAULT_URL,
        help="`lambdamesh dev`'s address (default: %(default)s)",
    )


def task_event_command(args: argparse.Namespace, stdin: TextIO = sys.stdin) -> int:
    if args.stopped:
        event = stopped_event(args.stopped, args.stop_code)
    else:
        event = _read_event(args.file, stdin)
    answer = invoke(args.url, event)
    print(json.dumps(answer, indent=2, sort_keys=True))
    return 0


def _read_event(name: str, stdin: TextIO) -> Any:
    text = stdin.read(MAX_EVENT_BYTES + 1) if name == "-" else _read_file(name)
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
        raise ApiError(f"{url} refused the event: HTTP {exc.code}", EXIT_FAILED) from None
    except OSError as exc:
        raise ApiError(f"cannot reach {url}: {exc}", EXIT_FAILED) from None
    answer = json.loads(body) if body else None
    if failed:
        message = answer.get("errorMessage") if isinstance(answer, dict) else answer
        raise ApiError(f"the function failed: {message}", EXIT_FAILED)
    return answer
