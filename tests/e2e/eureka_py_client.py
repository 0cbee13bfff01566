"""py-eureka-client, run as an application runs it, for ``test_eureka_clients.py``.

``python -m tests.e2e.eureka_py_client CONFIG_JSON`` registers an instance with the library's
module-level client (``eureka_client.init``: register, full fetch, then a thread that renews and
fetches the delta every ``renewal_interval_in_secs``), prints ``ready``, then answers commands
read on stdin, one JSON object a line, each with ``reply <n> <json>`` on stdout. The library
logs on stderr.

Only the library's public API is used: ``init``, ``do_service``, ``walk_nodes``, ``stop``,
``get_client().applications``, the ``eureka_basic`` functions an operator's tool would call,
and ``http_client.set_http_client``, through which this script counts the registry fetches the
client makes (full, ``GET apps/``, and delta, ``GET apps/delta``).

py-eureka-client 0.13.3's ``stop()`` cancels its heartbeat ``Timer``, which has no effect once
the timer has fired: the renew-and-fetch loop goes on, and a renew answered 404 after the
cancel registers the instance again. An application exits after ``stop()``; this script stands
for that by holding the loop's requests from the moment ``stop`` is asked for, then exiting.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from py_eureka_client import eureka_basic, eureka_client, http_client, logger


class CountingHttpClient(http_client.HttpClient):  # type: ignore[misc]
    """The library's own HTTP client, counting the registry fetches that succeeded."""

    def __init__(self) -> None:
        self.full = 0
        self.delta = 0
        self.exiting = threading.Event()
        self._lock = threading.Lock()

    async def urlopen(
        self, request: Any = None, data: bytes | None = None, timeout: float | None = None
    ) -> Any:
        if self.exiting.is_set() and threading.current_thread() is not threading.main_thread():
            # Held, not failed: a failure would make the loop register again, or mark the
            # client unregistered so that stop() skips the cancel.
            threading.Event().wait()
        answer = await super().urlopen(request, data, timeout)
        url = request.url if isinstance(request, http_client.HttpRequest) else str(request)
        path = urlsplit(url).path
        with self._lock:
            if path.endswith("/apps/"):
                self.full += 1
            elif path.endswith("/apps/delta"):
                self.delta += 1
        return answer


COUNTER = CountingHttpClient()
ERRORS: list[str] = []


def on_error(error_type: str, exception: Exception) -> None:
    ERRORS.append(f"{error_type}: {exception!r}")


def run(coroutine: Any) -> Any:
    """A coroutine of the library's, on the loop its blocking functions use."""
    return eureka_client.get_event_loop().run_until_complete(coroutine)


def view() -> dict[str, Any]:
    """The client's cache, and by app the ids of the instances it would pick from (its
    ``up_instances``, which ``do_service`` and ``walk_nodes`` choose among)."""
    apps: dict[str, list[dict[str, Any]]] = {}
    up: dict[str, list[str]] = {}
    for application in list(eureka_client.get_client().applications.applications):
        up[application.name] = sorted(i.instanceId for i in application.up_instances)
        apps[application.name] = sorted(
            (
                {
                    "instanceId": instance.instanceId,
                    "status": instance.status,
                    "hostName": instance.hostName,
                    "port": instance.port.port,
                }
                for instance in list(application.instances)
            ),
            key=lambda found: str(found["instanceId"]),
        )
    counts = {"full": COUNTER.full, "delta": COUNTER.delta}
    return {"apps": apps, "up": up, **counts, "errors": list(ERRORS)}


def override(config: dict[str, Any], command: dict[str, Any], lift: bool) -> dict[str, Any]:
    """The operator's drain and its lifting, as a tool of theirs would send them with
    py-eureka-client's basic functions: read the instance, then set or delete the override."""
    server, app, instance_id = config["admin_server"], command["app"], command["instance_id"]
    found = run(eureka_basic.get_app_instance(server, app, instance_id))
    if lift:
        run(eureka_basic.delete_status_override(server, app, instance_id, found.lastDirtyTimestamp))
    else:
        run(eureka_basic.status_update(server, app, instance_id, found.lastDirtyTimestamp))
    return {"status_before": found.status}


def call(command: dict[str, Any]) -> Any:
    """``do_service``: the client picks an UP instance of the app and calls it."""
    return eureka_client.do_service(command["app"], command["path"], return_type="json")


def walk(command: dict[str, Any]) -> Any:
    """The URL ``walk_nodes`` hands its walker: the node the client picked, and the path."""
    return eureka_client.walk_nodes(command["app"], command["path"], walker=lambda url: url)


def stop() -> dict[str, Any]:
    COUNTER.exiting.set()
    eureka_client.stop()
    return {"stopped": True}


def handle(config: dict[str, Any], command: dict[str, Any]) -> Any:
    handlers: dict[str, Callable[[], Any]] = {
        "view": view,
        "drain": lambda: override(config, command, lift=False),
        "undrain": lambda: override(config, command, lift=True),
        "call": lambda: call(command),
        "walk": lambda: walk(command),
        "stop": stop,
    }
    return handlers[command["cmd"]]()


def main(argv: list[str]) -> int:
    config: dict[str, Any] = json.loads(argv[0])
    # The library logs on stdout by default; stdout carries the replies.
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(threadName)s %(message)s"
    )
    logger.set_custom_logger(logging.getLogger("py_eureka_client"))
    http_client.set_http_client(COUNTER)
    eureka_client.init(
        eureka_server=config["server"],
        app_name=config["app"],
        instance_ip=config["ip"],
        instance_port=config["port"],
        renewal_interval_in_secs=config["renewal_interval"],
        duration_in_secs=config["duration"],
        on_error=on_error,
    )
    print("ready", flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        try:
            answer = {"ok": handle(config, command)}
        except Exception as exc:  # reported to the test, which fails on it
            answer = {"error": repr(exc)}
        print(f"reply {command['n']} {json.dumps(answer)}", flush=True)
        if command["cmd"] == "stop":
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
