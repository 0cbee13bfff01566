"""What a Eureka client's calls use, measured: the figures `lambdamesh cost` prices Eureka
clients with (``lambdamesh/cost/eureka.py`` and the ``--eureka-*`` inputs).

A registry of py-eureka-client instances (the captured body of
``tests/functional/test_eureka_api.py``), registered through the app against moto's
DynamoDB in a process of its own, so that this process's CPU time is the app's:

* item sizes by DynamoDB's item-size rules (``item_bytes``), read back from the table: a
  client's instance, a sidecar's, a catalog entry, the change journal's items;
* response bytes of a full fetch (XML, which py-eureka-client reads, and JSON) and of a delta
  with no change in its window;
* CPU per call, stretched to 512 MB's share of a vCPU as ``docs/benchmarks.md`` does: a
  DynamoDB Query (the catalog's, a service's, the journal's), a renew, and per registered
  instance what a full fetch spends rendering it and a delta mapping it (the slope between
  two registry sizes, the services' views cached).

A count and a CPU time, not a wall time: the round trip to DynamoDB on AWS is not measurable
here. Run with ``python -m tests.bench.bench_eureka`` (``--json`` for scripts).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tests.helpers import SIGNING_KEY, admin_token, service_token

TABLE = "bench-eureka"
SERVICES = 20
SMALL, LARGE = 1, 5  # instances per service: the two registry sizes
# Lambda gives a function CPU in proportion to its memory: one vCPU's worth at 1,769 MB.
SHARE_AT_512_MB = 512 / 1769


def value_bytes(value: dict[str, Any]) -> int:
    """One attribute value's size by DynamoDB's rules: a string's UTF-8 bytes; a number's
    significant digits, two a byte, plus one; a null or a boolean, one; a map or a list, three
    bytes and one per element besides its elements (a map's keys count as names); a string
    set, its strings."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        digits = len(Decimal(raw).normalize().as_tuple().digits)
        return (digits + 1) // 2 + 1
    if kind in ("NULL", "BOOL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_bytes(v) + 1 for k, v in raw.items())
    if kind == "L":
        return 3 + sum(value_bytes(v) + 1 for v in raw)
    if kind == "SS":
        return sum(len(s.encode()) for s in raw)
    raise ValueError(f"no size rule for a value of type {kind}")


def item_bytes(item: dict[str, dict[str, Any]]) -> int:
    """An item's size: each attribute's name and value."""
    return sum(len(name.encode()) + value_bytes(value) for name, value in item.items())


def _basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"eureka:{token}".encode()).decode()}


def _cpu_ms(call: Callable[[], object], count: int = 40) -> float:
    """CPU ms per call, the best of three rounds after a warm-up."""
    for _ in range(5):
        call()
    rounds = []
    for _ in range(3):
        started = time.process_time()
        for _ in range(count):
            call()
        rounds.append((time.process_time() - started) / count * 1000)
    return min(rounds)


class _Registry:
    """The app, its table and py-eureka-client's calls, for app ``EUREKA{service}``."""

    def __init__(self, http: Any, table: Any) -> None:
        self.http, self.table = http, table

    def path(self, service: int, number: int) -> str:
        app = f"EUREKA{service:02d}"
        return f"/eureka/apps/{app}/127.0.0.1%3A{app.lower()}%3A{8000 + number}"

    def register(self, service: int, number: int, status: str = "UP") -> None:
        from tests.functional.test_eureka_api import py_body

        app = f"EUREKA{service:02d}"
        body = py_body(
            8000 + number,
            app=app,
            instanceId=f"127.0.0.1:{app.lower()}:{8000 + number}",
            vipAddress=app.lower(),
            secureVipAddress=app.lower(),
            status=status,
        )
        headers = {"Content-Type": "application/json", **_basic(service_token(app.lower()))}
        answer = self.http.post(f"/eureka/apps/{app}", headers=headers, body=json.dumps(body))
        assert answer.status_code == 204, answer.body

    def items(self, partition: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.table.scan(TableName=TABLE)["Items"]
        return [i for i in found if partition is None or i["pk"]["S"] == partition]

    def forget_changes(self) -> None:
        """The journal emptied, as if the delta's window had passed since."""
        for item in self.items("~changes"):
            self.table.delete_item(TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]})

    def fetch(self, path: str, accept: str | None = None) -> bytes:
        headers = {**_basic(admin_token()), **({"Accept": accept} if accept else {})}
        answer = self.http.get(path, headers=headers)
        assert answer.status_code == 200, answer.body
        body = answer.body
        return body if isinstance(body, bytes) else str(body).encode()


