"""DynamoDB storage for the registry, through PynamoDB. Models never leave this module.

One table, three kinds of item:

* an instance: ``pk`` = service, ``sk`` = instance id; TTL on ``expires_at`` cleans up. An
  instance an ECS task registered also holds its ``task_arn``, the key of the sparse index
  ``by-task`` (keys only), which finds what a stopped task left behind. A heartbeat writes
  neither the key nor a projected attribute, so it costs the index nothing. A heartbeat that
  carries its sidecar's figures writes them too, in ``figures`` (compact JSON, about 90 B and
  at most 150 B: ``chalicelib/figures.py``); a registration, which puts the whole item, drops
  them.
* a service's routing policy and operator drains: ``pk`` = service, ``sk`` = ``~policy``. It
  sorts after every instance id (``~`` cannot start one), so the gateway's one Query of a
  service reads its instances and its policy together, and instance-only Queries stop
  before it (``sk < "~"``).
* a service's exposure document: ``pk`` = service, ``sk`` = ``~exposure``; and its API keys,
  ``sk`` = ``~key#<key_id>`` (a hash of the secret, never the secret; TTL on ``expires_at``
  removes an expired key, and a revoked one, whose expiry revoking brings forward). Like the
  policy, they sort after every instance and are read in the gateway's one Query.
* a change: ``pk`` = ``~changes``, ``sk`` = ``<epoch ms>#<service>#<instance id>``, one per
  registration, status change, drain, drain lifted and removal, with the removed item's last
  state; TTL on ``expires_at`` removes it after an hour. Eureka's delta reads the last minutes
  of them in one Query (``chalicelib/eureka``).
* a catalog entry: ``pk`` = ``~services``, ``sk`` = service, so listing services is a Query,
  not a Scan. ``~`` cannot start a service name, so the partitions never meet. Its
  ``generation`` counts the registrations, so an entry found empty is deleted only if none
  came in meanwhile.

Invariants are conditional writes: a heartbeat renews only a lease that is still running, so a
lapsed or deleted instance cannot be revived by a late heartbeat.

Only PynamoDB's public API is used: the models describe the items (attributes, conditions,
update actions, ``serialize`` and ``from_raw_data``) and never speak to DynamoDB; every call
goes through one ``TableConnection``, so one botocore client serves them all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.exceptions import HTTPClientError
from botocore.session import Session as BotocoreSession
from pynamodb.attributes import (
    BooleanAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.connection import TableConnection
from pynamodb.connection.base import MetaTable
from pynamodb.constants import (
    ACTIVE,
    ALL_OLD,
    ATTR_DEFINITIONS,
    ATTR_NAME,
    ATTR_TYPE,
    ATTRIBUTES,
    CAPACITY_UNITS,
    CONSUMED_CAPACITY,
    COUNT,
    GLOBAL_SECONDARY_INDEXES,
    INDEX_NAME,
    ITEM,
    ITEMS,
    KEY_SCHEMA,
    KEY_TYPE,
    LAST_EVALUATED_KEY,
    PAY_PER_REQUEST_BILLING_MODE,
    PROJECTION,
    PROJECTION_TYPE,
    TABLE_NAME,
    TABLE_STATUS,
    TOTAL,
    UPDATED_NEW,
)
from pynamodb.exceptions import PynamoDBException, TableDoesNotExist
from pynamodb.expressions.condition import size
from pynamodb.models import Model
from pynamodb.types import HASH, RANGE

from chalicelib.config import Settings
from chalicelib.errors import InstanceNotFound, RegistryMisconfigured, RegistryUnavailable
from chalicelib.exposure.document import Exposure, StoredExposure
from chalicelib.exposure.document import from_json as exposure_from_json
from chalicelib.exposure.keys import ApiKey
from chalicelib.exposure.view import GatewayView
from chalicelib.instances import (
    STATUSES,
    Change,
    Instance,
    RegisterResult,
    Status,
    StoredPolicy,
)
from chalicelib.observability import logger, record_write_units
from chalicelib.registry import Lease
from lambdamesh_routing.policy import Policy, from_json

if TYPE_CHECKING:
    from chalicelib.instances import Registration

CATALOG_PARTITION = "~services"
POLICY_KEY = "~policy"
EXPOSURE_KEY = "~exposure"
API_KEY_PREFIX = "~key#"
# Every instance id sorts before it: ids are a-z, 0-9, ".", "_" and "-".
INSTANCES_END = "~"
HEALTH_PARTITION = "~health"
CHANGES_PARTITION = "~changes"
# How long a change is kept: Eureka's delta looks back minutes, TTL deletes it after this.
CHANGE_TTL_SECONDS = 3600
# Global rate limit counters: each in a partition of its own, so that one counter's writes
# (at most MAX_GLOBAL_RATE a second) never share a partition's throughput with another's.
COUNTER_PREFIX = "~rate#"
CONDITION_FAILED = "ConditionalCheckFailedException"
# DynamoDB's answers that waiting cures (any 5xx counts too); every other refusal (a missing
# table, a role that may not use it, a request it calls invalid) needs the operator.
TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
# No answer at all: timeouts, refused or dropped connections.
NO_ANSWER = (HTTPClientError, BotocoreConnectionError)


class _Item(Model):
    class Meta:
        table_name = "lambdamesh-registry"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


TASK_INDEX = "by-task"
# DescribeTable's key for an index's state (PynamoDB names the table's, not the index's).
INDEX_STATUS = "IndexStatus"


class InstanceItem(_Item):
    version = UnicodeAttribute()
    host = UnicodeAttribute()
    port = NumberAttribute()
    weight = NumberAttribute()
    zone = UnicodeAttribute(null=True)
    metadata = MapAttribute[str, Any](null=True)  # type: ignore[no-untyped-call]
    status = UnicodeAttribute()
    lease_seconds = NumberAttribute()
    expires_at = NumberAttribute()
    registered_at = NumberAttribute()
    updated_at = NumberAttribute()
    # The task index's key (``_schema``): only instances an ECS task registered have it.
    task_arn = UnicodeAttribute(null=True)
    # Written only when true: items without it, older ones included, read as false.
    tls = BooleanAttribute(null=True)
    # What a Eureka client registered beyond the registry's fields (``chalicelib.eureka``),
    # as compact JSON, and its lastDirtyTimestamp, which a renew is checked against.
    eureka = UnicodeAttribute(null=True)
    eureka_dirty = NumberAttribute(null=True)
    # What its sidecar last reported of the calls through its ports, as compact JSON
    # (``chalicelib.figures``), written by the heartbeats that carry some.
    figures = UnicodeAttribute(null=True)


class ChangeItem(_Item):
    """One change to an instance, for Eureka's delta."""

    action = UnicodeAttribute()
    # The removed instance's item as DynamoDB returned it (a DELETED change only).
    last_state = UnicodeAttribute(null=True)
    # The table's TTL attribute.
    expires_at = NumberAttribute()


