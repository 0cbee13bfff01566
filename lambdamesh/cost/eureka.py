"""What Eureka clients do a month (``chalicelib/eureka``), before prices: their calls, billed
seconds, DynamoDB units, log and response bytes. ``model.py`` prices it.

Each call as the code makes it:

* a renew is a heartbeat: one conditional UpdateItem of the client's item, billed at the
  heartbeat's duration and log bytes (it is logged at DEBUG, as a heartbeat is);
* a fetch, full or delta, is one Query of the catalog and one Query per service, each read
  through the gateway's per-Lambda cache (``LAMBDAMESH_CACHE_SECONDS``); a delta also Queries
  the change journal for its window. Every Query is eventually consistent;
* a client replaced (py-eureka-client's start and stop) registers (a consistent Query of the
  service's leases, the PutItem, the catalog's UpdateItem, the journal's PutItem), fetches the
  whole registry, registers again as DOWN and cancels (a DeleteItem and the journal's PutItem,
  which holds the removed item).

The sizes, times and bytes below are measured by ``tests/bench/bench_eureka.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lambdamesh.cost.inputs import CostInputs
from lambdamesh.cost.traffic import (
    SECONDS_PER_MONTH,
    client_lane,
    polls_per_second,
    sidecar_lane,
    stops_per_second,
)

# chalicelib.eureka.fetches.DELTA_WINDOW_SECONDS: how far back a delta reads the journal.
DELTA_WINDOW_SECONDS = 180.0
# DynamoDB's rules: a write unit per 1 KB of the item (an UpdateItem counts the larger of the
# item before and after), a read unit per 4 KB a Query returns in all, half of it when the
# read is eventually consistent, and at least one 4 KB block a Query.
WRITE_UNIT_BYTES = 1024
READ_BLOCK_BYTES = 4096
EVENTUAL = 0.5
# Measured item sizes, by DynamoDB's rules: a catalog entry; a sidecar's instance (host, port,
# zone, task ARN); the journal's items a replaced task leaves (a sidecar's ADDED and DELETED;
# a Eureka client's two ADDED and its DELETED).
CATALOG_ENTRY_BYTES = 53
SIDECAR_ITEM_BYTES = 234
SIDECAR_CHANGES_BYTES = 618
EUREKA_CHANGES_BYTES = 1220
# The DELETED change holds the removed item as JSON: 1,014 B for py-eureka-client's record,
# 10 B under a write unit, so any longer host name or URL makes it two; counted as two.
DELETED_CHANGE_WRITE_UNITS = 2.0
# Billed ms at 512 MB besides the DynamoDB calls (CPU measured, divided by 512 MB's share of a
# vCPU): the request's handling, and per registered instance what a full fetch spends
# rendering it (XML, which py-eureka-client reads) and a delta spends mapping it for the
# reconcile hash code.
REQUEST_MS = 3.0
FULL_MS_PER_INSTANCE = 0.31
DELTA_MS_PER_INSTANCE = 0.06
# A replaced client's calls: two registrations (four DynamoDB calls each) and a cancel (two).
CHURN_CALLS = 3
CHURN_DYNAMODB_CALLS = 10
# Response bytes (not priced: data transfer is not counted): a full registry in XML per
# instance, and a delta with no change in its window.
FULL_BYTES_PER_INSTANCE = 1630
DELTA_BYTES = 125


def write_units(size: float) -> float:
    return float(max(1, math.ceil(size / WRITE_UNIT_BYTES)))


def eventual_read_units(size: float) -> float:
    """A Query's read units, eventually consistent: half a unit per 4 KB block, one at least."""
    return EVENTUAL * max(1, math.ceil(size / READ_BLOCK_BYTES))


def lane(inputs: CostInputs) -> str:
    """The lane the clients' calls arrive on: ``rest`` or ``url``."""
    return client_lane(inputs) if inputs.eureka_lane == "clients" else sidecar_lane(inputs)


def renews_per_second(inputs: CostInputs) -> float:
    return inputs.eureka_clients / inputs.eureka_renew_seconds


def fetches_per_second(inputs: CostInputs) -> float:
    """Every fetch, the full registry at each replaced client's start included."""
    return inputs.eureka_clients / inputs.eureka_fetch_seconds + replaced_per_second(inputs)


def replaced_per_second(inputs: CostInputs) -> float:
    """Clients replaced a second: each once per task lifetime, as the sidecars' tasks."""
    if inputs.task_lifetime_hours == 0:
        return 0.0
    return inputs.eureka_clients / (inputs.task_lifetime_hours * 3600)


def full_per_second(inputs: CostInputs) -> float:
    polled = inputs.eureka_clients / inputs.eureka_fetch_seconds
    return polled * inputs.eureka_full_share + replaced_per_second(inputs)


def deltas_per_second(inputs: CostInputs) -> float:
    return fetches_per_second(inputs) - full_per_second(inputs)


def registry_instances(inputs: CostInputs) -> int:
    """What a fetch maps: the sidecars' instances and the Eureka clients alike."""
    return inputs.instances + inputs.eureka_clients


def service_bytes(inputs: CostInputs) -> float:
    """One service's instance items, instances spread evenly over the services."""
    stored = inputs.eureka_clients * inputs.eureka_item_bytes
    stored += inputs.instances * SIDECAR_ITEM_BYTES
    return stored / inputs.services


