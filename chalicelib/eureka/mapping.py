"""A Eureka instance record, as the registry stores it and as Eureka clients see it.

In: the registry's own fields come from the record and pass every check a registration
passes (``validation.parse_registration``): the service from the app name, the instance id
from the Eureka id (``identity``), the host from ``ipAddr`` (else ``hostName``; both pass the
host's checks, ``check_address``), the port from
``port`` (which must be enabled: the gateway reaches instances over plain HTTP), the lease from
``leaseInfo.durationInSecs``, the version from the ``version`` metadata key (default ``v1``),
the zone from an Amazon data center's ``availability-zone``. What only Eureka clients read
(the Eureka id, host name, secure port, URLs, VIP addresses, data center, the status the
client reported) is kept beside them as compact JSON.

Out: every live instance, registered through Eureka or by a sidecar, as a Eureka record.
Status: ``UP`` when the registry routes to it; ``OUT_OF_SERVICE`` (also its overridden
status) while an operator drains it; otherwise the status the Eureka client reported
(``DOWN``, ``STARTING``...), or ``DOWN``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, cast

from chalicelib.errors import InvalidRequest
from chalicelib.eureka.identity import app_of, registry_id
from chalicelib.eureka.records import (
    DEFAULT_COUNTRY_ID,
    DEFAULT_RENEWAL_INTERVAL,
    DEFAULT_SECURE_PORT,
    ActionType,
    DataCenter,
    DataCenterName,
    EurekaInstance,
    EurekaStatus,
    LeaseInfo,
    Port,
)
from chalicelib.instances import Instance, Registration
from chalicelib.validation import parse_registration
from lambdamesh_routing.errors import BadRequest
from lambdamesh_routing.hosts import MAX_HOST_LENGTH, AddressPolicy, normalize_host, parse_ip
from lambdamesh_routing.limits import MAX_LEASE_SECONDS, MIN_LEASE_SECONDS

VERSION_KEY = "version"
DEFAULT_VERSION = "v1"
AVAILABILITY_ZONE = "availability-zone"


def to_registration(
    instance: EurekaInstance, service: str, addresses: AddressPolicy
) -> Registration:
    """The registration a Eureka record stands for, checked as every registration is."""
    if not instance.port.enabled:
        raise InvalidRequest(
            "port must be enabled: lambdamesh reaches instances on their plain HTTP port "
            '(send "port": {"$": PORT, "@enabled": "true"})'
        )
    duration = instance.lease.duration
    if not MIN_LEASE_SECONDS <= duration <= MAX_LEASE_SECONDS:
        raise InvalidRequest(
            f"leaseInfo.durationInSecs must be {MIN_LEASE_SECONDS}..{MAX_LEASE_SECONDS}, "
            f"got {duration}"
        )
    for field, address in (("ipAddr", instance.ip_addr), ("hostName", instance.host_name)):
        check_address(field, address, addresses)
    body: dict[str, Any] = {
        "version": instance.metadata.get(VERSION_KEY, DEFAULT_VERSION),
        "host": instance.ip_addr if parse_ip(instance.ip_addr) else instance.host_name,
        "port": instance.port.number,
        "metadata": instance.metadata,
        "lease_seconds": duration,
        "status": "UP" if instance.status == "UP" else "DOWN",
    }
    zone = instance.data_center.metadata.get(AVAILABILITY_ZONE)
    if instance.data_center.name == "Amazon" and zone:
        body["zone"] = zone
    registration = parse_registration(service, registry_id(instance.instance_id), body, addresses)
    return replace(registration, eureka=record_json(instance), eureka_dirty=instance.last_dirty_ms)


def check_address(field: str, address: str, addresses: AddressPolicy) -> None:
    """Both addresses pass the checks the gateway's host passes, not only the one it uses:
    Eureka's own clients connect to ``hostName`` (py-eureka-client's and Spring's default) or
    to ``ipAddr``, and neither may aim them at their own metadata service or loopback, nor
    be a string that builds a URL to elsewhere (``169.254.169.254/latest#``)."""
    if len(address) > MAX_HOST_LENGTH:
        raise InvalidRequest(f"{field} is longer than {MAX_HOST_LENGTH} characters")
    try:
        normalize_host(address, addresses)
    except BadRequest as exc:
        raise type(exc)(f"{field}: {exc.message}") from None


def record_json(instance: EurekaInstance) -> str:
    """What a Eureka client registered beyond the registry's fields; defaults left out, so
    the stored item (and each renew's write) stays small."""
    record: dict[str, Any] = {
        "id": instance.instance_id,
        "hostName": instance.host_name,
        "ipAddr": instance.ip_addr,
        "status": instance.status,
        "dirty": instance.last_dirty_ms,
    }
    secure = instance.secure_port
    if secure != Port(DEFAULT_SECURE_PORT, False):
        record["securePort"] = [secure.number, secure.enabled]
    if instance.country_id != DEFAULT_COUNTRY_ID:
        record["countryId"] = instance.country_id
    if instance.data_center.name != "MyOwn":
        record["dc"] = instance.data_center.name
    if instance.data_center.metadata:
        record["dcMetadata"] = instance.data_center.metadata
    if instance.lease.renewal_interval != DEFAULT_RENEWAL_INTERVAL:
        record["renewal"] = instance.lease.renewal_interval
    optional = {
        "homePageUrl": instance.home_page_url,
        "statusPageUrl": instance.status_page_url,
        "healthCheckUrl": instance.health_check_url,
        "secureHealthCheckUrl": instance.secure_health_check_url,
        "vipAddress": instance.vip_address,
        "secureVipAddress": instance.secure_vip_address,
    }
    record.update({key: value for key, value in optional.items() if value is not None})
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def to_eureka(
    instance: Instance,
    record_text: str | None,
    drained: bool,
    action: ActionType = "ADDED",
    removed_at: float | None = None,
) -> EurekaInstance:
    """The Eureka record of a stored instance; ``removed_at`` for one that left."""
    record: dict[str, Any] = json.loads(record_text) if record_text else {}
    registered_ms = _millis(instance.registered_at)
    metadata = dict(instance.metadata)
    metadata.setdefault(VERSION_KEY, instance.version)
    secure = record.get("securePort", [DEFAULT_SECURE_PORT, False])
    return EurekaInstance(
        instance_id=record.get("id", instance.instance_id),
        app=app_of(instance.service),
        host_name=record.get("hostName", instance.host),
        ip_addr=record.get("ipAddr", instance.host),
        port=Port(instance.port, True),
        status=_status(instance, record.get("status"), drained),
        overridden_status="OUT_OF_SERVICE" if drained else "UNKNOWN",
        secure_port=Port(int(secure[0]), bool(secure[1])),
        country_id=int(record.get("countryId", DEFAULT_COUNTRY_ID)),
        data_center=DataCenter(
            cast(DataCenterName, record.get("dc", "MyOwn")), dict(record.get("dcMetadata", {}))
        ),
        lease=LeaseInfo(
            renewal_interval=int(record.get("renewal", DEFAULT_RENEWAL_INTERVAL)),
            duration=instance.lease_seconds,
            registration_ms=registered_ms,
            last_renewal_ms=_millis(instance.updated_at),
            eviction_ms=0 if removed_at is None else _millis(removed_at),
            service_up_ms=registered_ms,
        ),
        metadata=metadata,
        home_page_url=record.get("homePageUrl"),
        status_page_url=record.get("statusPageUrl"),
        health_check_url=record.get("healthCheckUrl"),
        secure_health_check_url=record.get("secureHealthCheckUrl"),
        vip_address=record.get("vipAddress", instance.service),
        secure_vip_address=record.get("secureVipAddress", instance.service),
        last_updated_ms=registered_ms,
        last_dirty_ms=int(record.get("dirty", registered_ms)),
        action_type=action,
    )


def _status(instance: Instance, reported: str | None, drained: bool) -> EurekaStatus:
    if drained:
        return "OUT_OF_SERVICE"
    if instance.status == "UP":
        return "UP"
    if instance.status == "DOWN" and reported in ("DOWN", "STARTING", "OUT_OF_SERVICE", "UNKNOWN"):
        return cast(EurekaStatus, reported)
    return "DOWN"


def _millis(seconds: float) -> int:
    return int(seconds * 1000)