class PolicyItem(_Item):
    # The policy document as validated JSON; absent when only drains are stored.
    policy = UnicodeAttribute(null=True)
    updated_at = NumberAttribute(null=True)
    # Instance ids an operator took out of rotation. A set, so ADD and DELETE need no read.
    drained = UnicodeSetAttribute(null=True)


class ExposureItem(_Item):
    document = UnicodeAttribute()
    updated_at = NumberAttribute()


class KeyItem(_Item):
    consumer = UnicodeAttribute()
    secret_hash = UnicodeAttribute()
    created_at = NumberAttribute()
    # The table's TTL attribute: DynamoDB deletes an expired key some time after it expires.
    expires_at = NumberAttribute(null=True)
    revoked_at = NumberAttribute(null=True)
    last_used_at = NumberAttribute(null=True)


class CounterItem(_Item):
    """One window of a global rate limit: requests admitted so far, and when DynamoDB's TTL
    may delete it (the table's TTL attribute)."""

    hits = NumberAttribute()
    expires_at = NumberAttribute()


class CatalogItem(_Item):
    created_at = NumberAttribute()
    # Absent on entries written before it existed: read as 0.
    generation = NumberAttribute(null=True)


def _connection_options(settings: Settings) -> dict[str, Any]:
    """The table connection's endpoint and limits. Building a botocore client costs about
    100 ms of CPU (loading its endpoint and service data): every call goes through the one
    connection, so a cold start pays it once (``tests/functional/test_storage.py`` checks that
    one client serves every call).

    A table that cannot be reached answers 503 within about 3 x (1 s + 2 s), well before API
    Gateway's 29 s, instead of botocore's default minute.
    """
    return {
        "region": settings.region,
        "host": settings.dynamodb_endpoint,
        "connect_timeout_seconds": 1,
        "read_timeout_seconds": 2,
        "max_retry_attempts": 2,
    }


def _schema(table_name: str) -> dict[str, Any]:
    """The table as DynamoDB describes it: its keys (the models' ``pk`` and ``sk``) and the
    task index, from the models' own attributes."""
    keys = [InstanceItem.pk, InstanceItem.sk]
    task = InstanceItem.task_arn
    return {
        TABLE_NAME: table_name,
        KEY_SCHEMA: [
            {ATTR_NAME: a.attr_name, KEY_TYPE: HASH if a.is_hash_key else RANGE} for a in keys
        ],
        ATTR_DEFINITIONS: [{ATTR_NAME: a.attr_name, ATTR_TYPE: a.attr_type} for a in [*keys, task]],
        GLOBAL_SECONDARY_INDEXES: [
            {
                INDEX_NAME: TASK_INDEX,
                KEY_SCHEMA: [{ATTR_NAME: task.attr_name, KEY_TYPE: HASH}],
                PROJECTION: {PROJECTION_TYPE: "KEYS_ONLY"},
            }
        ],
    }


def _table_connection(settings: Settings) -> TableConnection:
    """The one connection to the table, told its schema, so it never has to ask DynamoDB."""
    schema = MetaTable(_schema(settings.table_name))
    return TableConnection(settings.table_name, meta_table=schema, **_connection_options(settings))


