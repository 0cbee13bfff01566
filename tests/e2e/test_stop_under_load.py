"""`lambdamesh dev --demo` stops within a bound after SIGTERM, even on a loaded machine with
requests in flight and an idle keep-alive connection held open."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest

from tests.e2e.processes import spawn

# From SIGTERM to exit: the sidecars deregister, the apps stop, then the server and DynamoDB.
STOP_BOUND_SECONDS = 20.0
BURNERS = 2


@contextmanager
def busy_cpus(count: int) -> Iterator[None]:
    """Processes that keep every core busy until the block ends."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def keep_requesting(host: str, port: int, done: threading.Event) -> None:
    while not done.is_set():
        connection = http.client.HTTPConnection(host, port, timeout=5)
        with suppress(OSError, http.client.HTTPException):
            connection.request("GET", "/api/v1/hello/v1/greet")
            connection.getresponse().read()
        connection.close()


@pytest.mark.parametrize("run", range(2))
def test_dev_stops_within_its_bound_under_load(run: int) -> None:
    demo = spawn("demo-under-load", ["-m", "lambdamesh.cli", "dev", "--demo", "--port", "0"])
    url = demo.wait_for_line(r"ready on (http://\S+)").group(1)
    demo.wait_for_line(r"Press Ctrl-C", timeout=60)
    host, port = re.match(r"http://([^:]+):(\d+)", url).groups()  # type: ignore[union-attr]
    idle = http.client.HTTPConnection(host, int(port), timeout=5)
    idle.request("GET", "/health")
    idle.getresponse().read()  # and then the connection stays open, idle
    done = threading.Event()
    load = threading.Thread(target=keep_requesting, args=(host, int(port), done), daemon=True)

    with busy_cpus(BURNERS):
        load.start()
        code = demo.stop(timeout=STOP_BOUND_SECONDS)
        done.set()

    idle.close()
    assert code == 0, demo.output
    assert "stopped" in demo.output
