"""What a mesh does a month: its calls, polls, warm Lambdas and DynamoDB units, before prices.

Plain arithmetic over `CostInputs`; `model.py` prices it.
"""

from __future__ import annotations

import math

from lambdamesh.cost.inputs import CostInputs

HOURS_PER_MONTH = 730  # AWS's own convention for monthly estimates
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600


def heartbeats_a_month(inputs: CostInputs) -> float:
    return inputs.instances * SECONDS_PER_MONTH / inputs.heartbeat_seconds


def routed_a_month(inputs: CostInputs) -> float:
    return inputs.requests_per_second * SECONDS_PER_MONTH


def polls_per_second(inputs: CostInputs) -> float:
    """Routing-view polls from the sidecars' outbound ports: one per called service per
    refresh period per sidecar."""
    return inputs.outbound_sidecars * inputs.called_services / inputs.refresh_seconds


def polls_a_month(inputs: CostInputs) -> float:
    return polls_per_second(inputs) * SECONDS_PER_MONTH


def sidecar_lane(inputs: CostInputs) -> str:
    """The lane heartbeats, routing-view polls and certificate issues arrive on: the
    sidecars' LAMBDAMESH_URL."""
    return "url" if inputs.lane == "mixed" else inputs.lane


def client_lane(inputs: CostInputs) -> str:
    """The lane routed requests arrive on, and east-west calls would through the gateway."""
    return "rest" if inputs.lane == "mixed" else inputs.lane


def rest_calls_a_month(inputs: CostInputs) -> float:
    """The calls API Gateway bills, polls aside: those of each kind whose lane is REST."""
    calls = routed_a_month(inputs) if client_lane(inputs) == "rest" else 0.0
    if sidecar_lane(inputs) == "rest":
        calls += heartbeats_a_month(inputs)
    return calls


def warm_lambdas(inputs: CostInputs) -> int:
    """Concurrent executions routed traffic and polls keep busy (Little's law), at least one."""
    polls = polls_per_second(inputs)
    if inputs.requests_per_second == 0 and polls == 0:
        return 0
    busy = inputs.requests_per_second * inputs.routed_ms / 1000 + polls * inputs.poll_ms / 1000
    return max(1, math.ceil(busy))


def list_reads_per_second(inputs: CostInputs) -> float:
    """Instance-list Queries: routed requests and polls read the same per-Lambda cache, so
    at most one per cache period per warm Lambda per service, never more than they are."""
    readers = inputs.requests_per_second + polls_per_second(inputs)
    if inputs.cache_seconds == 0:
        return readers
    return min(readers, warm_lambdas(inputs) * inputs.services / inputs.cache_seconds)


# Write units of one task replaced: its registration (the instance and its task-index entry),
# the catalog entry's bump, and the stop's delete (the instance and its index entry), and the
# change journal Eureka's delta reads: an ADDED record (about 100 B) and a DELETED one holding
# the removed item (about 400 B for a sidecar's), one unit each.
CHURN_WRITE_UNITS = 7.0
# Read units: the registration's consistent Query of the service's leases (one unit), and
# each stop event's eventually consistent Query of the keys-only task index (half a unit).
REGISTRATION_READ_UNITS = 1.0
EVENT_READ_UNITS = 0.5


def stops_per_second(inputs: CostInputs) -> float:
    """Tasks replaced a second: each instance's task once per lifetime (0: none modelled)."""
    if inputs.task_lifetime_hours == 0:
        return 0.0
    return inputs.instances / (inputs.task_lifetime_hours * 3600)


def stops_a_month(inputs: CostInputs) -> float:
    return stops_per_second(inputs) * SECONDS_PER_MONTH


# chalicelib/certificates.py RENEW_AT: a certificate's holder asks for the next one half-way
# through its life.
RENEW_AT = 0.5


def renewal_seconds(inputs: CostInputs) -> float:
    return inputs.cert_seconds * RENEW_AT


def issues_per_sidecar_second(inputs: CostInputs) -> float:
    """Certificates one mesh sidecar asks for a second. A task issues one at its start and
    one every renewal period while it lives: ceil(lifetime / period) in all, since the
    renewal that would fall at its end is its replacement's first. Without task churn, one a
    period."""
    period = renewal_seconds(inputs)
    if inputs.task_lifetime_hours == 0:
        return 1 / period
    lifetime = inputs.task_lifetime_hours * 3600
    return max(1, math.ceil(lifetime / period - 1e-9)) / lifetime


def issues_a_month(inputs: CostInputs) -> float:
    return inputs.mesh_sidecars * issues_per_sidecar_second(inputs) * SECONDS_PER_MONTH


def events_a_month(inputs: CostInputs) -> float:
    """ECS's task state change events the rule delivers: those with desiredStatus STOPPED."""
    return stops_a_month(inputs) * inputs.events_per_stop


def churn_read_units(inputs: CostInputs) -> float:
    return REGISTRATION_READ_UNITS + inputs.events_per_stop * EVENT_READ_UNITS


def write_units_per_second(inputs: CostInputs) -> float:
    heartbeats = inputs.instances / inputs.heartbeat_seconds * inputs.write_units_per_heartbeat
    return heartbeats + stops_per_second(inputs) * CHURN_WRITE_UNITS


def read_units_per_second(inputs: CostInputs) -> float:
    lists = list_reads_per_second(inputs) * inputs.read_units_per_list
    return lists + stops_per_second(inputs) * churn_read_units(inputs)