def _to_instance(item: InstanceItem, drained: bool | None = None) -> Instance:
    """``drained`` where the service's drains were read with it; None where they were not."""
    return Instance(
        service=item.pk,
        instance_id=item.sk,
        version=item.version,
        host=item.host,
        port=int(item.port),
        weight=int(item.weight),
        zone=item.zone,
        metadata=_plain(item.metadata),
        status=item.status if item.status in STATUSES else "UP",
        lease_seconds=int(item.lease_seconds),
        expires_at=float(item.expires_at),
        registered_at=float(item.registered_at),
        updated_at=float(item.updated_at),
        drained=drained,
        task_arn=item.task_arn,
        tls=item.tls is True,
    )


def _stored_policy(item: PolicyItem) -> Policy | None:
    """The stored document, trusted: it was validated before it was written."""
    return None if item.policy is None else from_json(json.loads(item.policy))


def _stored_exposure(item: ExposureItem) -> StoredExposure:
    """The stored document, trusted: it was validated before it was written."""
    return StoredExposure(exposure_from_json(json.loads(item.document)), float(item.updated_at))


def _to_key(item: KeyItem) -> ApiKey:
    return ApiKey(
        key_id=item.sk.removeprefix(API_KEY_PREFIX),
        consumer=item.consumer,
        secret_hash=item.secret_hash,
        created_at=float(item.created_at),
        expires_at=_optional(item.expires_at),
        revoked_at=_optional(item.revoked_at),
        last_used_at=_optional(item.last_used_at),
    )


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


class _Found:
    """What one Query of a service's partition turned up, sorted by kind."""

    __slots__ = ("drained", "eureka", "exposure", "figures", "instances", "keys", "policy")

    def __init__(self) -> None:
        self.instances: list[InstanceItem] = []
        self.policy: Policy | None = None
        self.drained: set[str] = set()
        self.exposure: Exposure | None = None
        self.keys: list[ApiKey] = []
        self.eureka: dict[str, str] = {}
        self.figures: dict[str, str] = {}


