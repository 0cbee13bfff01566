"""The sidecar's outbound port: latency it adds and memory it costs, measured in one run.

Starts real processes on loopback: `lambdamesh dev`; two instances of "inventory" (a demo app
and a sidecar each); and "orders", a demo app whose sidecar serves the outbound port. Then
times sequential calls on one keep-alive connection each,

* direct to an inventory app (the baseline), and
* through the orders sidecar's outbound port, ``/inventory/v1/...``,

for a GET, a POST of 64 KiB to the demo app's ``/echo`` (64 KiB back) and a POST of 1 MiB to
it (1 MiB back; the demo app has no route that answers a GET with a large body, so the large
answer is an echo). The two sides alternate in rounds so that drift in the machine's load
hits both alike.

Then, with the connections closed and the sidecars idle, their CPU share and resident memory
from /proc: a sidecar without the outbound port (an inventory one), the orders sidecar with
it (after serving the calls above), and a bare interpreter.

Figures are p50 and p90 of the pooled rounds; ratios are against the direct calls of the same
run, because the machine is shared. Run with `make bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.bench.bench_gateway import connection, cpu_and_rss, start_dev, timed
from tests.e2e.conftest import Mesh
from tests.e2e.processes import Process, spawn

HEARTBEAT_SECONDS = "1"
LEASE_SECONDS = "10"
# The goals this benchmark checks.
ADDED_P50_GOAL_MS = 0.5
EXTRA_RSS_GOAL_MIB = 10.0
KIB = 1024
MIB = 1024 * KIB


@dataclass
class Case:
    name: str
    direct: list[float]
    through: list[float]


@dataclass
class Rest:
    name: str
    cpu_share: float
    rss: int
    threads: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def upstream(name: str, processes: list[Process]) -> int:
    process = spawn(f"app-{name}", ["-m", "lambdamesh.demo_app", "--port", "0", "--name", name])
    processes.append(process)
    return int(process.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)").group(1))


def sidecar(
    url: str, service: str, port: int, instance_id: str, processes: list[Process], **env: str
) -> Process:
    """The end-to-end tier's sidecar, beating every second, once it has registered."""
    timing = {
        "LAMBDAMESH_HEARTBEAT_SECONDS": HEARTBEAT_SECONDS,
        "LAMBDAMESH_LEASE_SECONDS": LEASE_SECONDS,
    }
    process = Mesh(url, processes).sidecar(service, port, instance_id, **{**timing, **env})
    process.wait_for_line(r"\bregistered\b")
    return process


class Client:
    """One keep-alive connection; ``call`` makes a request and reads the whole answer."""

    def __init__(self, url: str) -> None:
        self.conn = connection(url)

    def caller(self, method: str, path: str, body: bytes | None = None) -> Callable[[], None]:
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        expected = len(body) if body is not None else None

        def call() -> None:
            self.conn.request(method, path, body, headers)
            response = self.conn.getresponse()
            data = response.read()
            assert response.status == 200, (response.status, data[:200])
            assert expected is None or len(data) == expected, len(data)

        return call

    def close(self) -> None:
        self.conn.close()


def measure(
    name: str, count: int, rounds: int, direct: Callable[[], None], through: Callable[[], None]
) -> Case:
    """Alternate the two sides in ``rounds`` rounds; each round warms up first."""
    case = Case(name, [], [])
    per_round = max(1, count // rounds)
    for _ in range(rounds):
        case.direct += timed(per_round, direct)
        case.through += timed(per_round, through)
    return case


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU seconds of the process's live threads, from /proc/PID/task/*/schedstat (Linux, in
    ns): at rest a sidecar uses about 2 ms a second, too little for /proc/PID/stat's 10 ms
    ticks over a short window."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def at_rest(processes: dict[str, Process], seconds: float) -> list[Rest]:
    """CPU share over the same ``seconds`` of wall time, then RSS and threads, of each."""
    before = {name: cpu_seconds(p.popen.pid) for name, p in processes.items()}
    started = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - started
    rests = []
    for name, process in processes.items():
        share = (cpu_seconds(process.popen.pid) - before[name]) / wall
        _, rss = cpu_and_rss(process.popen.pid)
        rests.append(Rest(name, share, rss, threads(process.popen.pid)))
    return rests


def percentile(samples: list[float], which: int) -> float:
    """The ``which``-th percentile (50 or 90), in ms."""
    return statistics.quantiles(samples, n=100, method="inclusive")[which - 1] * 1000


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (
        f"{os.cpu_count()} vCPUs, {model}, {platform.machine()}, Python {platform.python_version()}"
    )