def journal_bytes(inputs: CostInputs) -> float:
    """The changes a delta reads: those of the tasks replaced within its window."""
    changes = replaced_per_second(inputs) * EUREKA_CHANGES_BYTES
    changes += stops_per_second(inputs) * SIDECAR_CHANGES_BYTES
    return changes * DELTA_WINDOW_SECONDS


def _fetch_ms(inputs: CostInputs, per_instance: float, queries: float) -> float:
    work = REQUEST_MS + registry_instances(inputs) * per_instance
    return work + queries * inputs.eureka_dynamodb_ms


def environments(inputs: CostInputs) -> int:
    """Execution environments the function keeps busy (Little's law), at least one, counted
    high for the cache: every fetch billed as if it read every service, heartbeats aside."""
    uncached = _fetch_ms(inputs, FULL_MS_PER_INSTANCE, 2 + inputs.services)
    busy = inputs.requests_per_second * inputs.routed_ms
    busy += polls_per_second(inputs) * inputs.poll_ms
    busy += fetches_per_second(inputs) * uncached
    busy += renews_per_second(inputs) * inputs.heartbeat_ms
    return max(1, math.ceil(busy / 1000 - 1e-9))


def view_queries_per_second(inputs: CostInputs) -> float:
    """Service Queries the fetches make: one per service per fetch, less what the cache
    absorbs, which is at most one per service per cache period per environment. Lambda does
    not say which environment takes a call, so the fetches are assumed spread over every busy
    one; fetches fewer than the environments per cache period are absorbed not at all."""
    wanted = fetches_per_second(inputs) * inputs.services
    if inputs.cache_seconds == 0:
        return wanted
    return min(wanted, environments(inputs) * inputs.services / inputs.cache_seconds)


def views_per_fetch(inputs: CostInputs) -> float:
    fetches = fetches_per_second(inputs)
    return view_queries_per_second(inputs) / fetches if fetches else float(inputs.services)


def full_ms(inputs: CostInputs) -> float:
    """A full fetch: the catalog's Query and the services' it makes."""
    return _fetch_ms(inputs, FULL_MS_PER_INSTANCE, 1 + views_per_fetch(inputs))


def delta_ms(inputs: CostInputs) -> float:
    """A delta: a full fetch's Queries and the journal's."""
    return _fetch_ms(inputs, DELTA_MS_PER_INSTANCE, 2 + views_per_fetch(inputs))


def churn_write_units(inputs: CostInputs) -> float:
    """A replaced client's writes: two registrations (the item, the catalog, the journal's
    ADDED), the cancel's delete and its DELETED change."""
    item = write_units(inputs.eureka_item_bytes)
    return 2 * (item + 1 + 1) + item + DELETED_CHANGE_WRITE_UNITS


def churn_read_units(inputs: CostInputs) -> float:
    """A replaced client's two registrations each Query the service's leases, consistently:
    a unit per 4 KB of the instance items read (only three attributes are returned, but DynamoDB
    counts the items' whole size)."""
    return 2 * max(1, math.ceil(service_bytes(inputs) / READ_BLOCK_BYTES))


def write_units_per_second(inputs: CostInputs) -> float:
    renews = renews_per_second(inputs) * write_units(inputs.eureka_item_bytes)
    return renews + replaced_per_second(inputs) * churn_write_units(inputs)


def read_units_per_second(inputs: CostInputs) -> float:
    catalog = fetches_per_second(inputs) * eventual_read_units(
        inputs.services * CATALOG_ENTRY_BYTES
    )
    views = view_queries_per_second(inputs) * eventual_read_units(service_bytes(inputs))
    journal = deltas_per_second(inputs) * eventual_read_units(journal_bytes(inputs))
    churn = replaced_per_second(inputs) * churn_read_units(inputs)
    return catalog + views + journal + churn


@dataclass(frozen=True)
class EurekaMonth:
    """One month of the clients' calls, by kind, and what they use in all."""

    renews: float
    full_fetches: float
    deltas: float
    churn_calls: float
    renew_seconds: float
    fetch_seconds: float
    churn_seconds: float
    log_bytes: float
    response_bytes: float

    @property
    def calls(self) -> float:
        return self.renews + self.full_fetches + self.deltas + self.churn_calls

    @property
    def fetches(self) -> float:
        return self.full_fetches + self.deltas


def month(inputs: CostInputs) -> EurekaMonth:
    month_of = SECONDS_PER_MONTH
    renews = renews_per_second(inputs) * month_of
    full, deltas = full_per_second(inputs) * month_of, deltas_per_second(inputs) * month_of
    replaced = replaced_per_second(inputs) * month_of
    churn_ms = CHURN_CALLS * REQUEST_MS + CHURN_DYNAMODB_CALLS * inputs.eureka_dynamodb_ms
    platform = inputs.platform_log_bytes
    logs = renews * (inputs.heartbeat_log_bytes + platform)
    logs += (full + deltas) * (inputs.eureka_fetch_log_bytes + platform)
    logs += replaced * (inputs.eureka_churn_log_bytes + CHURN_CALLS * platform)
    full_bytes = registry_instances(inputs) * FULL_BYTES_PER_INSTANCE
    return EurekaMonth(
        renews=renews,
        full_fetches=full,
        deltas=deltas,
        churn_calls=replaced * CHURN_CALLS,
        renew_seconds=renews * inputs.heartbeat_ms / 1000,
        fetch_seconds=(full * full_ms(inputs) + deltas * delta_ms(inputs)) / 1000,
        churn_seconds=replaced * churn_ms / 1000,
        log_bytes=logs,
        response_bytes=full * full_bytes + deltas * DELTA_BYTES,
    )