def _sizes(registry: _Registry) -> dict[str, float]:
    instances = [i for i in registry.items() if not i["pk"]["S"].startswith("~")]
    eureka = [item_bytes(i) for i in instances if "eureka" in i]
    registry.forget_changes()
    registry.register(0, 0, status="DOWN")
    added = item_bytes(registry.items("~changes")[0])
    answer = registry.http.delete(registry.path(0, 0), headers=_basic(service_token("eureka00")))
    assert answer.status_code == 200, answer.body
    deleted = max(item_bytes(i) for i in registry.items("~changes"))
    registry.register(0, 0)
    return {
        "Eureka client's item, bytes (min)": min(eureka),
        "Eureka client's item, bytes (max)": max(eureka),
        "catalog entry, bytes": max(item_bytes(i) for i in registry.items("~services")),
        "journal ADDED change, bytes": added,
        "journal DELETED change, bytes": deleted,
        "replaced client's changes (2 ADDED + DELETED), bytes": 2 * added + deleted,
    }


def _sidecar_sizes(registry: _Registry) -> dict[str, float]:
    writer = {"Authorization": f"Bearer {service_token('sidecar')}"}
    path = "/registry/services/sidecar/instances/sidecar-1"
    task = "arn:aws:ecs:us-east-1:123456789012:task/bench/0123456789abcdef0123456789abcdef"
    body = {"version": "v1", "host": "127.0.0.1", "port": 8080, "zone": "a", "task_arn": task}
    registry.forget_changes()
    assert registry.http.put(path, headers=writer, body=json.dumps(body)).status_code == 201
    item = item_bytes(registry.items("sidecar")[0])
    assert registry.http.delete(path, headers=writer).status_code == 204
    return {
        "sidecar's item, bytes": item,
        "sidecar's changes (ADDED + DELETED), bytes": sum(
            item_bytes(i) for i in registry.items("~changes")
        ),
    }


def _calls(registry: _Registry, store: Any) -> dict[str, float]:
    renew = registry.path(1, 0) + "?status=UP&lastDirtyTimestamp=1796445645568"
    token = _basic(service_token("eureka01"))
    ms = {
        "renew": _cpu_ms(lambda: registry.http.put(renew, headers=token, body=b"")),
        "catalog Query": _cpu_ms(store.services),
        "service Query": _cpu_ms(lambda: store.service_view("eureka01")),
        "journal Query": _cpu_ms(lambda: store.changes(time.time() - 180, 1000)),
    }
    return {f"{name}, ms at 512 MB": cpu / SHARE_AT_512_MB for name, cpu in ms.items()}


def _fetch_cpu(registry: _Registry) -> tuple[float, float]:
    full = _cpu_ms(lambda: registry.fetch("/eureka/apps/"))
    delta = _cpu_ms(lambda: registry.fetch("/eureka/apps/delta"))
    return full, delta


def measure() -> dict[str, float]:
    from tests.bench.bench_handler import MOTO
    from tests.e2e.processes import spawn

    moto = spawn("moto", ["-c", MOTO])
    try:
        endpoint = moto.wait_for_line(r"moto on (http://\S+)").group(1)
        return _measure(endpoint)
    finally:
        moto.stop()


