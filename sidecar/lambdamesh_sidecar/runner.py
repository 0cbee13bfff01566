"""The sidecar's life: wait for the app, register, heartbeat, deregister when told to stop.

Every pause is a wait on the stop signal, never a sleep, so SIGTERM ends any pause at once and
the process costs nothing between heartbeats. The registry being down never ends the loop: the
app keeps serving and the sidecar keeps trying, since exiting would get the whole task killed.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from lambdamesh_sidecar.backoff import Backoff, RandomSource
from lambdamesh_sidecar.client import NotRegistered, Registration, RegistryError, Rejected
from lambdamesh_sidecar.logs import LOGGER_NAME, fields
from lambdamesh_sidecar.readiness import ReadinessCheck

Clock = Callable[[], float]


class Registry(Protocol):
    def register(self, registration: Registration) -> Mapping[str, Any]: ...

    def heartbeat(self, status: str) -> None: ...

    def deregister(self, timeout: float | None = None) -> None: ...


class StopSignal(Protocol):
    """What the runner needs of ``threading.Event``; a fake one lets tests run on a fake clock."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass(frozen=True)
class Timing:
    heartbeat_seconds: float = 10.0
    lease_seconds: float = 30.0
    request_timeout: float = 5.0
    readiness_interval: float = 1.0
    # Between heartbeats, how often the app's readiness is checked: a change is sent at once,
    # so a rare heartbeat does not keep a sick app in rotation.
    status_check_seconds: float = 5.0
    readiness_log_every: float = 30.0
    unreachable_log_every: float = 60.0
    # ECS allows 30 s between SIGTERM and SIGKILL; deregistering must fit well inside that.
    shutdown_budget: float = 5.0
    heartbeat_jitter: float = 0.1
    # On stop: DRAINING for this long before deregistering.
    drain_seconds: float = 0.0


