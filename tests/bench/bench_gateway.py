"""Gateway overhead, as ratios measured in one run on this machine.

Starts real processes on loopback: one upstream app and two `lambdamesh dev` servers (instance
cache on, and off so that every request reads DynamoDB), then times sequential keep-alive GETs:

* direct to the upstream (the baseline),
* through the gateway with the 1 s instance cache,
* through the gateway with no cache,
* a heartbeat (one conditional UpdateItem),

and a sidecar at rest: its CPU time as a share of the wall time it ran, and its resident
memory beside the interpreter's own (a bare `python -c` measured the same way).

Figures are medians; ratios are against the baseline measured in the same run, because the
machine is shared and absolute numbers mean little. Run with `make bench`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from tests.e2e.processes import Process, spawn
from tests.helpers import SIGNING_KEY, admin_token


def start_dev(cache_seconds: str) -> tuple[Process, str]:
    process = spawn(
        f"dev-cache-{cache_seconds}",
        ["-m", "lambdamesh.cli", "dev", "--port", "0"],
        env={
            "LAMBDAMESH_SIGNING_KEY": SIGNING_KEY,
            "LAMBDAMESH_CACHE_SECONDS": cache_seconds,
            "AWS_ENDPOINT_URL_DYNAMODB": "",
            "LAMBDAMESH_EDGE_DEFAULT": "open",
        },
    )
    return process, process.wait_for_line(r"ready on (http://\S+)").group(1)


def connection(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)


def timed(count: int, call: Callable[[], None]) -> list[float]:
    for _ in range(max(5, count // 10)):
        call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def getter(url: str, path: str) -> Callable[[], None]:
    conn = connection(url)

    def get() -> None:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status

    return get


def putter(url: str, path: str, body: dict[str, object]) -> Callable[[], None]:
    conn = connection(url)
    headers = {"Authorization": f"Bearer {admin_token()}", "Content-Type": "application/json"}
    payload = json.dumps(body)

    def put() -> None:
        conn.request("PUT", path, payload, headers)
        response = conn.getresponse()
        response.read()
        assert response.status in (200, 201), response.status

    return put


def cpu_and_rss(pid: int) -> tuple[float, int]:
    """CPU seconds used and resident bytes, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def sidecar_at_rest(url: str, port: int, seconds: float) -> tuple[float, int, int]:
    """(CPU share, RSS, bare interpreter RSS) of a sidecar heartbeating every second."""
    sidecar = spawn(
        "sidecar",
        ["-m", "lambdamesh_sidecar"],
        env={
            "LAMBDAMESH_URL": url,
            "LAMBDAMESH_TOKEN": admin_token(),
            "LAMBDAMESH_SERVICE": "bench",
            "LAMBDAMESH_VERSION": "v1",
            "LAMBDAMESH_HOST": "127.0.0.1",
            "LAMBDAMESH_PORT": str(port),
            "LAMBDAMESH_INSTANCE_ID": "bench-sidecar",
            "LAMBDAMESH_HEARTBEAT_SECONDS": "1",
            "LAMBDAMESH_DRAIN_SECONDS": "0",
        },
    )
    bare = spawn("bare", ["-c", "import time; time.sleep(60)"])
    try:
        time.sleep(2.0)  # started and registered
        cpu_before, _ = cpu_and_rss(sidecar.popen.pid)
        started = time.monotonic()
        time.sleep(seconds)
        cpu_after, rss = cpu_and_rss(sidecar.popen.pid)
        _, bare_rss = cpu_and_rss(bare.popen.pid)
        share = (cpu_after - cpu_before) / (time.monotonic() - started)
    finally:
        sidecar.stop()
        bare.stop()
    return share, rss, bare_rss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rest-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    app = spawn("upstream", ["-m", "lambdamesh.demo_app", "--port", "0", "--name", "bench"])
    port = int(app.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)").group(1))
    cached, cached_url = start_dev("1")
    uncached, uncached_url = start_dev("0")
    try:
        register = {"version": "v1", "host": "127.0.0.1", "port": port, "lease_seconds": 300}
        instance = "/registry/services/bench/instances/bench-0"
        for url in (cached_url, uncached_url):
            putter(url, instance, register)()
        results = {
            "direct to upstream (baseline)": timed(
                args.requests, getter(f"http://127.0.0.1:{port}", "/a/b?c=d")
            ),
            "gateway, 1 s instance cache": timed(
                args.requests, getter(cached_url, "/api/v1/bench/v1/a/b?c=d")
            ),
            "gateway, no cache (DynamoDB read each)": timed(
                args.requests, getter(uncached_url, "/api/v1/bench/v1/a/b?c=d")
            ),
            "heartbeat": timed(args.requests, putter(cached_url, instance + "/heartbeat", {})),
        }
        share, rss, bare_rss = sidecar_at_rest(cached_url, port, args.rest_seconds)
    finally:
        for process in (cached, uncached, app):
            process.stop()
    baseline = statistics.median(results["direct to upstream (baseline)"])
    print(f"{'case':42} {'median ms':>10} {'p90 ms':>8} {'x baseline':>11}")
    for name, samples in results.items():
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1]
        print(f"{name:42} {median * 1000:10.2f} {p90 * 1000:8.2f} {median / baseline:11.1f}")
    print("(dev server: the local API Gateway with moto in-process; on Lambda the DynamoDB")
    print(" read costs a network round trip instead, so the cache matters more, not less.)")
    print(
        f"sidecar at rest, heartbeat every 1 s: CPU {share:.3%} of wall time; "
        f"resident memory {rss / 2**20:.1f} MiB, {rss / bare_rss:.2f}x a bare interpreter"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