def _plain(metadata: MapAttribute[str, Any] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    return {str(k): str(v) for k, v in metadata.as_dict().items()}  # type: ignore[no-untyped-call]


def _failure(operation: str, exc: PynamoDBException) -> RegistryUnavailable:
    """Sort a failure: 503 with ``Retry-After`` when waiting cures it, 500 when only the
    operator can, so a sidecar does not retry forever against a misconfiguration. Callers
    (who may be anonymous) get a fixed message; the cause goes to the log."""
    extra = {
        "error_code": _error_code(exc),
        "error_message": _error_message(exc),
        "cause": str(exc),
    }
    if _is_transient(exc):
        logger.warning("registry %s failed", operation, extra=extra)
        return RegistryUnavailable(f"the registry could not {operation}; try again shortly")
    logger.error("registry %s refused: misconfiguration", operation, extra=extra)
    return RegistryMisconfigured(
        f"the registry could not {operation}: server misconfiguration, retrying will not help"
    )


def _is_transient(exc: PynamoDBException) -> bool:
    """Throttling, DynamoDB's 5xx, and no answer at all. A refusal by DynamoDB, or a failure
    before any request (no credentials, a bug), is permanent."""
    response = _response(exc)
    if response is None:
        return isinstance(exc.cause, NO_ANSWER)
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return _error_code(exc) in TRANSIENT_CODES or status >= 500


def _response(exc: PynamoDBException) -> dict[str, Any] | None:
    """DynamoDB's answer; None for failures with no answer at all (timeouts), whose cause
    carries no response (PynamoDB's ``cause_response_code`` raises on those)."""
    response = getattr(exc.cause, "response", None)
    return response if isinstance(response, dict) else None


def _error_code(exc: PynamoDBException) -> str | None:
    code = (_response(exc) or {}).get("Error", {}).get("Code")
    return str(code) if code is not None else None


def _error_message(exc: PynamoDBException) -> str | None:
    message = (_response(exc) or {}).get("Error", {}).get("Message")
    return str(message) if message is not None else None


def _is_condition_failure(exc: PynamoDBException) -> bool:
    return _error_code(exc) == CONDITION_FAILED


class InstanceStore:
    """The storage verbs the registry and the gateway need, and nothing else."""

    def __init__(self, settings: Settings, table: TableConnection | None = None) -> None:
        """``table`` is the one connection every call goes through, the models' included; by
        default one with the models' settings, whose botocore client is built on first use."""
        self._table = table if table is not None else _table_connection(settings)
        # The models describe items; they never speak to DynamoDB themselves.
        self._instances: Any = InstanceItem
        self._catalog: Any = CatalogItem
        self._policies: Any = PolicyItem
        self._exposures: Any = ExposureItem
        self._keys: Any = KeyItem
        self._counters: Any = CounterItem
        self._changes: Any = ChangeItem

    def _get(self, hash_key: str, range_key: str, consistent: bool = False) -> Any:
        """The raw item, or None: one GetItem."""
        return self._table.get_item(hash_key, range_key, consistent_read=consistent).get(ITEM)

    def _query(self, hash_key: str, **options: Any) -> Iterator[dict[str, Any]]:
        """Every raw item of a Query, page after page."""
        start: Any = None
        while True:
            page = self._table.query(hash_key, exclusive_start_key=start, **options)
            yield from page.get(ITEMS, ())
            start = page.get(LAST_EVALUATED_KEY)
            if not start:
                return

    def _delete(self, hash_key: str, range_key: str, condition: Any = None) -> None:
        self._table.delete_item(hash_key, range_key, condition=condition)

    def _item(self, reg: Registration, now: float) -> InstanceItem:
        item: InstanceItem = self._instances(
            reg.service,
            reg.instance_id,
            version=reg.version,
            host=reg.host,
            port=reg.port,
            weight=reg.weight,
            zone=reg.zone,
            metadata=dict(reg.metadata) or None,
            status=reg.status,
            lease_seconds=reg.lease_seconds,
            expires_at=now + reg.lease_seconds,
            registered_at=now,
            updated_at=now,
            task_arn=reg.task_arn,
            tls=reg.tls or None,
            eureka=reg.eureka,
            eureka_dirty=reg.eureka_dirty,
        )
        return item

    def register(self, reg: Registration, now: float) -> RegisterResult:
        """Put the instance in one PutItem; ``created`` unless it replaced a live lease.

        One write that returns the old item (PynamoDB's ``save`` cannot ask for it) leaves no
        window between a check and a write for a deregistration to fall into. The catalog
        entry is written on every registration, not only the first, so a failure between the
        two writes heals on the sidecar's retry, and always after the instance (see
        ``forget``).
        """
        item = self._item(reg, now)
        try:
            answer = self._table.put_item(
                reg.service, reg.instance_id, attributes=item.serialize(), return_values=ALL_OLD
            )
            self._touch_catalog(reg.service, now)
        except PynamoDBException as exc:
            raise _failure("write", exc) from exc
        self._note_change(reg.service, reg.instance_id, "ADDED", now)
        old = answer.get(ATTRIBUTES)
        created = old is None or float(old["expires_at"]["N"]) <= now
        return RegisterResult(instance=_to_instance(item), created=created)

    def _touch_catalog(self, service: str, now: float) -> None:
        """Create the entry or bump its generation, in one UpdateItem."""
        model = self._catalog
        self._table.update_item(
            CATALOG_PARTITION,
            range_key=service,
            actions=[model.created_at.set(model.created_at | now), model.generation.add(1)],
        )

    def heartbeat(
        self,
        service: str,
        instance_id: str,
        now: float,
        status: Status | None = None,
        eureka_dirty: int | None = None,
        figures: str | None = None,
    ) -> tuple[Instance, str | None]:
        """Renew a running lease with one conditional UpdateItem; a change of status is noted
        for Eureka's delta. ``eureka_dirty`` (a Eureka renew's lastDirtyTimestamp) renews only
        an instance whose stored one is not older: a client with newer data must register.
        ``figures`` (as ``chalicelib.figures`` stores them) replace the stored ones in the
        same write; without, those stay. The renewed instance, and its figures after the write.

        It asks DynamoDB what the write cost (``ReturnConsumedCapacity``) and records it as
        the ``HeartbeatWriteUnits`` metric: the figure `lambdamesh cost` assumes (one unit
        for an item of up to 1 KB), measured on the deployed table.
        """
        model = self._instances
        actions = [
            model.expires_at.set(model.lease_seconds + now),
            model.updated_at.set(now),
        ]
        if status is not None:
            actions.append(model.status.set(status))
        if figures is not None:
            actions.append(model.figures.set(figures))
        condition = model.expires_at > now
        if eureka_dirty is not None:
            condition &= model.eureka_dirty.does_not_exist() | (model.eureka_dirty >= eureka_dirty)
        try:
            answer = self._table.update_item(
                service,
                range_key=instance_id,
                actions=actions,
                condition=condition,
                return_values=ALL_OLD,
                return_consumed_capacity=TOTAL,
            )
        except PynamoDBException as exc:
            if _is_condition_failure(exc):
                raise InstanceNotFound(
                    f"instance {instance_id!r} of {service!r} is not registered or its lease "
                    "has lapsed; register it again"
                ) from exc
            raise _failure("write", exc) from exc
        units = (answer.get(CONSUMED_CAPACITY) or {}).get(CAPACITY_UNITS)
        if units is not None:
            record_write_units("HeartbeatWriteUnits", float(units))
        item = model.from_raw_data(answer[ATTRIBUTES])
        before = _to_instance(item)
        item.expires_at, item.updated_at = item.lease_seconds + now, now
        if status is not None:
            item.status = status
        after = _to_instance(item)
        if after.status != before.status:
            self._note_change(service, instance_id, "MODIFIED", now)
        return after, item.figures if figures is None else figures

    def deregister(self, service: str, instance_id: str, now: float) -> bool:
        """Delete the instance; False if there was none."""
        try:
            old = self._table.delete_item(service, instance_id, return_values=ALL_OLD)
        except PynamoDBException as exc:
            raise _failure("write", exc) from exc
        return self._note_removal(service, instance_id, old.get(ATTRIBUTES), now)

    def task_instances(self, task_arn: str) -> list[tuple[str, str]]:
        """(service, instance id) of every instance ``task_arn`` registered, from the task
        index: eventually consistent, like every index read, and keys only."""
        pk, sk = self._instances.pk.attr_name, self._instances.sk.attr_name
        try:
            return [
                (raw[pk]["S"], raw[sk]["S"]) for raw in self._query(task_arn, index_name=TASK_INDEX)
            ]
        except PynamoDBException as exc:
            raise _failure("read", exc) from exc

    def remove_task_instance(self, service: str, instance_id: str, task_arn: str) -> bool:
        """Delete the instance only while ``task_arn`` is still the task that registered it:
        one a new task registered under the same id since stays. False if it was not there
        or not that task's."""
        model = self._instances
        try:
            old = self._table.delete_item(
                service, instance_id, condition=model.task_arn == task_arn, return_values=ALL_OLD
            )
        except PynamoDBException as exc:
            if _is_condition_failure(exc):
                return False
            raise _failure("write", exc) from exc
        return self._note_removal(service, instance_id, old.get(ATTRIBUTES), time.time())

    def _note_removal(
        self, service: str, instance_id: str, last: dict[str, Any] | None, now: float
    ) -> bool:
        if last is None:
            return False
        self._note_change(service, instance_id, "DELETED", now, json.dumps(last))
        return True

    def _note_change(
        self, service: str, instance_id: str, action: str, now: float, last: str | None = None
    ) -> None:
        """Add a change for Eureka's delta, after the write it records. Its failure fails
        nothing: the write stands, and a Eureka client that checks the registry's hash code
        (py-eureka-client, Java's) fetches the whole registry when a change is missing."""
        model = self._changes
        key = f"{int(now * 1000):015d}#{service}#{instance_id}"
        item = model(CHANGES_PARTITION, key)
        item.action, item.last_state, item.expires_at = action, last, now + CHANGE_TTL_SECONDS
        try:
            self._table.put_item(CHANGES_PARTITION, key, attributes=item.serialize())
        except PynamoDBException as exc:
            logger.warning(
                "change not recorded for Eureka's delta",
                extra={"service": service, "instance_id": instance_id, "error": str(exc)},
            )

    def changes(self, since: float, limit: int) -> list[Change]:
        """The changes from ``since`` on, oldest first, at most ``limit`` (one Query)."""
        model = self._changes
        start = f"{int(since * 1000):015d}"
        found: list[Change] = []
        try:
            for raw in self._query(CHANGES_PARTITION, range_key_condition=model.sk >= start):
                item = model.from_raw_data(raw)
                millis, service, instance_id = item.sk.split("#", 2)
                last, last_eureka = None, None
                if item.last_state is not None:
                    state = self._instances.from_raw_data(json.loads(item.last_state))
                    last, last_eureka = _to_instance(state), state.eureka
                found.append(
                    Change(int(millis) / 1000, service, instance_id, item.action, last, last_eureka)
                )
                if len(found) >= limit:
                    break
        except PynamoDBException as exc:
            raise _failure("read", exc) from exc
        return found

    def service_view(self, service: str) -> GatewayView:
        """Everything the gateway needs of ``service`` in one Query: its instances, marked
        when an operator drained them, its routing policy, its exposure and its API keys,
        read with them at no extra request."""
        found = _Found()
        try:
            for raw in self._query(service):
                self._sort_out(raw, found)
        except PynamoDBException as exc:
            raise _failure("read", exc) from exc
        # Marked once every drain is read: the policy item sorts after the instances.
        marked = (_to_instance(item, item.sk in found.drained) for item in found.instances)
        return GatewayView(
            tuple(marked),
            found.policy,
            frozenset(found.drained),
            exposure=found.exposure,
            keys=tuple(found.keys),
            eureka=found.eureka,
            figures=found.figures,
        )

    def _sort_out(self, raw: dict[str, Any], found: _Found) -> None:
        key = raw[self._instances.sk.attr_name]["S"]
        if key == POLICY_KEY:
            item = self._policies.from_raw_data(raw)
            found.policy, found.drained = _stored_policy(item), set(item.drained or ())
        elif key == EXPOSURE_KEY:
            found.exposure = _stored_exposure(self._exposures.from_raw_data(raw)).exposure
        elif key.startswith(API_KEY_PREFIX):
            found.keys.append(_to_key(self._keys.from_raw_data(raw)))
        elif key < INSTANCES_END:
            item = self._instances.from_raw_data(raw)
            found.instances.append(item)
            if item.eureka is not None:
                found.eureka[key] = item.eureka
            if item.figures is not None:
                found.figures[key] = item.figures

    def drain(self, service: str, instance_id: str, limit: int) -> bool:
        """Take the instance out of rotation until ``undrain``; its heartbeats write its own
        item, never this one, so they cannot undo it. False, and nothing written, when the
        service already holds ``limit`` drains and this is not one of them: the condition
        counts the set as stored, so drains made at the same moment cannot pass it together.
        """
        model = self._policies
        room = (
            model.drained.does_not_exist()
            | model.drained.contains(instance_id)
            | (size(model.drained) < limit)  # type: ignore[no-untyped-call]
        )
        try:
            self._table.update_item(
                service,
                range_key=POLICY_KEY,
                actions=[model.drained.add({instance_id})],
                condition=room,
            )
        except PynamoDBException as exc:
            if _is_condition_failure(exc):
                return False
            raise _failure("write", exc) from exc
        self._note_change(service, instance_id, "MODIFIED", time.time())
        return True

    def forget_drains(self, service: str, instance_ids: Iterable[str]) -> None:
        """Drop the drains of instances that are gone, so the set stays bounded. A service
        with no drains is left as it is: no item is written for it."""
        ids = set(instance_ids)
        if not ids:
            return
        model = self._policies
        try:
            self._table.update_item(
                service,
                range_key=POLICY_KEY,
                actions=[model.drained.delete(ids)],
                condition=model.drained.exists(),
            )
        except PynamoDBException as exc:
            if not _is_condition_failure(exc):
                raise _failure("write", exc) from exc

    def undrain(self, service: str, instance_id: str) -> bool:
        """Lift a drain; False if the instance was not drained."""
        model = self._policies
        try:
            self._table.update_item(
                service,
                range_key=POLICY_KEY,
                actions=[model.drained.delete({instance_id})],
                condition=model.drained.contains(instance_id),
            )
        except PynamoDBException as exc:
            if _is_condition_failure(exc):
                return False
            raise _failure("write", exc) from exc
        self._note_change(service, instance_id, "MODIFIED", time.time())
        return True

    def policy(self, service: str) -> StoredPolicy | None:
        """The service's policy as stored, read consistently, or None."""
        try:
            raw = self._get(service, POLICY_KEY, consistent=True)
        except PynamoDBException as exc:
            raise _failure("read", exc) from exc
        if raw is None:
            return None
        item = self._policies.from_raw_data(raw)
        policy = _stored_policy(item)
        return None if policy is None else StoredPolicy(policy, float(item.updated_at or 0))

    def put_policy(self, service: str, policy: Policy, now: float) -> bool:
        """Store the policy, replacing any; True if the service had none."""
        model = self._policies
        document = json.dumps(policy.to_json(), separators=(",", ":"), sort_keys=True)
        try:
            answer = self._table.update_item(
                service,
                range_key=POLICY_KEY,
                actions=[model.policy.set(document), model.updated_at.set(now)],
                return_values=ALL_OLD,
            )
        except PynamoDBException as exc:
            raise _failure("write", exc) from exc
        return model.policy.attr_name not in (answer.get(ATTRIBUTES) or {})

    def delete_policy(self, service: str) -> bool:
        """Remove the policy (drains stay); False if there was none."""
        model = self._policies
        try:
            self._table.update_item(
                service,
                range_key=POLICY_KEY,
                actions=[model.policy.remove(), model.updated_at.remove()],
                condition=model.policy.exists(),
            )
        except PynamoDBException as exc:
            if _is_condition_failure(exc):
                return False
            raise _failure("write", exc) from exc
        return True

    def exposure(self, service: str) -> StoredExposure | None:
        """The service's exposure document as stored, read consistently, or None."""
        try:
            raw = self._get(service, EXPOSURE_KEY, consistent=True)
        except PynamoDBException as exc:
            raise _failure("read", exc) from exc
        return None if raw is None else _stored_exposure(self._exposures.from_raw_data(raw))

    def put_exposure(self, service: str, exposure: Exposure, now: float) -> bool:
        """Store the document, replacing any; True if the service had none."""
        document = json.dumps(exposure.to_json(), separators=(",", ":"), sort_keys=True)
        item = self._exposures(service, EXPOSURE_KEY, document=document, updated_at=now)
        try:
            answer = self._table.put_item(
                service,
                range_key=EXPOSURE_KEY,
                attributes=item.serialize(),
                return_values=ALL_OLD,
            )
        except PynamoDBException as exc:
            raise _failure("write", exc) from exc
        return not answer.get(ATTRIBUTES)

    def delete_exposure(self, service: str) -> bool:
        """Remove the document; False if there was none."""
        model = self._exposures
        try:
            self._delete(service, EXPOSURE_KEY, condition=model.document.exists())
        except PynamoDBException as exc:
            if _is_condition_failure(exc):
                return False
            raise _failure("write", exc) from exc
        return True

    def keys(self, service: str) -> list[ApiKey]:
        """Every stored key of the service, read consistently."""
        model = self._keys
        try:
            found = self._query(
                service,
                range_key_condition=model.sk.startswith(API_KEY_PREFIX),
                consistent_read=True,
            )
            return [_to_key(model.from_raw_data(raw)) for raw in found]
        except PynamoDBException as exc:
            raise _failure("read", exc) from exc

    def put_key(self, service: str, key: ApiKey) -> None:
        """Store a new key; a key id is random, so one already stored under it is refused."""
        model = self._keys
        item = model(
            service,
            API_KEY_PREFIX + key.key_id,
            consumer=key.consumer,
            secret_hash=key.secret_hash,
            created_at=key.created_at,
            expires_at=key.expires_at,
        )
        try:
            self._table.put_item(
                service,
                range_key=API_KEY_PREFIX + key.key_id,
                attributes=item.serialize(),
                condition=model.sk.does_not_exist(),
            )
        except PynamoDBException as exc:
            raise _failure("write", exc) from exc

    def revoke_key(self, service: str, key_id: str, now: float, remove_by: float) -> bool:
        """Mark the key revoked and have TTL remove it by ``remove_by``, or at its own expiry
        when that is sooner (it stays listed until then); False if unknown or revoked already.

        DynamoDB has no min(): the first conditional write lowers the expiry only if it is
        later or absent, and when that condition fails the second revokes alone, if the key
        is there to revoke. No read; nothing else writes ``expires_at`` in between."""
        model = self._keys
        unrevoked = model.secret_hash.exists() & model.revoked_at.does_not_exist()
        later = model.expires_at.does_not_exist() | (model.expires_at > remove_by)
        shortened = [model.revoked_at.set(now), model.expires_at.set(remove_by)]
        return self._update_key(service, key_id, shortened, unrevoked & later) or (
            self._update_key(service, key_id, [model.revoked_at.set(now)], unrevoked)
        )

    def _update_key(self, service: str, key_id: str, actions: list[Any], condition: Any) -> bool:
        """One conditional UpdateItem of a key; False when the condition does not hold."""
        try:
            self._table.update_item(
                service,
                range_key=API_KEY_PREFIX + key_id,
                actions=actions,
                condition=condition,
            )
        except PynamoDBException as exc:
            if _is_condition_failure(exc):
                return False
            raise _failure("write", exc) from exc
        return True

    def touch_key(self, service: str, key_id: str, now: float, older_than: float) -> None:
        """Record that the key was used at ``now``, unless it was recorded after
        ``older_than``: one write per key per period, not one per request."""
        model = self._keys
        try:
            self._table.update_item(
                service,
                range_key=API_KEY_PREFIX + key_id,
                actions=[model.last_used_at.set(now)],
                condition=model.secret_hash.exists()
                & (model.last_used_at.does_not_exist() | (model.last_used_at < older_than)),
            )
        except PynamoDBException as exc:
            if not _is_condition_failure(exc):
                raise _failure("write", exc) from exc

    def count_request(self, counter: str, window: int, limit: int, expires_at: float) -> int | None:
        """Add one to window ``window`` of rate limit counter ``counter`` while it holds
        fewer than ``limit``: the count after, or None (nothing written) when it is full.
        One conditional UpdateItem; counters live in partitions of their own
        (COUNTER_PREFIX), apart from every service's, and leave by TTL."""
        model = self._counters
        try:
            answer = self._table.update_item(
                COUNTER_PREFIX + counter,
                range_key=str(window),
                actions=[model.hits.add(1), model.expires_at.set(expires_at)],
                condition=model.hits.does_not_exist() | (model.hits < limit),
                return_values=UPDATED_NEW,
            )
        except PynamoDBException as exc:
            if _is_condition_failure(exc):
                return None
            raise _failure("write", exc) from exc
        return int(answer[ATTRIBUTES][model.hits.attr_name]["N"])

    def leases(self, service: str, consistent: bool = False) -> list[Lease]:
        """Id, version and expiry of every stored instance of ``service``: the rest of each
        item is not sent."""
        model = self._instances
        fields = [model.sk.attr_name, model.version.attr_name, model.expires_at.attr_name]
        try:
            found = self._query(
                service,
                range_key_condition=model.sk < INSTANCES_END,
                consistent_read=consistent,
                attributes_to_get=fields,
            )
            items = [model.from_raw_data(raw) for raw in found]
            return [Lease(item.sk, item.version, float(item.expires_at)) for item in items]
        except PynamoDBException as exc:
            raise _failure("read", exc) from exc

    def listing(self, service: str) -> tuple[list[Lease], Exposure | None]:
        """The leases of ``service`` and its exposure document (None when it has none), in
        one Query: the document's key sorts just after the instances'."""
        model, exposures = self._instances, self._exposures
        fields = [
            model.sk.attr_name,
            model.version.attr_name,
            model.expires_at.attr_name,
            exposures.document.attr_name,
            exposures.updated_at.attr_name,
        ]
        leases, exposure = [], None
        found = self._query(
            service, range_key_condition=model.sk <= EXPOSURE_KEY, attributes_to_get=fields
        )
        try:
            for raw in found:
                if raw[model.sk.attr_name]["S"] == EXPOSURE_KEY:
                    exposure = _stored_exposure(exposures.from_raw_data(raw)).exposure
                else:
                    item = model.from_raw_data(raw)
                    leases.append(Lease(item.sk, item.version, float(item.expires_at)))
        except PynamoDBException as exc:
            raise _failure("read", exc) from exc
        return leases, exposure

    def prune(self, service: str, instance_ids: Iterable[str], now: float) -> list[str]:
        """Delete the instances whose lease has ended by ``now``; one renewed meanwhile, or
        registered again, stays. The ids of those it deleted. Each is noted as removed when
        its lease ended, for Eureka's delta, which no longer finds it stored."""
        model = self._instances
        deleted = []
        for instance_id in instance_ids:
            try:
                old = self._table.delete_item(
                    service,
                    instance_id,
                    condition=model.expires_at <= now,
                    return_values=ALL_OLD,
                )
            except PynamoDBException as exc:
                if not _is_condition_failure(exc):
                    raise _failure("write", exc) from exc
            else:
                deleted.append(instance_id)
                last = old.get(ATTRIBUTES)
                if last is not None:
                    # Recorded as of its lapse, which Eureka's delta reports from then on.
                    lapsed_at = float(last[model.expires_at.attr_name]["N"])
                    self._note_removal(service, instance_id, last, lapsed_at)
        return deleted

    def services(self) -> list[str]:
        try:
            sk = self._catalog.sk.attr_name
            return [raw[sk]["S"] for raw in self._query(CATALOG_PARTITION)]
        except PynamoDBException as exc:
            raise _failure("read", exc) from exc

    def catalog_generation(self, service: str) -> int | None:
        """The entry's generation, 0 for an entry that predates it, None for no entry."""
        try:
            raw = self._get(CATALOG_PARTITION, service)
        except PynamoDBException as exc:
            raise _failure("read", exc) from exc
        if raw is None:
            return None
        return int(self._catalog.from_raw_data(raw).generation or 0)

    def forget(self, service: str, generation: int) -> bool:
        """Delete the catalog entry only while its generation is still ``generation``: False
        when a registration came in since it was read."""
        model = self._catalog
        unchanged = (
            model.generation == generation if generation else model.generation.does_not_exist()
        )
        try:
            self._delete(CATALOG_PARTITION, service, condition=unchanged)
        except PynamoDBException as exc:
            if _is_condition_failure(exc):
                return False
            raise _failure("write", exc) from exc
        return True

    def prime(self) -> None:
        """Build the botocore client now (no request is sent): at initialisation, so the
        first request does not pay for loading botocore's service data."""
        _ = self._table.connection.client

    def session(self) -> BotocoreSession:
        """The botocore session this store's client was built from (this thread's)."""
        return self._table.connection.session

    def client_events(self) -> Any:
        """The botocore client's event hooks (``client.meta.events``, botocore's public
        extension point): where a tool or a test observes each call the store makes, e.g.
        ``before-call.dynamodb``. Builds the client if it is not built yet."""
        return self._table.connection.client.meta.events

    def drop_connections(self) -> None:
        """Close the client's pooled connections (the client stays usable and opens new
        ones): after a SnapStart restore the snapshotted sockets are dead."""
        self._table.connection.client.close()

    def ping(self) -> None:
        """A data-plane read of a key that never exists: cheap, and unlike DescribeTable not
        subject to the control plane's low request rate, since /health is public."""
        try:
            self._table.query(HEALTH_PARTITION, limit=1, select=COUNT)
        except PynamoDBException as exc:
            raise _failure("read", exc) from exc

    def has_task_index(self) -> bool:
        """Whether the table has the ``by-task`` index (a table made before it has not): one
        DescribeTable, for operators' commands, never on a request path."""
        try:
            described = self._table.connection.describe_table(self._table.table_name)
        except PynamoDBException as exc:
            error = RegistryUnavailable if _is_transient(exc) else RegistryMisconfigured
            raise error(f"cannot describe table {self._table.table_name!r}: {exc}") from exc
        indexes = described.get(GLOBAL_SECONDARY_INDEXES) or []
        return any(index.get(INDEX_NAME) == TASK_INDEX for index in indexes)

    def create_table(self) -> bool:
        """Create the table with TTL on ``expires_at`` if it is missing; True if created.

        An operator's command, so the message names the table and the cause.
        """
        name = self._table.table_name
        schema = _schema(name)
        try:
            try:
                self._table.describe_table()
                return False
            except TableDoesNotExist:
                pass
            self._table.create_table(
                attribute_definitions=schema[ATTR_DEFINITIONS],
                key_schema=schema[KEY_SCHEMA],
                global_secondary_indexes=[
                    {
                        "index_name": index[INDEX_NAME],
                        "key_schema": index[KEY_SCHEMA],
                        "projection": index[PROJECTION],
                    }
                    for index in schema[GLOBAL_SECONDARY_INDEXES]
                ],
                billing_mode=PAY_PER_REQUEST_BILLING_MODE,
            )
            self._wait_until_active()
            self._table.update_time_to_live(InstanceItem.expires_at.attr_name)
        except PynamoDBException as exc:
            error = RegistryUnavailable if _is_transient(exc) else RegistryMisconfigured
            raise error(f"cannot create table {name!r}: {exc}") from exc
        return True

    def _wait_until_active(self, attempts: int = 60, pause: float = 2.0) -> None:
        """DynamoDB creates a table in the background: wait, as PynamoDB's ``wait=True`` does,
        until it and its index are ACTIVE."""
        for _ in range(attempts):
            described = self._table.describe_table()
            indexes = described.get(GLOBAL_SECONDARY_INDEXES) or []
            if described.get(TABLE_STATUS) == ACTIVE and all(
                index.get(INDEX_STATUS) == ACTIVE for index in indexes
            ):
                return
            time.sleep(pause)
        raise RegistryUnavailable(f"table {self._table.table_name!r} is not active yet")


def missing_task_index_advice(table: str) -> str:
    """What to do about a table made before the ``by-task`` index: ECS's stop events remove
    nothing from it until the index is there (the lease still applies)."""
    return (
        f"warning: table {table} has no by-task index, so ECS's stop events remove nothing "
        "from it (instances leave by their lease). A stack-managed table: deploy "
        "infra/registry-table.yaml again. Otherwise: aws dynamodb update-table --table-name "
        f"{table} --attribute-definitions AttributeName=task_arn,AttributeType=S "
        '--global-secondary-index-updates \'[{"Create":{"IndexName":"by-task",'
        '"KeySchema":[{"AttributeName":"task_arn","KeyType":"HASH"}],'
        '"Projection":{"ProjectionType":"KEYS_ONLY"}}}]\''
    )
