"""An instance as routing sees it, and a service's routing view: plain data.

The gateway builds these from DynamoDB; the sidecar's outbound port from the registry's
routing view (``GET /registry/services/{service}/routing``). Standard library only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal

from lambdamesh_routing.policy import Policy

# DOWN: the app failed its readiness check. DRAINING: the task is stopping; it finishes what
# it has but takes nothing new. Only UP instances are routed to.
Status = Literal["UP", "DOWN", "DRAINING"]
STATUSES: tuple[Status, ...] = ("UP", "DOWN", "DRAINING")
# An instance's fields, in its constructor's order.
_INSTANCE_FIELDS = (
    "service",
    "instance_id",
    "version",
    "host",
    "port",
    "weight",
    "zone",
    "metadata",
    "status",
    "lease_seconds",
    "expires_at",
    "registered_at",
    "updated_at",
    "drained",
    "task_arn",
    "tls",
)

if TYPE_CHECKING:
    from typing import TypedDict, Unpack

    class InstanceFields(TypedDict, total=False):
        """What ``Instance.replace`` may change: any field."""

        service: str
        instance_id: str
        version: str
        host: str
        port: int
        weight: int
        zone: str | None
        metadata: dict[str, str]
        status: Status
        lease_seconds: int
        expires_at: float
        registered_at: float
        updated_at: float
        drained: bool | None
        task_arn: str | None
        tls: bool


class _ValueType:
    """Equality, hashing and repr by field, as a frozen dataclass has them, for classes
    written out with slots (a dataclass costs every cold start its generation)."""

    __slots__ = ()

    def _by_name(self) -> dict[str, Any]:
        """Every field, in the constructor's order."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _ValueType)
        return self._by_name() == other._by_name()

    def __hash__(self) -> int:
        return hash(tuple(self._by_name().values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self._by_name().items())
        return f"{type(self).__name__}({fields})"


class Instance(_ValueType):
    """One registered instance.

    Immutable: its fields are ``Final``, which mypy holds every caller to, and ``replace``
    makes a changed copy. Its methods are written out rather than a dataclass's, which every
    cold start would pay to generate; its fields are slots rather than a named tuple's, which
    Python 3.11 reads more slowly, and a routed request reads them many times.
    """

    __slots__ = _INSTANCE_FIELDS

    def __init__(
        self,
        service: str,
        instance_id: str,
        version: str,
        host: str,
        port: int,
        weight: int,
        zone: str | None,
        metadata: dict[str, str],
        status: Status,
        lease_seconds: int,
        expires_at: float,
        registered_at: float,
        updated_at: float,
        drained: bool | None = None,
        task_arn: str | None = None,
        tls: bool = False,
    ) -> None:
        self.service: Final = service
        self.instance_id: Final = instance_id
        self.version: Final = version
        self.host: Final = host
        self.port: Final = port
        self.weight: Final = weight
        self.zone: Final = zone
        self.metadata: Final = metadata
        self.status: Final = status
        self.lease_seconds: Final = lease_seconds
        self.expires_at: Final = expires_at
        self.registered_at: Final = registered_at
        self.updated_at: Final = updated_at
        # Put out of rotation by an operator (``lambdamesh drain``): its heartbeats cannot
        # undo it. None where it was not read (the answers to a registration or a heartbeat,
        # which read nothing beyond the instance's own item).
        self.drained: Final = drained
        # The ECS task that registered it (its sidecar read it from the task metadata
        # endpoint): ECS's stop event for that task removes it. None for instances
        # registered outside ECS.
        self.task_arn: Final = task_arn
        # This port is a lambdamesh sidecar's inbound port: callers speak mutual TLS to it
        # with mesh certificates.
        self.tls: Final = tls

    def replace(self, **changes: Unpack[InstanceFields]) -> Instance:
        """A copy with ``changes``, as ``dataclasses.replace`` makes one."""
        return Instance(**{**self._by_name(), **changes})

    def _by_name(self) -> dict[str, Any]:
        """Every field, in the constructor's order: what equality, hashing, repr and
        ``replace`` read."""
        return {name: getattr(self, name) for name in _INSTANCE_FIELDS}

    def is_live(self, now: float) -> bool:
        """Liveness is decided from the stored expiry, never from whether TTL has deleted it."""
        return self.expires_at > now

    def is_routable(self, now: float) -> bool:
        return self.status == "UP" and not self.drained and self.is_live(now)

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "service": self.service,
            "instance_id": self.instance_id,
            "version": self.version,
            "host": self.host,
            "port": self.port,
            "weight": self.weight,
            "zone": self.zone,
            "metadata": dict(self.metadata),
            "status": self.status,
            **({} if self.drained is None else {"drained": self.drained}),
            "lease_seconds": self.lease_seconds,
            "expires_at": round(self.expires_at, 3),
            "expires_in": round(max(0.0, self.expires_at - now), 3),
            "live": self.is_live(now),
            "registered_at": round(self.registered_at, 3),
            "updated_at": round(self.updated_at, 3),
            **({} if self.task_arn is None else {"task_arn": self.task_arn}),
            "tls": self.tls,
        }


class ServiceView(_ValueType):
    """What the gateway reads of a service in one Query: its instances (marked when an
    operator drained them) and its policy.

    Immutable: its fields are ``Final``, which mypy holds every caller to. Its methods are
    written out rather than a dataclass's, which every cold start would pay to generate;
    ``GatewayView`` extends it, which a named tuple cannot be.
    """

    __slots__ = ("drained", "instances", "policy")

    def __init__(
        self,
        instances: tuple[Instance, ...],
        policy: Policy | None = None,
        drained: frozenset[str] = frozenset(),
    ) -> None:
        self.instances: Final = instances
        self.policy: Final = policy
        # Every drained id, departed instances' included.
        self.drained: Final = drained

    def _by_name(self) -> dict[str, Any]:
        """Every field, in the constructor's order: what equality, hashing and repr read."""
        return {"instances": self.instances, "policy": self.policy, "drained": self.drained}
