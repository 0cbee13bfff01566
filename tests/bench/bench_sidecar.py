"""The sidecar's outbound port: latency it adds and memory it costs, measured in one run.

Starts real processes on loopback: `lambdamesh dev`; two instances of "inventory" (a demo app
and a sidecar each); and "orders", a demo app whose sidecar serves the outbound port. Then
times sequential calls on one keep-alive connection each,

* direct to an inventory app (the baseline), and
* through the orders sidecar's outbound port, ``/inventory/v1/...``, and
* through nginx as a reverse proxy to the same two apps (the anchor: what a team would
  otherwise run beside the app; skipped, saying so, where nginx is not installed),

for a GET, a POST of 64 KiB to the demo app's ``/echo`` (64 KiB back) and a POST of 1 MiB to
it (1 MiB back; the demo app has no route that answers a GET with a large body, so the large
answer is an echo). The two sides alternate in rounds so that drift in the machine's load
hits all alike.

Then, with the connections closed and the sidecars idle, their CPU share and resident memory
from /proc: a sidecar without the outbound port (an inventory one), the orders sidecar with
it (after serving the calls above), and a bare interpreter.

Figures are p50 and p90 of the pooled rounds; ratios are against the direct calls of the same
run, because the machine is shared. The goal: the outbound port adds at most twice what nginx
adds, at p50 and at p90. Run with `make bench`.
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

from tests.bench import nginx_anchor
from tests.bench.bench_gateway import connection, cpu_and_rss, start_dev, timed
from tests.e2e.conftest import Mesh
from tests.e2e.processes import Process, spawn, stop_all

HEARTBEAT_SECONDS = "1"
LEASE_SECONDS = "10"
# The goals this benchmark checks: the outbound port adds at most this many times what nginx
# adds (p50 and p90), and costs at most this much memory over a plain sidecar.
ANCHOR_RATIO_GOAL = 2.0
EXTRA_RSS_GOAL_MIB = 10.0
KIB = 1024
MIB = 1024 * KIB


@dataclass
class Case:
    name: str
    direct: list[float]
    through: list[float]
    anchor: list[float]


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
    name: str,
    count: int,
    rounds: int,
    direct: Callable[[], None],
    through: Callable[[], None],
    anchor: Callable[[], None] | None,
) -> Case:
    """Alternate the sides in ``rounds`` rounds; each round warms up first."""
    case = Case(name, [], [], [])
    per_round = max(1, count // rounds)
    for _ in range(rounds):
        case.direct += timed(per_round, direct)
        case.through += timed(per_round, through)
        if anchor is not None:
            case.anchor += timed(per_round, anchor)
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


def latency_rows(cases: list[Case]) -> list[dict[str, object]]:
    """Each case's percentiles, what the port and nginx added to the direct call, and how many
    times nginx's added time the port's is."""
    rows = []
    for case in cases:
        direct50, direct90 = percentile(case.direct, 50), percentile(case.direct, 90)
        through50, through90 = percentile(case.through, 50), percentile(case.through, 90)
        row: dict[str, object] = {
            "case": case.name,
            "requests": len(case.direct),
            "direct_p50_ms": round(direct50, 3),
            "direct_p90_ms": round(direct90, 3),
            "through_p50_ms": round(through50, 3),
            "through_p90_ms": round(through90, 3),
            "added_p50_ms": round(through50 - direct50, 3),
            "added_p90_ms": round(through90 - direct90, 3),
            "ratio_p50": round(through50 / direct50, 2),
        }
        if case.anchor:
            nginx50, nginx90 = percentile(case.anchor, 50), percentile(case.anchor, 90)
            row |= {
                "nginx_p50_ms": round(nginx50, 3),
                "nginx_p90_ms": round(nginx90, 3),
                "nginx_added_p50_ms": round(nginx50 - direct50, 3),
                "nginx_added_p90_ms": round(nginx90 - direct90, 3),
                "x_nginx_added_p50": _ratio(through50 - direct50, nginx50 - direct50),
                "x_nginx_added_p90": _ratio(through90 - direct90, nginx90 - direct90),
            }
        rows.append(row)
    return rows


def anchor_goals(get: dict[str, object]) -> dict[str, object]:
    """The goal read on the GET's row: at most ``ANCHOR_RATIO_GOAL`` times nginx's added time,
    at p50 and at p90 (not measured without nginx)."""
    goals: dict[str, object] = {}
    for which in ("p50", "p90"):
        ratio = get.get(f"x_nginx_added_{which}")
        goals[f"get_added_{which}_x_nginx"] = {
            "goal": ANCHOR_RATIO_GOAL,
            "figure": ratio,
            "met": None if not isinstance(ratio, float) else ratio <= ANCHOR_RATIO_GOAL,
        }
    return goals


def report(cases: list[Case], rests: list[Rest]) -> dict[str, object]:
    rows = latency_rows(cases)
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
    goals: dict[str, object] = {
        "outbound_extra_rss_mib": {"goal": EXTRA_RSS_GOAL_MIB, "met": extra <= EXTRA_RSS_GOAL_MIB}
    }
    goals |= anchor_goals(rows[0])
    return {
        "machine": machine(),
        "nginx": nginx_anchor.version(),
        "latency": rows,
        "at_rest": memory,
        "outbound_extra_rss_mib": round(extra, 1),
        "goals": goals,
    }


def _ratio(ours: float, anchor: float) -> float | None:
    """How many times nginx's added time ours is (None if nginx added nothing measurable)."""
    return round(ours / anchor, 2) if anchor > 0 else None


