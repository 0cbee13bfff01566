"""What each kind of call writes to the function's log, in bytes: the figures `lambdamesh
cost` prices CloudWatch Logs with (``--heartbeat-log-bytes``, ``--log-bytes``,
``--poll-log-bytes``, ``--churn-log-bytes``, ``--cert-log-bytes``, ``--eureka-fetch-log-bytes``,
``--eureka-churn-log-bytes``; a Eureka client's renew is priced as a heartbeat).

The app runs in this process as on Lambda (Powertools' Logger at INFO, metrics on), against
moto's DynamoDB server, and everything it writes to stdout and its log handlers during one call
is counted. Lambda's own START/END/REPORT lines are not the app's: the merge template's
``SystemLogLevel: WARN`` keeps them out of CloudWatch for successful invocations
(``--platform-log-bytes``). A count, not a time: the figures do not depend on the machine.

Run with `make bench` or ``python -m tests.bench.bench_log_bytes`` (``--json`` for scripts).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers import SIGNING_KEY, admin_token, mesh_ca_text, service_token

TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/bench/0123456789abcdef0123456789abcdef"
# What `lambdamesh cost` assumes for each, and must be updated with.
PRICED = {
    "successful heartbeat": "heartbeat_log_bytes",
    "routed request": "log_bytes_per_invocation",
    "routing-view poll": "poll_log_bytes",
    "certificate issue": "cert_log_bytes",
    "Eureka renew": "heartbeat_log_bytes",
    "Eureka delta": "eureka_fetch_log_bytes",
    "Eureka full fetch": "eureka_fetch_log_bytes",
}
# The Eureka client's calls, as py-eureka-client makes them (its captured body).
EUREKA_APP = "PYORDERS"
EUREKA_INSTANCE = "/eureka/apps/PYORDERS/127.0.0.1%3Apyorders%3A8080"


class _Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextlib.contextmanager
def _servers() -> Iterator[tuple[str, int]]:
    from lambdamesh.devserver import EmbeddedDynamoDB

    # `lambdamesh dev`'s moto server, whose request log is silenced: the output is the figures.
    dynamodb = EmbeddedDynamoDB()
    endpoint = dynamodb.start()
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        yield endpoint, int(upstream.server_address[1])
    finally:
        upstream.shutdown()
        dynamodb.stop()


def _counted(call: Callable[[], object]) -> int:
    """Bytes the app writes while ``call`` runs: stdout (EMF) and its logger's handlers."""
    from chalicelib.observability import logger

    captured = io.StringIO()
    streams = [(handler, getattr(handler, "stream", None)) for handler in logger.handlers]
    for handler, _ in streams:
        handler.stream = captured  # type: ignore[attr-defined]
    try:
        with contextlib.redirect_stdout(captured):
            call()
    finally:
        for handler, stream in streams:
            handler.stream = stream  # type: ignore[attr-defined]
    return len(captured.getvalue().encode())


