"""The edge's price: what each way a caller proves who it is adds to a routed request, warm and
cold, as differences and ratios measured in one run on this machine.

Warm: the app invoked in this process with API Gateway's REST event, routing a GET to a
loopback upstream, for one service per case: no exposure document (``LAMBDAMESH_EDGE_DEFAULT=
open``, the gateway as it was before the edge), a public one (``auth: ["none"]``), one with
CORS, an address list and a rate limit, one behind an API key, and one behind JWTs (RS256 and
ES256, inline keys, so the key is cached after the first request): each with one token sent
again and again, as a client does until its token expires (its signature is checked once),
and with a new token on every request (a signature checked each time). The cases take turns
in rounds, because the machine's load drifts; each added figure is the median, over rounds,
of that round's median less the public service's.

Cold: the finished deployment package, unpacked and started by fresh ``python -I -S -B``
processes as Lambda would, serving its first request for the public service, and for the
JWT one, which loads PyJWT and cryptography and checks a signature for the first time. The
package holds cryptography built for arm64, as Lambda runs it; on another machine both cases
run with this machine's build of cryptography and cffi in its place.

Run with `make bench` or ``python -m tests.bench.bench_edge``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from lambdamesh.events import HttpRequest, RouteTable, Stage, build_event
from lambdamesh.invokers import LambdaContext
from tests.bench.bench_handler import backends, lambda_environment, package, probe, timed

ISSUER = "https://issuer.bench.example"
AUDIENCE = "bench-client"
# Added milliseconds at p50 each method may cost on a routed request.
GOALS = {
    "api key": 0.1,
    "jwt rs256": 0.3,
    "jwt es256": 0.3,
    "jwt rs256, new token each": 0.3,
    "jwt es256, new token each": 0.3,
}


def signing_keys() -> tuple[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, dict[str, Any]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keys = []
    for kid, jwk in (
        ("r1", RSAAlgorithm.to_jwk(rsa_key.public_key())),
        ("e1", ECAlgorithm.to_jwk(ec_key.public_key())),
    ):
        keys.append({**json.loads(jwk), "kid": kid, "use": "sig"})
    return rsa_key, ec_key, {"keys": keys}


def token(key: Any, kid: str, algorithm: str, subject: str = "bench-user") -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "exp": now + 86400}
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


Headers = tuple[tuple[str, str], ...]


def provision(endpoint: str, port: int, tokens: int) -> dict[str, tuple[str, list[Headers]]]:
    """The table, the secret, one instance per case's service and each one's exposure
    document (and key): the service each case routes to, and the headers of its requests in
    turn (one set, or ``tokens`` sets each with a token of its own)."""
    import boto3

    from chalicelib.config import Settings
    from chalicelib.exposure.document import parse_exposure
    from chalicelib.exposure.keys import new_key
    from chalicelib.instances import Registration
    from chalicelib.storage import InstanceStore
    from tests.bench.bench_handler import SECRET
    from tests.helpers import SIGNING_KEY

    environment = lambda_environment(endpoint)
    boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1").create_secret(
        Name=SECRET, SecretString=SIGNING_KEY
    )
    store = InstanceStore(Settings.from_environ(environment))
    store.create_table()
    rsa_key, ec_key, jwks = signing_keys()
    jwt_part = {"issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": ["RS256", "ES256"]}
    created = new_key("bench-consumer", time.time(), None)
    origin = "https://app.bench.example"
    jwt_document = {"exposed": True, "auth": ["jwt"], "jwt": {**jwt_part, "jwks": jwks}}

    def bearers(key: Any, kid: str, algorithm: str, count: int) -> list[Headers]:
        return [
            (("Authorization", f"Bearer {token(key, kid, algorithm, f'user-{n}')}"),)
            for n in range(count)
        ]

    cases: dict[str, tuple[dict[str, Any] | None, list[Headers]]] = {
        "no document (open)": (None, [()]),
        "public": ({"exposed": True, "auth": ["none"]}, [()]),
        "public, cors+addresses+limit": (
            {
                "exposed": True,
                "auth": ["none"],
                "cors": {"allow_origins": [origin]},
                "addresses": {"allow": ["127.0.0.0/8"], "deny": ["10.0.0.0/8"]},
                "rate_limits": {"service_per_second": 100_000},
            },
            [(("Origin", origin),)],
        ),
        "api key": ({"exposed": True, "auth": ["api_key"]}, [(("X-Api-Key", created.key),)]),
        "jwt rs256": (jwt_document, bearers(rsa_key, "r1", "RS256", 1)),
        "jwt es256": (jwt_document, bearers(ec_key, "e1", "ES256", 1)),
        "jwt rs256, new token each": (jwt_document, bearers(rsa_key, "r1", "RS256", tokens)),
        "jwt es256, new token each": (jwt_document, bearers(ec_key, "e1", "ES256", tokens)),
    }
    routed = {}
    for index, (name, (document, headers)) in enumerate(cases.items()):
        service = f"edge{index}"
        store.register(
            Registration(service, "bench-0", "v1", "127.0.0.1", port, lease_seconds=3600),
            time.time(),
        )
        if document is not None:
            store.put_exposure(service, parse_exposure(service, document), time.time())
        if name == "api key":
            store.put_key(service, created.stored)
        routed[name] = (service, headers)
    return routed


def event(app: Any, service: str, headers: Headers) -> dict[str, Any]:
    request = HttpRequest("GET", f"/api/v1/{service}/v1/a/b?c=d", headers, b"")
    match = RouteTable(app.routes).match(request.path)
    assert match is not None
    return build_event(
        request, match, Stage(), request_id="bench", epoch_ms=int(time.time() * 1000)
    )


def warm(
    routed: dict[str, tuple[str, list[Headers]]], rounds: int, count: int
) -> dict[str, list[float]]:
    """Each case's median seconds per round, the cases taking turns within each round."""
    import app as application
    from chalicelib import wiring

    wiring.reset()

    def invoking(built: list[dict[str, Any]]) -> Callable[[], None]:
        turns = itertools.cycle(built)

        def call() -> None:
            answer = application.app(next(turns), LambdaContext())
            assert answer["statusCode"] == 200, answer

        return call

    calls = {
        name: invoking([event(application.app, service, headers) for headers in each])
        for name, (service, each) in routed.items()
    }
    medians: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            samples, _ = timed(count, call)
            medians[name].append(statistics.median(samples))
    return medians