def _verdict(met: object) -> str:
    if met is None:
        return "not measured (no nginx)"
    return "met" if met else "NOT met"


def print_table(result: dict[str, object]) -> None:
    print(result["machine"], "|", "nginx", result["nginx"])
    header = (
        f"{'case':22} {'n':>5} {'direct p50':>10} {'p90':>7} {'sidecar p50':>11} {'p90':>7} "
        f"{'nginx p50':>9} {'p90':>7} {'added: sidecar':>14} {'nginx':>7} {'x nginx':>7}"
    )
    print(header)
    rows = result["latency"]
    assert isinstance(rows, list)
    for row in rows:
        nginx = row.get("nginx_p50_ms")
        anchor = (
            f"{row['nginx_p50_ms']:9.3f} {row['nginx_p90_ms']:7.3f}"
            if nginx is not None
            else f"{'-':>9} {'-':>7}"
        )
        added_nginx = (
            f"{row['nginx_added_p50_ms']:7.3f} {row['x_nginx_added_p50'] or '-':>7}"
            if nginx is not None
            else f"{'-':>7} {'-':>7}"
        )
        print(
            f"{row['case']:22} {row['requests']:5d} {row['direct_p50_ms']:10.3f} "
            f"{row['direct_p90_ms']:7.3f} {row['through_p50_ms']:11.3f} "
            f"{row['through_p90_ms']:7.3f} {anchor} {row['added_p50_ms']:14.3f} {added_nginx}"
        )
    print(
        "(ms; 'sidecar' is the orders sidecar's outbound port and 'nginx' nginx as a reverse "
        "proxy, each round-robin over the same two apps; 'added' is at p50)"
    )
    if rows and rows[0].get("nginx_p50_ms") is None:
        print("nginx not found: the anchor was skipped (apt-get install nginx-light)")
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
    get = rows[0]
    print()
    for which in ("p50", "p90"):
        goal = goals[f"get_added_{which}_x_nginx"]
        print(
            f"GET added {which}: sidecar {get[f'added_{which}_ms']:.3f} ms, nginx "
            f"{get.get(f'nginx_added_{which}_ms', '-')} ms, {goal['figure'] or '-'}x nginx's "
            f"(goal <= {goal['goal']:g}x): {_verdict(goal['met'])}"
        )
    rss_goal = goals["outbound_extra_rss_mib"]
    print(
        f"outbound port's extra RSS: {result['outbound_extra_rss_mib']:.1f} MiB "
        f"(goal <= {rss_goal['goal']:g} MiB): {_verdict(rss_goal['met'])}"
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
    stack = contextlib.ExitStack()
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
        nginx_port = stack.enter_context(nginx_anchor.reverse_proxy(inventory))
        bare = spawn("bare", ["-c", "import time; time.sleep(600)"])
        processes.append(bare)

        direct = Client(f"http://127.0.0.1:{inventory[0]}")
        through = Client(f"http://127.0.0.1:{outbound_port}")
        clients += [direct, through]
        anchor = None
        if nginx_port is not None:
            anchor = Client(f"http://127.0.0.1:{nginx_port}")
            clients.append(anchor)
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
                anchor.caller("GET", "/items/1") if anchor else None,
            ),
            measure(
                "POST 64 KiB to /echo",
                args.requests // 2,
                args.rounds,
                direct.caller("POST", "/echo", small),
                through.caller("POST", "/inventory/v1/echo", small),
                anchor.caller("POST", "/echo", small) if anchor else None,
            ),
            measure(
                "POST 1 MiB to /echo",
                bulky,
                args.rounds,
                direct.caller("POST", "/echo", large),
                through.caller("POST", "/inventory/v1/echo", large),
                anchor.caller("POST", "/echo", large) if anchor else None,
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
        stop_all(processes)
        stack.close()
    result = report(cases, rests)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
