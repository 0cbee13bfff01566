"""What Eureka clients write: register, renew, cancel, the OUT_OF_SERVICE override and
metadata, each as the registry's own operation, authorized exactly as it is there.

* register: the record mapped (``mapping``) and stored like any registration; answered 204.
* renew: the lease only (one conditional write); 404 when the instance is unknown or its
  lease lapsed, or when the client holds newer data than stored (its lastDirtyTimestamp),
  so that it registers again.
* cancel: the instance removed; 404 when unknown.
* the OUT_OF_SERVICE override is the operator's drain (an admin token): the client's renews
  and registrations cannot undo it, as Eureka's own override rules say. Removing it lifts the
  drain. Other override values are refused: the registry has no other operator status.
* metadata: merged into the stored record and registered again (Eureka shows it ADDED);
  nothing else changes: the status the client reported, and the registry's own fields
  (weight, zone, ECS task, tls) of an instance a sidecar registered.

Who may write is checked before a body or a parameter is read, as on the registry's own API.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import replace

from chalicelib.auth import Principal, require_admin, require_write
from chalicelib.errors import InstanceNotFound, InvalidRequest, PayloadTooLarge
from chalicelib.eureka.fetches import EurekaNotFound, Fetches
from chalicelib.eureka.identity import registry_id, service_of
from chalicelib.eureka.mapping import to_registration
from chalicelib.eureka.records import EurekaInstance
from chalicelib.eureka.wire import parse_registration, rendered_size
from chalicelib.instances import Instance
from chalicelib.registry import Registry

OUT_OF_SERVICE = "OUT_OF_SERVICE"
# Eureka takes any number of metadata parameters; the registry's metadata limits apply after.
MAX_METADATA_PARAMETERS = 32
# An instance as Eureka's clients read it, in the larger of its two formats. Every full fetch
# and delta carries every service's instances in one Lambda answer (at most about 4.4 MB,
# config.MAX_BODY_LIMIT), so one service's records must not crowd out everyone's: at the
# default cap of 100 instances a service takes at most 800 KB. Real clients' records take
# 1-4 KB.
MAX_RENDERED_INSTANCE = 8 * 1024


class Leases:
    def __init__(self, registry: Registry, fetches: Fetches) -> None:
        self._registry = registry
        self._fetches = fetches

    def register(
        self,
        principal: Principal,
        app: str,
        body: bytes,
        content_type: str | None,
    ) -> None:
        service = service_of(app)
        # As on the registry's own API: a caller that may not write learns nothing from the
        # answer about what its body got wrong, nor how large a body may be.
        require_write(principal, service)
        now_ms = int(self._registry.now() * 1000)
        instance = parse_registration(body, content_type, app, now_ms)
        self._store(principal, service, instance)

    def _store(
        self,
        principal: Principal,
        service: str,
        instance: EurekaInstance,
        kept: Instance | None = None,
    ) -> None:
        """``kept``: the stored instance whose registry-only fields (weight, zone, status,
        task, tls) a metadata update leaves as they are."""
        registration = to_registration(instance, service, self._registry.addresses)
        size = rendered_size(instance)
        if size > MAX_RENDERED_INSTANCE:
            raise PayloadTooLarge(
                f"the instance is {size} bytes as Eureka's clients read it; the limit is "
                f"{MAX_RENDERED_INSTANCE}: shorten its URLs, VIP addresses or metadata"
            )
        if kept is not None:
            registration = replace(
                registration,
                weight=kept.weight,
                zone=kept.zone,
                status=kept.status,
                task_arn=kept.task_arn,
                tls=kept.tls,
            )
        self._registry.register_checked(principal, registration)

    def renew(self, principal: Principal, app: str, eureka_id: str, last_dirty: str | None) -> None:
        dirty = None if last_dirty is None else _timestamp("lastDirtyTimestamp", last_dirty)
        self._registry.renew(principal, service_of(app), registry_id(eureka_id), dirty)

    def cancel(self, principal: Principal, app: str, eureka_id: str) -> None:
        if not self._registry.deregister(principal, service_of(app), registry_id(eureka_id)):
            raise EurekaNotFound(f"instance {eureka_id[:80]!r} of app {app!r} is not registered")

    def override(self, principal: Principal, app: str, eureka_id: str, value: str | None) -> None:
        """``PUT .../status?value=OUT_OF_SERVICE``: the operator's drain."""
        require_admin(principal, "overriding an instance's status")
        if value != OUT_OF_SERVICE:
            raise InvalidRequest(
                f"status override {str(value)[:40]!r} is not supported: lambdamesh overrides "
                f"with {OUT_OF_SERVICE} only (the operator's drain); remove the override to "
                "return the instance to the status it reports"
            )
        self._registry.drain(principal, service_of(app), registry_id(eureka_id))

    def remove_override(self, principal: Principal, app: str, eureka_id: str) -> None:
        """``DELETE .../status``: the drain lifted, if there was one; 404 for an unknown
        instance, as Eureka answers."""
        require_admin(principal, "removing a status override")
        self._fetches.instance(app, eureka_id)
        with suppress(InstanceNotFound):  # not drained: nothing to lift
            self._registry.undrain(principal, service_of(app), registry_id(eureka_id))

    def update_metadata(
        self, principal: Principal, app: str, eureka_id: str, values: Mapping[str, str]
    ) -> None:
        service = service_of(app)
        require_write(principal, service)
        if len(values) > MAX_METADATA_PARAMETERS:
            raise InvalidRequest(
                f"at most {MAX_METADATA_PARAMETERS} metadata parameters, got {len(values)}"
            )
        stored, current = self._fetches.as_reported(app, eureka_id)
        merged = replace(current, metadata={**current.metadata, **values})
        self._store(principal, service, merged, kept=stored)


def _timestamp(name: str, raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise InvalidRequest(f"{name} must be milliseconds since the epoch, got {raw[:40]!r}")
    return int(raw)