def _measure(endpoint: str) -> dict[str, float]:
    environment = {
        "LAMBDAMESH_TABLE": TABLE,
        "LAMBDAMESH_SIGNING_KEY": SIGNING_KEY,
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "LAMBDAMESH_ALLOW_LOOPBACK": "true",
        "LAMBDAMESH_ALLOW_PRIVATE": "false",
        "LAMBDAMESH_EDGE_DEFAULT": "open",
        # The views stay cached: the fetches' own work is measured, their Queries apart.
        "LAMBDAMESH_CACHE_SECONDS": "60",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    os.environ.update(environment)
    import boto3

    import app as application
    from chalicelib import wiring
    from lambdamesh.testclient import create_test_client

    wiring.reset()
    wiring.store().create_table()
    table = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    with create_test_client(application.app, environment_variables=environment) as client:
        registry = _Registry(client.http, table)
        for service in range(SERVICES):
            registry.register(service, 0)
        registry.forget_changes()
        small = _fetch_cpu(registry)
        for service in range(SERVICES):
            for number in range(SMALL, LARGE):
                registry.register(service, number)
        registry.forget_changes()
        wiring.reset()  # a new cache, which reads the larger registry
        large = _fetch_cpu(registry)
        added = SERVICES * (LARGE - SMALL) * SHARE_AT_512_MB
        figures = {
            "registry instances": SERVICES * LARGE,
            "full fetch XML, bytes": len(registry.fetch("/eureka/apps/")),
            "full fetch JSON, bytes": len(registry.fetch("/eureka/apps/", "application/json")),
            "delta with no change, XML bytes": len(registry.fetch("/eureka/apps/delta")),
            "full fetch rendering, ms per instance at 512 MB": (large[0] - small[0]) / added,
            "delta mapping, ms per instance at 512 MB": (large[1] - small[1]) / added,
            **_calls(registry, wiring.store()),
            **_sizes(registry),
            **_sidecar_sizes(registry),
        }
    # What a full fetch spends besides its Query and its rendering, at the smaller registry.
    rendering = figures["full fetch rendering, ms per instance at 512 MB"] * SERVICES * SMALL
    catalog = figures["catalog Query, ms at 512 MB"]
    figures["fetch's own handling, ms at 512 MB"] = small[0] / SHARE_AT_512_MB - catalog - rendering
    return figures


def assumed() -> dict[str, float]:
    """What `lambdamesh cost` assumes for the figures above."""
    from lambdamesh.cost import CostInputs, eureka

    return {
        "full fetch XML, bytes": eureka.FULL_BYTES_PER_INSTANCE * SERVICES * LARGE,
        "delta with no change, XML bytes": eureka.DELTA_BYTES,
        "full fetch rendering, ms per instance at 512 MB": eureka.FULL_MS_PER_INSTANCE,
        "fetch's own handling, ms at 512 MB": eureka.REQUEST_MS,
        "delta mapping, ms per instance at 512 MB": eureka.DELTA_MS_PER_INSTANCE,
        "renew, ms at 512 MB": CostInputs.heartbeat_ms,
        "service Query, ms at 512 MB": CostInputs.eureka_dynamodb_ms,
        "Eureka client's item, bytes (max)": CostInputs.eureka_item_bytes,
        "catalog entry, bytes": eureka.CATALOG_ENTRY_BYTES,
        "replaced client's changes (2 ADDED + DELETED), bytes": eureka.EUREKA_CHANGES_BYTES,
        "sidecar's item, bytes": eureka.SIDECAR_ITEM_BYTES,
        "sidecar's changes (ADDED + DELETED), bytes": eureka.SIDECAR_CHANGES_BYTES,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    figures = measure()
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    expected = assumed()
    print("Eureka clients' calls, measured, against what `lambdamesh cost` assumes")
    print("(ms: CPU here / 512 MB's share of a vCPU, without DynamoDB's round trip)")
    for name, value in figures.items():
        note = f"  (cost assumes {expected[name]:g})" if name in expected else ""
        print(f"  {name:<52} {value:>10,.2f}{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