def report(cases: list[Case], rests: list[Rest]) -> dict[str, object]:
    rows = []
    for case in cases:
        direct50, through50 = percentile(case.direct, 50), percentile(case.through, 50)
        rows.append(
            {
                "case": case.name,
                "requests": len(case.direct),
                "direct_p50_ms": round(direct50, 3),
                "direct_p90_ms": round(percentile(case.direct, 90), 3),
                "through_p50_ms": round(through50, 3),
                "through_p90_ms": round(percentile(case.through, 90), 3),
                "added_p50_ms": round(through50 - direct50, 3),
                "ratio_p50": round(through50 / direct50, 2),
            }
        )
    memory = {
        rest.name: {
            "rss_mib": round(rest.rss / MIB, 1),
            "cpu_share": round(rest.cpu_share, 5),
            "threads": rest.threads,
        }
        for rest in rests
    }
    by_name = {rest.name: rest for rest in rests}
    extra = (by_name["sidecar with outbound"].rss - by_name["sidecar without outbound"].rss) / MIB
    added = rows[0]["added_p50_ms"]
    assert isinstance(added, float)
    return {
        "machine": machine(),
        "latency": rows,
        "at_rest": memory,
        "outbound_extra_rss_mib": round(extra, 1),
        "goals": {
            "get_added_p50_ms": {"goal": ADDED_P50_GOAL_MS, "met": added <= ADDED_P50_GOAL_MS},
            "outbound_extra_rss_mib": {
                "goal": EXTRA_RSS_GOAL_MIB,
                "met": extra <= EXTRA_RSS_GOAL_MIB,
            },
        },
    }


def print_table(result: dict[str, object]) -> None:
    print(result["machine"])
    header = (
        f"{'case':26} {'n':>5} {'direct p50':>10} {'p90':>7} {'through p50':>11} {'p90':>7} "
        f"{'added p50':>9} {'x direct':>8}"
    )
    print(header)
    rows = result["latency"]
    assert isinstance(rows, list)
    for row in rows:
        print(
            f"{row['case']:26} {row['requests']:5d} {row['direct_p50_ms']:10.3f} "
            f"{row['direct_p90_ms']:7.3f} {row['through_p50_ms']:11.3f} "
            f"{row['through_p90_ms']:7.3f} {row['added_p50_ms']:9.3f} {row['ratio_p50']:8.2f}"
        )
    print("(ms; 'through' is the orders sidecar's outbound port, round-robin over two apps)")
    print()
    print(f"{'at rest':26} {'RSS MiB':>8} {'CPU share':>10} {'threads':>8}")
    memory = result["at_rest"]
    assert isinstance(memory, dict)
    for name, figures in memory.items():
        print(
            f"{name:26} {figures['rss_mib']:8.1f} {figures['cpu_share']:10.3%} "
            f"{figures['threads']:8d}"
        )
    goals = result["goals"]
    assert isinstance(goals, dict)
    rows0 = rows[0]
    get_goal, rss_goal = goals["get_added_p50_ms"], goals["outbound_extra_rss_mib"]
    print()
    print(
        f"GET added p50: {rows0['added_p50_ms']:.3f} ms (goal <= {get_goal['goal']} ms): "
        f"{'met' if get_goal['met'] else 'NOT met'}"
    )
    print(
        f"outbound port's extra RSS: {result['outbound_extra_rss_mib']:.1f} MiB "
        f"(goal <= {rss_goal['goal']:g} MiB): {'met' if rss_goal['met'] else 'NOT met'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="GETs each side")
    parser.add_argument("--rounds", type=int, default=4, help="alternations of the two sides")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="idle before at rest")
    parser.add_argument("--rest-seconds", type=float, default=10.0, help="at-rest window")
    parser.add_argument("--json", action="store_true", help="print a JSON object, no table")
    args = parser.parse_args(argv)
    processes: list[Process] = []
    clients: list[Client] = []
    try:
        dev, url = start_dev("1")
        processes.append(dev)
        inventory = [upstream("inventory", processes) for _ in range(2)]
        plain = [
            sidecar(url, "inventory", port, f"inventory-{i}", processes)
            for i, port in enumerate(inventory)
        ]
        outbound_port = free_port()
        orders = sidecar(
            url,
            "orders",
            upstream("orders", processes),
            "orders-0",
            processes,
            LAMBDAMESH_OUTBOUND_PORT=str(outbound_port),
            LAMBDAMESH_OUTBOUND_ALLOW_LOOPBACK="true",
        )
        orders.wait_for_line(r"outbound port listening")
        bare = spawn("bare", ["-c", "import time; time.sleep(600)"])
        processes.append(bare)

        direct = Client(f"http://127.0.0.1:{inventory[0]}")
        through = Client(f"http://127.0.0.1:{outbound_port}")
        clients += [direct, through]
        through.caller("GET", "/inventory/v1/items/1")()  # the first call reads the view
        small, large = os.urandom(64 * KIB), os.urandom(MIB)
        bulky = max(20, args.requests // 10)
        cases = [
            measure(
                "GET /items/1",
                args.requests,
                args.rounds,
                direct.caller("GET", "/items/1"),
                through.caller("GET", "/inventory/v1/items/1"),
            ),
            measure(
                "POST 64 KiB to /echo",
                args.requests // 2,
                args.rounds,
                direct.caller("POST", "/echo", small),
                through.caller("POST", "/inventory/v1/echo", small),
            ),
            measure(
                "POST 1 MiB to /echo",
                bulky,
                args.rounds,
                direct.caller("POST", "/echo", large),
                through.caller("POST", "/inventory/v1/echo", large),
            ),
        ]
        for client in clients:
            client.close()
        time.sleep(args.idle_seconds)
        rests = at_rest(
            {
                "sidecar without outbound": plain[0],
                "sidecar with outbound": orders,
                "bare interpreter": bare,
            },
            args.rest_seconds,
        )
    finally:
        for client in clients:
            client.close()
        for process in reversed(processes):
            process.signal(15)
        for process in reversed(processes):
            process.stop()
    result = report(cases, rests)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
