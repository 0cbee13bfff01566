"""The handler warm and cold, as ratios measured in one run on this machine.

Warm: the app invoked in this process with API Gateway's REST event and a function URL's
(payload 2.0) event, routing to a loopback upstream, beside a direct call to that upstream
with the same HTTP client library (urllib3); the handler's added milliseconds; and the CPU
time per routed request, per heartbeat and per service certificate issued (warm: its first
issue's import of ``cryptography`` is in the warm-up), from which `docs/benchmarks.md` sizes
the memory and `lambdamesh cost` bills a certificate (``--cert-ms``).
moto and the upstream run in processes of their own, so this process's CPU time is the
handler's.

Cold: `chalice package` once, a copy finished by `lambdamesh finish-package`, each unpacked
and imported by fresh ``python -I -S -B`` processes as Lambda would (no site-packages, no
bytecode written): the bare import of the app's dependencies alone (the baseline: every
third-party module the app loads, none of the project's own), ``import app``, and a Lambda
initialisation (import, with the cold start's priming) plus the first routed request, with
the key in Secrets Manager.

Each figure the goals name is printed with its goal and whether it is met (``GOALS``).

Run with `make bench` (both) or ``python -m tests.bench.bench_handler``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

import boto3
import urllib3

from lambdamesh.events import HttpRequest, RouteTable, Stage, build_event, build_url_event
from lambdamesh.finishing import finish
from lambdamesh.invokers import LambdaContext
from tests.e2e.processes import spawn
from tests.helpers import SIGNING_KEY, mesh_ca_text, service_token

ROOT = Path(__file__).resolve().parents[2]
# The goals (issue 21): what the handler adds to a routed GET at p50 (REST event, loopback
# upstream), in ms; ``import app`` against the import of its dependencies alone; and a Lambda
# initialisation with the first routed request against the import of what those load, on
# the finished package.
GOALS = {"added": 0.2, "import": 1.10, "init+first": 1.5}
PROBE = Path(__file__).with_name("coldstart_probe.py")
TABLE = "lambdamesh-bench"
SECRET = "lambdamesh/bench/signing-key"
SERVICE = "bench"
MOTO = (
    "import time\n"
    "from lambdamesh.devserver import EmbeddedDynamoDB\n"
    "print('moto on', EmbeddedDynamoDB().start(), flush=True)\n"
    "time.sleep(10**9)\n"
)


@contextmanager
def backends() -> Iterator[tuple[str, int]]:
    """moto's server and an upstream app, each a process of its own: (endpoint, port)."""
    moto = spawn("moto", ["-c", MOTO])
    upstream = spawn("upstream", ["-m", "lambdamesh.demo_app", "--port", "0", "--name", SERVICE])
    try:
        endpoint = moto.wait_for_line(r"moto on (http://\S+)").group(1)
        port = int(upstream.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        yield endpoint, port
    finally:
        for process in (moto, upstream):
            process.stop()


def lambda_environment(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint,
        "LAMBDAMESH_TABLE": TABLE,
        "LAMBDAMESH_SIGNING_KEY": "",
        "LAMBDAMESH_SIGNING_KEY_SECRET": SECRET,
        "LAMBDAMESH_MESH_CA": mesh_ca_text(),
        "LAMBDAMESH_ALLOW_LOOPBACK": "true",
        "LAMBDAMESH_EDGE_DEFAULT": "open",
        "LAMBDAMESH_CACHE_SECONDS": "1",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }


def provision(endpoint: str, environment: dict[str, str], port: int) -> None:
    """The table, the secret and one registered instance of the bench service."""
    from chalicelib.config import Settings
    from chalicelib.instances import Registration
    from chalicelib.storage import InstanceStore

    boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1").create_secret(
        Name=SECRET, SecretString=SIGNING_KEY
    )
    store = InstanceStore(Settings.from_environ(environment))
    store.create_table()
    registration = Registration(
        service=SERVICE,
        instance_id="bench-0",
        version="v1",
        host="127.0.0.1",
        port=port,
        lease_seconds=3600,
    )
    store.register(registration, time.time())


def events(app: Any) -> dict[str, dict[str, Any]]:
    """The routed GET, the heartbeat and a certificate issue, in both lanes' shapes."""
    now = int(time.time() * 1000)
    routes = RouteTable(app.routes)
    token = ("Authorization", f"Bearer {service_token(SERVICE)}")
    json_type = ("Content-Type", "application/json")
    requests = {
        "routed": HttpRequest("GET", f"/api/v1/{SERVICE}/v1/a/b?c=d", (), b""),
        "heartbeat": HttpRequest(
            "PUT",
            f"/registry/services/{SERVICE}/instances/bench-0/heartbeat",
            (token, json_type),
            b"{}",
        ),
        "certificate": HttpRequest(
            "POST", f"/registry/services/{SERVICE}/certificate", (token,), b""
        ),
    }
    built: dict[str, dict[str, Any]] = {}
    for name, request in requests.items():
        match = routes.match(request.path)
        assert match is not None
        built[f"{name} rest"] = build_event(
            request, match, Stage(), request_id="bench", epoch_ms=now
        )
        built[f"{name} url"] = build_url_event(request, Stage(), request_id="bench", epoch_ms=now)
    return built