class Runner:
    def __init__(
        self,
        registry: Registry,
        registration: Registration,
        ready: ReadinessCheck,
        stop: StopSignal,
        timing: Timing | None = None,
        backoff: Backoff | None = None,
        rejected_backoff: Backoff | None = None,
        rng: RandomSource | None = None,
        clock: Clock = time.monotonic,
        logger: logging.Logger | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._registry = registry
        self._registration = registration
        self._ready = ready
        self._stop = stop
        self._timing = timing or Timing()
        self._backoff = backoff or Backoff()
        # A refusal needs a person to fix it: retry slowly so the task is not crash-looped.
        self._rejected_backoff = rejected_backoff or Backoff(base=2.0, cap=60.0)
        self._rng: RandomSource = rng or random.Random()  # jitter only: no secrets drawn
        self._clock = clock
        self._sleep = sleep
        self._log = logger or logging.getLogger(LOGGER_NAME)
        self._status = "UP"
        # The status last sent (or tried) by a registration or heartbeat: a change from it is
        # sent at once; a failed send waits for its backoff like any other.
        self._sent_status = "UP"
        self._registered_once = False
        # True once a registration may have been stored: it succeeded, or failed in a way
        # that leaves it unknown (timeout, 5xx). A refused one (4xx) stored nothing.
        self._may_be_registered = False
        self._failures = 0
        self._last_warning = -float("inf")
        self._renewed_at = 0.0

    def run(self) -> int:
        """Returns the process exit code: 0 whenever the sidecar stopped because it was asked to."""
        if not self._wait_until_ready():
            self._log.info("stopped before the app was ready; nothing to deregister")
            return 0
        if self._register_until_done():
            self._heartbeat_until_stopped()
            self._drain()
        self._deregister()
        return 0

    def _drain(self) -> None:
        """Report DRAINING, then wait while gateways and other tasks' outbound ports notice
        and requests in flight finish; the app keeps serving meanwhile. A second signal cuts
        it short."""
        seconds = self._timing.drain_seconds
        if seconds <= 0:
            return
        try:
            self._registry.heartbeat("DRAINING")
        except RegistryError as exc:
            self._log.warning(
                "could not report DRAINING; draining anyway %s",
                fields(status=exc.status, code=exc.code, message=exc.message),
            )
        self._log.info("draining %s", fields(seconds=f"{seconds:g}"))
        self._sleep(seconds)

    def _wait_until_ready(self) -> bool:
        started = self._clock()
        last_log: float | None = None
        while not self._ready():
            now = self._clock()
            if last_log is None or now - last_log >= self._timing.readiness_log_every:
                self._log.info("waiting for the app %s", fields(waited=f"{now - started:.0f}s"))
                last_log = now
            if self._stop.wait(self._timing.readiness_interval):
                return False
        self._log.info("app is ready")
        return True

    def _register_until_done(self) -> bool:
        """Registers, retrying until it works; False if stopped first."""
        while not self._stop.is_set():
            registration = replace(self._registration, status=self._status)
            self._sent_status = self._status
            try:
                stored = self._registry.register(registration)
            except RegistryError as exc:
                self._may_be_registered |= not isinstance(exc, Rejected)
                if self._stop.wait(self._failure_delay("register", exc)):
                    return False
                continue
            self._may_be_registered = True
            self._renewed()
            event = "re-registered" if self._registered_once else "registered"
            self._registered_once = True
            self._log.info(
                "%s %s", event, fields(status=self._status, expires_at=stored.get("expires_at"))
            )
            return True
        return False

    def _heartbeat_until_stopped(self) -> None:
        """A heartbeat each interval, and one at once when readiness changes (checked every
        ``status_check_seconds`` in between), unless the last one failed: then the backoff
        decides, or an app whose readiness flaps would retry at every check."""
        due = self._clock() + self._heartbeat_delay()
        while True:
            wait = min(max(0.0, due - self._clock()), self._timing.status_check_seconds)
            if self._stop.wait(wait):
                return
            status = self._current_status()
            changed = status != self._sent_status and not self._failures
            if changed or self._clock() >= due:
                due = self._clock() + self._beat(status)

    def _beat(self, status: str) -> float:
        """One heartbeat; returns how long to wait before the next one."""
        self._sent_status = status
        try:
            self._registry.heartbeat(status)
        except NotRegistered:
            self._log.warning("registry no longer knows this instance; registering again")
            if not self._register_until_done():
                return 0.0
            return self._heartbeat_delay()
        except RegistryError as exc:
            return self._failure_delay("heartbeat", exc, limit=self._time_left_in_lease())
        self._renewed()
        self._log.debug("heartbeat %s", fields(status=status))
        return self._heartbeat_delay()

    def _current_status(self) -> str:
        """UP or DOWN by the readiness check, so the gateway stops routing to a sick app."""
        status = "UP" if self._ready() else "DOWN"
        if status != self._status:
            if status == "DOWN":
                self._log.warning("app failed its readiness check; reporting DOWN")
            else:
                self._log.info("app is ready again; reporting UP")
            self._status = status
        return status

    def _heartbeat_delay(self) -> float:
        spread = self._timing.heartbeat_jitter
        return self._timing.heartbeat_seconds * self._rng.uniform(1.0 - spread, 1.0 + spread)

    def _time_left_in_lease(self) -> float:
        """Time until the last retry that can still complete before the lease lapses."""
        margin = min(self._timing.request_timeout, self._timing.lease_seconds / 4)
        return self._renewed_at + self._timing.lease_seconds - margin - self._clock()

    def _renewed(self) -> None:
        if self._failures:
            self._log.info("registry reachable again %s", fields(failed_attempts=self._failures))
        self._failures = 0
        self._renewed_at = self._clock()

    def _failure_delay(self, action: str, exc: RegistryError, limit: float | None = None) -> float:
        """Backoff before the next try, shortened to ``limit`` so a live lease is not lost."""
        policy = self._rejected_backoff if isinstance(exc, Rejected) else self._backoff
        delay = policy.delay(self._failures, self._rng)
        if limit is not None and 0.0 < limit < delay:
            delay = limit
        self._report_failure(action, exc, delay)
        self._failures += 1
        return delay

    def _report_failure(self, action: str, exc: RegistryError, delay: float) -> None:
        """Refusals at ERROR every time; outages at WARNING when they start, then once a minute."""
        detail = fields(
            action=action,
            status=exc.status,
            code=exc.code,
            message=exc.message,
            retry_in=f"{delay:.2f}s",
        )
        if isinstance(exc, Rejected):
            self._log.error("registry rejected the request; fix the settings %s", detail)
            return
        now = self._clock()
        if self._failures == 0 or now - self._last_warning >= self._timing.unreachable_log_every:
            self._last_warning = now
            self._log.warning("registry unreachable; backing off %s", detail)
        else:
            self._log.debug("registry still unreachable %s", detail)

    def _deregister(self) -> None:
        """Best effort within the shutdown budget; if it fails the lease lapses on its own."""
        if not self._may_be_registered:
            self._log.info("never registered; nothing to deregister")
            return
        timeout = min(self._timing.request_timeout, self._timing.shutdown_budget / 2)
        for attempt in (1, 2):
            try:
                self._registry.deregister(timeout=timeout)
            except RegistryError as exc:
                self._log.warning(
                    "deregister failed %s",
                    fields(attempt=attempt, status=exc.status, code=exc.code, message=exc.message),
                )
                continue
            self._log.info("deregistered")
            return
        self._log.error(
            "could not deregister; the registry drops this instance when its lease lapses %s",
            fields(lease_seconds=self._timing.lease_seconds),
        )
