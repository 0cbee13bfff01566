"""One request's route, decided the same way by the gateway and the sidecar's outbound port.

``Router.plan`` turns a service's view (its instances and policy) and the request's facts
into a ``Plan``: the version (an alias resolved), the instances it may go to (ejected ones
left out, all of them in panic mode), and the order it tries them in. The caller does the
I/O and reports each try's end (``connect_failed``, ``not_allowed``, ``reset``, ``timed_out``,
``answered``); the plan ejects what failed and decides whether another instance may be tried:

* a connection that failed before anything was sent, or an address the settings refuse:
  always, whatever the method;
* after sending, a reset or a 502/503/504 answer: only for idempotent methods whose body can
  be sent again, and only while the retry budget allows, after a full-jitter backoff;
* never beyond ``max_attempts`` instances or past the deadline.

Standard library only; the state (rotations, ejections, budget, requests in flight) is the
process's own.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from lambdamesh_routing.balancing import Strategies
from lambdamesh_routing.errors import (
    NoLiveInstance,
    ServiceNotFound,
    UpstreamNotAllowed,
    VersionNotFound,
)
from lambdamesh_routing.instances import Instance, ServiceView
from lambdamesh_routing.outliers import Outliers
from lambdamesh_routing.policy import DEFAULT_POLICY, HashOn, Policy
from lambdamesh_routing.retries import (
    RETRYABLE_STATUSES,
    RetryBudget,
    backoff_seconds,
    may_retry_after_sending,
)
from lambdamesh_routing.versions import VersionChooser

Clock = Callable[[], float]
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_EJECT_SECONDS = 5.0


def no_such_service(service: str) -> ServiceNotFound:
    """The answer for a name nothing is registered under, and, word for word, for one the
    public gateway does not serve: an outsider cannot tell the two apart."""
    return ServiceNotFound(f"no service named {service!r} is registered")


def no_such_version(service: str, version: str) -> VersionNotFound:
    return VersionNotFound(f"service {service!r} has no version {version!r}")


def addresses_refused(service: str, version: str, proxy: str) -> UpstreamNotAllowed:
    """The answer when the address settings of ``proxy`` (the gateway, an outbound port)
    refused the instances tried (``Plan.not_allowed``): the deployment's fault, which the
    caller can tell from an instance that failed."""
    return UpstreamNotAllowed(
        f"no instance of {service} {version} has an address {proxy} may reach: "
        "its address settings refuse them"
    )


def routable(
    service: str, version: str, instances: Sequence[Instance], now: float
) -> list[Instance]:
    """The instances a request may go to, or the reason there are none."""
    if not instances:
        raise no_such_service(service)
    of_version = [i for i in instances if i.version == version]
    if not of_version:
        raise no_such_version(service, version)
    live = [i for i in of_version if i.is_routable(now)]
    if not live:
        running = [i for i in of_version if i.is_live(now)]
        drained = sum(1 for i in running if i.drained)
        down = sum(1 for i in running if i.status == "DOWN" and not i.drained)
        draining = len(running) - drained - down
        raise NoLiveInstance(
            f"no live instance of {service!r} version {version!r}: {down} reported DOWN, "
            f"{draining} draining, {drained} drained by an operator, "
            f"{len(of_version) - len(running)} with lapsed leases"
        )
    return live


class Call(NamedTuple):
    """What routing reads of a request (a named tuple: made for every request)."""

    service: str
    version: str  # as asked: a version or an alias
    method: str
    headers: Mapping[str, str]
    client_ip: str | None = None
    # False when the body cannot be sent a second time (streamed, not kept): then nothing is
    # retried once sent.
    replayable: bool = True


class Router:
    """The routing state of one process, shared by all its requests."""

    def __init__(
        self,
        strategies: Strategies | None = None,
        versions: VersionChooser | None = None,
        outliers: Outliers | None = None,
        retry_budget: RetryBudget | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        eject_seconds: float = DEFAULT_EJECT_SECONDS,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.strategies = strategies or Strategies()
        self.versions = versions or VersionChooser()
        self.outliers = outliers or Outliers(clock)
        self.retry_budget = retry_budget or RetryBudget()
        self.max_attempts = max_attempts
        self.eject_seconds = eject_seconds
        self.clock = clock
        self.wall_clock = wall_clock
        self.sleep = sleep
        self.rng = rng or random.Random()  # jitter only: no secrets drawn

    def plan(
        self, call: Call, view: ServiceView, budget: float, version: str | None = None
    ) -> Plan:
        """The route of ``call``, to end within ``budget`` seconds (less if the policy says
        so); raises ``ServiceNotFound``, ``VersionNotFound`` or ``NoLiveInstance``.
        ``version`` is the one ``resolve`` chose, when the caller needed it first."""
        policy = view.policy or DEFAULT_POLICY
        total = policy.timeouts.total_seconds
        deadline = self.clock() + (budget if total is None else min(budget, total))
        if version is None:
            version = self.resolve(call, policy)
        try:
            live = routable(call.service, version, view.instances, self.wall_clock())
        except VersionNotFound as exc:
            if version == call.version:
                raise
            raise VersionNotFound(f"{exc.message} (alias {call.version!r})") from None
        selection = self.outliers.select(live, policy.panic_threshold_percent)
        self.retry_budget.deposit(call.service, policy.retries.budget_percent)
        return Plan(
            self, call, policy, version, live, selection.instances, deadline, selection.panic
        )

    def resolve(self, call: Call, policy: Policy) -> str:
        """The version ``call`` goes to: as asked, or what its alias picks."""
        return self.versions.resolve(call.version, policy, call.headers)


class Plan:
    """One request's tries: iterate it for the next instance; report how each try ended."""

    def __init__(
        self,
        router: Router,
        call: Call,
        policy: Policy,
        version: str,
        live: list[Instance],
        offered: list[Instance],
        deadline: float,
        panic: bool,
    ) -> None:
        self.call = call
        self.policy = policy
        self.version = version
        self.live = live
        self.offered = offered
        self.deadline = deadline
        self.panic = panic
        self.retries = 0  # instances tried beyond the first
        self.ejections = 0
        self.sent = True  # whether the last try reached its instance
        self._router = router
        self._balancer = router.strategies.named(policy.strategy)
        self._key = hash_key(policy.hash_on, call)
        self._pool = f"{call.service}/{version}"
        self._tried: set[str] = set()
        self._retryable = True
        self._backoffs = 0
        self._attempts = policy.retries.max_attempts or router.max_attempts

    def __iter__(self) -> Plan:
        return self

    def __next__(self) -> Instance:
        instance = self._next()
        if instance is None or self._router.clock() >= self.deadline:
            raise StopIteration
        self._tried.add(instance.instance_id)
        self.retries = len(self._tried) - 1
        self._retryable = False  # until a report says otherwise
        return instance

    def _next(self) -> Instance | None:
        if not self._tried:
            return self._choose()
        if not self._retryable or len(self._tried) >= self._attempts:
            return None
        instance = self._choose()
        if instance is None:
            return None
        if self.sent:
            # Another try after sending adds load: the budget decides, and it waits first.
            if not self._router.retry_budget.withdraw(self.call.service):
                return None
            self._backoffs += 1
            self._pause()
        return instance

    def _choose(self) -> Instance | None:
        return self._balancer.choose(self._pool, self.offered, exclude=self._tried, key=self._key)

    def _pause(self) -> None:
        retries = self.policy.retries
        wait = backoff_seconds(
            self._backoffs, retries.backoff_base_ms, retries.backoff_max_ms, self._router.rng
        )
        self._router.sleep(max(0.0, min(wait, self.deadline - self._router.clock())))

    def try_deadline(self) -> float:
        """When the try about to start must end: the policy's per-try timeout, within the
        request's deadline."""
        per_try = self.policy.timeouts.per_try_seconds
        if per_try is None:
            return self.deadline
        return min(self.deadline, self._router.clock() + per_try)

    @property
    def late(self) -> bool:
        return self._router.clock() >= self.deadline

    def started(self, instance: Instance) -> None:
        self._router.strategies.in_flight.started(instance)

    def finished(self, instance: Instance) -> None:
        self._router.strategies.in_flight.finished(instance)

    def connect_failed(self, instance: Instance) -> None:
        """Nothing was sent (refused, unresolvable): eject for a while, try another instance
        whatever the method."""
        self._router.outliers.eject_for(instance, self._router.eject_seconds)
        self.ejections += 1
        self.sent, self._retryable = False, True

    def not_allowed(self, instance: Instance) -> None:
        """Nothing was sent: the address settings refuse the instance's address. That is the
        deployment's fault, not the instance's: another instance may be tried, and nothing
        is ejected, so refusals neither count as failures nor bring on panic mode."""
        self.sent, self._retryable = False, True

    def reset(self, instance: Instance) -> float:
        """Sent, then the connection broke without an answer. Returns the seconds the
        instance is now ejected for (0 if it is not)."""
        self.sent, self._retryable = True, self._may_retry_after_sending()
        return self._failed(instance)

    def timed_out(self, instance: Instance) -> float:
        """No answer in time: not retried (the deadline is spent or the upstream is slow)."""
        self.sent, self._retryable = True, False
        return self._failed(instance)

    def answered(self, instance: Instance, status: int) -> float:
        """An answer arrived. Returns the seconds the instance is now ejected for."""
        self.sent = True
        self._retryable = status in RETRYABLE_STATUSES and self._may_retry_after_sending()
        if self.policy.outlier_detection.counts(status):
            return self._failed(instance)
        self._router.outliers.succeeded(instance, self.policy.outlier_detection)
        return 0.0

    def gave_up(self) -> None:
        """The try ended in a way that rules out another (the answer was too large, say)."""
        self.sent, self._retryable = True, False

    @property
    def retryable(self) -> bool:
        """Whether the last try's end allows another instance (before the attempt limit,
        the budget and the deadline have their say)."""
        return self._retryable

    def _may_retry_after_sending(self) -> bool:
        return self.call.replayable and may_retry_after_sending(self.call.method)

    def _failed(self, instance: Instance) -> float:
        rules = self.policy.outlier_detection
        seconds = self._router.outliers.failed(instance, rules, self.live)
        if seconds:
            self.ejections += 1
        return seconds


def hash_key(hash_on: HashOn | None, call: Call) -> str | None:
    """The request's consistent-hashing key, or None when it does not carry one."""
    if hash_on is None:
        return None
    if hash_on.client_ip:
        return call.client_ip
    headers = {name.lower(): value for name, value in call.headers.items()}
    if hash_on.header is not None:
        return headers.get(hash_on.header)
    return cookie_value(headers.get("cookie", ""), hash_on.cookie or "")


def cookie_value(header: str, name: str) -> str | None:
    """The first cookie called ``name`` in a ``Cookie`` header, read leniently: one cookie a
    strict parser would refuse must not hide the others."""
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key.strip() == name:
            return value.strip().strip('"')
    return None