def measure() -> dict[str, int]:
    with _servers() as (dynamodb, upstream_port):
        environment = {
            "LAMBDAMESH_TABLE": "bench-log-bytes",
            "LAMBDAMESH_SIGNING_KEY": SIGNING_KEY,
            "LAMBDAMESH_MESH_CA": mesh_ca_text(),
            "AWS_ENDPOINT_URL_DYNAMODB": dynamodb,
            "LAMBDAMESH_ALLOW_LOOPBACK": "true",
            "LAMBDAMESH_EDGE_DEFAULT": "open",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "POWERTOOLS_METRICS_DISABLED": "false",
            "POWERTOOLS_SERVICE_NAME": "lambdamesh",
        }
        os.environ.update(environment)
        import app as application
        from chalicelib import observability, wiring
        from lambdamesh.invokers import LambdaContext
        from lambdamesh.taskevent import stopped_event
        from lambdamesh.testclient import create_test_client

        wiring.reset()
        wiring.store().create_table()
        writer = {"Authorization": f"Bearer {service_token('orders')}"}
        reader = {"Authorization": f"Bearer {admin_token()}"}
        body = {"version": "v1", "host": "127.0.0.1", "port": upstream_port}
        with create_test_client(
            application.app, environment_variables=environment, lane="url"
        ) as client:
            http = client.http

            def register(instance: str, **extra: Any) -> None:
                path = f"/registry/services/orders/instances/{instance}"
                http.put(path, headers=writer, body=json.dumps({**body, **extra}))

            # Setting up is no figure: what it logs is counted and dropped, so that the output
            # holds the figures alone (--json stays JSON).
            _counted(lambda: register("steady"))
            beat = "/registry/services/orders/instances/steady/heartbeat"
            # The first heartbeat also logs the sampled write units, measured apart below.
            _counted(lambda: http.put(beat, headers=writer, body=b"{}"))
            figures = {
                "successful heartbeat": _counted(
                    lambda: http.put(beat, headers=writer, body=b"{}")
                ),
                "sampled write units (once per 900 s per environment)": 0,
                "routed request": _counted(lambda: http.get("/api/v1/orders/v1/x")),
                "routing-view poll": _counted(
                    lambda: http.get("/registry/services/orders/routing", headers=reader)
                ),
                "registration": _counted(lambda: register("churned", task_arn=TASK_ARN)),
                "certificate issue": _counted(
                    lambda: http.post("/registry/services/orders/certificate", headers=writer)
                ),
            }
            context = LambdaContext(30, "lambdamesh")
            event = stopped_event(TASK_ARN)
            figures["stop event that removes"] = _counted(lambda: application.app(event, context))
            figures["stop event again"] = _counted(lambda: application.app(event, context))
            observability._last_sample.clear()
            figures["sampled write units (once per 900 s per environment)"] = _counted(
                lambda: http.put(beat, headers=writer, body=b"{}")
            )
            figures.update(_eureka(http))
    return figures


def _eureka(http: Any) -> dict[str, int]:
    """A Eureka client's calls: registration, renew, delta, full fetch, DOWN and cancel."""
    from tests.functional.test_eureka_api import basic, py_body

    auth = basic(service_token(EUREKA_APP.lower()))
    path = f"/eureka/apps/{EUREKA_APP}"
    headers = {"Content-Type": "application/json", **auth}

    def register(status: str) -> None:
        http.post(path, headers=headers, body=json.dumps(py_body(status=status)))

    renew = f"{EUREKA_INSTANCE}?status=UP&lastDirtyTimestamp=1796445645568"
    registration = _counted(lambda: register("UP"))
    # The first renew also logs the sampled write units (measured above for heartbeats).
    _counted(lambda: http.put(renew, headers=auth, body=b""))
    return {
        "Eureka registration": registration,
        "Eureka renew": _counted(lambda: http.put(renew, headers=auth, body=b"")),
        "Eureka delta": _counted(lambda: http.get("/eureka/apps/delta", headers=auth)),
        "Eureka full fetch": _counted(lambda: http.get("/eureka/apps/", headers=auth)),
        "Eureka DOWN registration": _counted(lambda: register("DOWN")),
        "Eureka cancel": _counted(lambda: http.delete(EUREKA_INSTANCE, headers=auth)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    figures = measure()
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    from lambdamesh.cost import CostInputs

    assumed = {name: getattr(CostInputs, field) for name, field in PRICED.items()}
    churn = figures["registration"] + figures["stop event that removes"]
    eureka_churn = sum(
        figures[f"Eureka {call}"] for call in ("registration", "DOWN registration", "cancel")
    )
    print("Bytes the app logs per call (INFO, metrics on), against what `lambdamesh cost` assumes")
    for name, value in figures.items():
        note = f"  (cost assumes {assumed[name]:g})" if name in assumed else ""
        print(f"  {name:<55} {value:>6}{note}")
    print(
        f"  {'task replaced (registration + removal)':<55} {churn:>6}"
        f"  (cost assumes {CostInputs.churn_log_bytes:g})"
    )
    print(
        f"  {'Eureka client replaced (registration, DOWN, cancel)':<55} {eureka_churn:>6}"
        f"  (cost assumes {CostInputs.eureka_churn_log_bytes:g})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