def timed(count: int, call: Callable[[], None]) -> tuple[list[float], float]:
    """Wall seconds of each call, and CPU seconds per call, after a warm-up."""
    for _ in range(max(10, count // 10)):
        call()
    samples = []
    cpu_started = time.process_time()
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples, (time.process_time() - cpu_started) / count


def warm(count: int, port: int) -> dict[str, tuple[list[float], float]]:
    import app as application
    from chalicelib import wiring

    wiring.reset()
    pool = urllib3.PoolManager()

    def direct() -> None:
        answer = pool.request("GET", f"http://127.0.0.1:{port}/a/b?c=d")
        assert answer.status == 200, answer.status

    def invoking(event: dict[str, Any]) -> Callable[[], None]:
        def call() -> None:
            answer = application.app(event, LambdaContext())
            assert answer["statusCode"] == 200, answer

        return call

    results = {"direct to upstream (baseline)": timed(count, direct)}
    built = events(application.app)
    for name, event in built.items():
        results[f"handler, {name}"] = timed(count, invoking(event))
    with as_deployed():
        results[DEPLOYED] = timed(count, invoking(built["routed rest"]))
    return results


# The routed REST case again as the stages deploy the function: its INFO line logged and its
# EMF documents printed (to /dev/null here; to CloudWatch Logs through Lambda's pipe there).
DEPLOYED = "handler, routed rest, deployed"


@contextmanager
def as_deployed() -> Iterator[None]:
    from chalicelib.observability import logger

    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    level = logger.log_level
    with open(os.devnull, "w") as devnull, redirect_stdout(devnull):
        before = handler.setStream(devnull)
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "false"
        logger.setLevel("INFO")
        try:
            yield
        finally:
            logger.setLevel(level)
            os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
            handler.setStream(before)


def report_warm(results: dict[str, tuple[list[float], float]]) -> None:
    baseline = statistics.median(results["direct to upstream (baseline)"][0])
    print(f"{'warm, in process':32} {'median ms':>10} {'p90 ms':>8} {'added ms':>9} {'x base':>7}")
    for name, (samples, _) in results.items():
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1]
        added = median - baseline if "routed" in name else float("nan")
        print(
            f"{name:32} {median * 1000:10.3f} {p90 * 1000:8.3f} {added * 1000:9.3f} "
            f"{median / baseline:7.1f}"
        )
    print(f"{'CPU per call (this process)':32} {'ms':>10} {'wall ms':>8}")
    for name, (samples, cpu) in results.items():
        print(f"{name:32} {cpu * 1000:10.3f} {statistics.median(samples) * 1000:8.3f}")
    added = (statistics.median(results["handler, routed rest"][0]) - baseline) * 1000
    print(goal("handler adds to a routed GET at p50 (REST event)", added, "ms", GOALS["added"]))


def goal(figure: str, value: float, unit: str, limit: float) -> str:
    """One goal's line: the figure, the goal, and whether it is met."""
    verdict = "met" if value <= limit else "NOT met"
    shown = f"{value:.3f} {unit}" if unit == "ms" else f"{value:.2f}{unit}"
    at_most = f"{limit:g} {unit}" if unit == "ms" else f"{limit:.2f}{unit}"
    return f"GOAL {figure}: {shown} (goal at most {at_most}): {verdict}"


# Lambda gives a function CPU in proportion to its memory: one vCPU's worth at 1,769 MB.
ONE_VCPU_MB = 1769
MEMORY_SIZES = (128, 256, 512, 1024, 1769)


def report_sizing(results: dict[str, tuple[list[float], float]], init_seconds: float) -> None:
    """Each handler's measured CPU time stretched by Lambda's CPU share at each memory size,
    plus the measured wait (wall - CPU, loopback here; a network round trip on AWS), and the
    cold start's initialisation (CPU-bound) likewise. Assumes this machine's core and a
    Graviton core run Python at about the same speed."""
    print()
    print("memory sizing: estimated ms at each memory size (CPU / share + measured wait)")
    print(f"{'case':32}" + "".join(f"{str(m) + ' MB':>10}" for m in MEMORY_SIZES))
    rows = {name: v for name, v in results.items() if name.startswith("handler")}
    estimates = {name: (cpu, statistics.median(s) - cpu) for name, (s, cpu) in rows.items()}
    if init_seconds:
        estimates["initialisation (cold start)"] = (init_seconds, 0.0)
    for name, (cpu, wait) in estimates.items():
        cells = "".join(
            f"{(cpu / min(1.0, m / ONE_VCPU_MB) + max(wait, 0.0)) * 1000:10.1f}"
            for m in MEMORY_SIZES
        )
        print(f"{name:32}{cells}")


def package(work: Path) -> tuple[Path, Path]:
    """Unpacked task directories: the zip as `chalice package` writes it, and finished."""
    out = work / "out"
    subprocess.run(
        [str(Path(sys.executable).parent / "chalice"), "package", "--stage", "dev", str(out)],
        cwd=ROOT,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
        check=True,
        capture_output=True,
    )
    tasks = []
    for name in ("packaged", "finished"):
        if name == "finished":
            finish(out)
        task = work / name
        with zipfile.ZipFile(out / "deployment.zip") as archive:
            archive.extractall(task)
        tasks.append(task)
    return tasks[0], tasks[1]


def probe(task: Path, mode: str, argument: Path | None, env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, "-I", "-S", "-B", str(PROBE), str(task), mode]
    result = subprocess.run(
        [*command, *([str(argument)] if argument else [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode:
        raise RuntimeError(f"{mode} in {task.name} failed:\n{result.stderr[-3000:]}")
    loaded: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return loaded


def cold(rounds: int, endpoint: str, work: Path) -> dict[str, dict[str, float]]:
    """Medians per package of: the bare import of what ``import app`` loads, and of what a
    Lambda initialisation and first request load (boto3 and Powertools Parameters join for
    the key); ``import app``; the initialisation; the first request; a warm one; and the
    SnapStart after-restore hook with the request after it."""
    packaged, finished = package(work)
    environment = {"PATH": os.environ.get("PATH", ""), **lambda_environment(endpoint)}
    on_lambda = {**environment, "AWS_LAMBDA_FUNCTION_NAME": "lambdamesh-bench"}
    import app as application

    event = work / "event.json"
    event.write_text(json.dumps(events(application.app)["routed rest"]))
    samples: dict[str, dict[str, list[float]]] = {}
    for _ in range(rounds):
        for task in (packaged, finished):
            imported = probe(task, "import", None, environment)
            first = probe(task, "first", event, on_lambda)
            row = samples.setdefault(task.name, {})
            for label, found in (("bare import", imported), ("bare all", first)):
                listed = work / f"{task.name}-{label.replace(' ', '-')}.json"
                listed.write_text(json.dumps(found["modules"]))
                row.setdefault(label, []).append(probe(task, "bare", listed, environment)["import"])
            row.setdefault("import", []).append(imported["import"])
            row.setdefault("init", []).append(first["import"])
            row.setdefault("first", []).append(first["first"])
            row.setdefault("init+first", []).append(first["import"] + first["first"])
            row.setdefault("second", []).append(first["second"])
            row.setdefault("restore+first", []).append(first["restore"])
            # The goals' ratios, paired within the round: the machine's load drifts.
            row.setdefault("import / bare", []).append(imported["import"] / row["bare import"][-1])
            row.setdefault("init+first / bare", []).append(
                (first["import"] + first["first"]) / row["bare all"][-1]
            )
    return {
        name: {key: statistics.median(values) for key, values in row.items()}
        for name, row in samples.items()
    }


def report_cold(figures: dict[str, dict[str, float]]) -> None:
    baseline = figures["finished"]["bare import"]
    print()
    print("cold start: fresh `python -I -S -B` from the unpacked zip; x = / finished bare import")
    columns = tuple(c for c in figures["finished"] if "/" not in c)
    print(f"{'':14}" + "".join(f"{name:>10}{'':7}" for name in ("packaged", "finished")))
    for column in columns:
        cells = "".join(
            f"{figures[name][column] * 1000:8.1f} ms {figures[name][column] / baseline:5.2f}x"
            for name in ("packaged", "finished")
        )
        print(f"{column:14}{cells}")
    done = figures["finished"]
    print(
        f"finished: with SnapStart, restore hook + first request "
        f"{done['restore+first'] * 1000:.1f} ms. Finishing made init + first request "
        f"{figures['packaged']['init+first'] / done['init+first']:.1f}x faster."
    )
    print("finished package, medians of ratios paired by round:")
    print(
        goal("import app / its dependencies' import", done["import / bare"], "x", GOALS["import"])
    )
    print(
        goal(
            "initialisation + first routed request / their dependencies' import",
            done["init+first / bare"],
            "x",
            GOALS["init+first"],
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="warm calls per case")
    parser.add_argument("--rounds", type=int, default=11, help="cold starts per case")
    parser.add_argument("--skip-cold", action="store_true", help="warm figures only")
    args = parser.parse_args(argv)
    with backends() as (endpoint, port):
        os.environ.update(lambda_environment(endpoint))
        provision(endpoint, lambda_environment(endpoint), port)
        measured = warm(args.requests, port)
        report_warm(measured)
        init = 0.0
        if not args.skip_cold:
            work = Path(tempfile.mkdtemp(prefix="lambdamesh-bench-"))
            try:
                figures = cold(args.rounds, endpoint, work)
                report_cold(figures)
                init = figures["finished"]["init"]
            finally:
                shutil.rmtree(work, ignore_errors=True)
        report_sizing(measured, init)
    return 0


if __name__ == "__main__":
    sys.exit(main())