def report_warm(medians: dict[str, list[float]]) -> None:
    base = medians["public"]
    print(f"{'edge, warm, in process':32} {'median ms':>10} {'added ms':>9} {'goal':>6}")
    for name, values in medians.items():
        added = statistics.median(v - b for v, b in zip(values, base, strict=True))
        goal = GOALS.get(name)
        verdict = (
            "" if goal is None else f"{goal:5.1f} {'met' if added * 1000 <= goal else 'MISSED'}"
        )
        print(f"{name:32} {statistics.median(values) * 1000:10.3f} {added * 1000:9.3f} {verdict}")
    print("added: the median over rounds of the case's median less the public service's")


def cold(
    routed: dict[str, tuple[str, list[Headers]]],
    endpoint: str,
    rounds: int,
    work: Path,
) -> dict[str, dict[str, Any]]:
    """Per case, medians of the initialisation and first request, and whether the first
    request loaded PyJWT."""
    import app as application

    _, packaged = package(work)
    finished = with_host_builds(packaged, work)
    environment = {
        "PATH": os.environ.get("PATH", ""),
        **lambda_environment(endpoint),
        "AWS_LAMBDA_FUNCTION_NAME": "lambdamesh-bench",
    }
    found: dict[str, dict[str, Any]] = {}
    for name in ("public", "jwt rs256"):
        service, each = routed[name]
        path = work / f"{service}.json"
        path.write_text(json.dumps(event(application.app, service, each[0])))
        found[name] = {"init": [], "first": [], "init+first": [], "jwt": False}
    for _ in range(rounds):
        for name in found:
            result = probe(finished, "first", work / f"{routed[name][0]}.json", environment)
            row = found[name]
            row["init"].append(result["import"])
            row["first"].append(result["first"])
            row["init+first"].append(result["import"] + result["first"])
            row["jwt"] = any(m.split(".")[0] in ("jwt", "cryptography") for m in result["modules"])
    return {
        name: {k: statistics.median(v) if isinstance(v, list) else v for k, v in row.items()}
        for name, row in found.items()
    }


def with_host_builds(task: Path, work: Path) -> Path:
    """``task``, or a copy of it with this machine's cryptography and cffi builds in place of
    the package's arm64 ones when this machine is not arm64."""
    if platform.machine() in ("aarch64", "arm64"):
        return task
    import _cffi_backend
    import cffi
    import cryptography

    copy = work / f"{task.name}-host"
    shutil.copytree(task, copy)
    for built in copy.glob("_cffi_backend*"):
        built.unlink()
    shutil.copy2(_cffi_backend.__file__, copy)
    for package_ in (cryptography, cffi):
        assert package_.__file__ is not None
        source = Path(package_.__file__).parent
        shutil.rmtree(copy / source.name)
        shutil.copytree(source, copy / source.name)
    return copy


def report_cold(figures: dict[str, dict[str, Any]]) -> None:
    base = figures["public"]["init+first"]
    print()
    print("edge, cold start: finished package, fresh `python -I -S -B`; x = / public's init+first")
    print(f"{'first request to':20} {'init ms':>9} {'first ms':>9} {'total ms':>9} {'x':>6}  PyJWT")
    for name, row in figures.items():
        print(
            f"{name:20} {row['init'] * 1000:9.1f} {row['first'] * 1000:9.1f} "
            f"{row['init+first'] * 1000:9.1f} {row['init+first'] / base:6.2f}  "
            f"{'loaded' if row['jwt'] else 'not loaded'}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="warm calls per case per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (warm) and cold starts")
    parser.add_argument("--skip-cold", action="store_true", help="warm figures only")
    args = parser.parse_args(argv)
    with backends() as (endpoint, port):
        os.environ.update(lambda_environment(endpoint))
        # A token for every call of the "new token each" cases, warm-up included.
        routed = provision(
            endpoint, port, (args.requests + max(10, args.requests // 10)) * args.rounds
        )
        report_warm(warm(routed, args.rounds, args.requests))
        if not args.skip_cold:
            work = Path(tempfile.mkdtemp(prefix="lambdamesh-bench-edge-"))
            try:
                report_cold(cold(routed, endpoint, args.rounds, work))
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
