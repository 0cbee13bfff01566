"""A service's routing policy as plain data: version aliases and their splits, the balancing
strategy, timeouts, retries, outlier ejection, panic mode and redirect rewriting; and what its
sidecars' inbound ports hold callers to: the mutual TLS mode and the intentions (which callers
may call it, decided by ``lambdamesh_routing.intentions``).

Standard library only, like every routing decision, so the gateway and the sidecar read a
policy alike. ``validation.parse_policy`` checks a document before it is stored; ``from_json``
here trusts what it is given (the registry stored it validated). A service with no policy
gets ``DEFAULT_POLICY``: weighted round robin and the gateway's own settings, as before
policies existed. The parts are named tuples: immutable values, as frozen dataclasses would
be, whose classes a cold start creates several times faster.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

STRATEGIES = ("weighted_round_robin", "random", "least_outstanding", "consistent_hash")
# Which answers count against an instance in outlier detection (resets and timeouts always
# do). ``gateway_errors``: 502, 503 and 504, which say the instance or what fronts it failed.
# ``all_5xx``: any 5xx, which also counts what a client provokes by its choice of path.
FAILURE_STATUSES = ("gateway_errors", "all_5xx")
GATEWAY_ERRORS = frozenset({502, 503, 504})
# What a service's inbound ports accept: "strict", callers with a mesh certificate only;
# "permissive" (Istio's migration mode), mutual TLS and plain text both.
MTLS_MODES = ("permissive", "strict")
# What an intention, or the default when none matches, does with a call.
INTENTION_ACTIONS = ("allow", "deny")


class MatchRule(NamedTuple):
    """Requests whose ``header`` (lower case) equals ``value`` go to ``version``."""

    header: str
    value: str
    version: str


class Alias(NamedTuple):
    """A name in the ``{version}`` segment that stands for a weighted split of versions;
    match rules are tried first, in order."""

    split: tuple[tuple[str, int], ...]
    match: tuple[MatchRule, ...] = ()


class HashOn(NamedTuple):
    """What consistent hashing keys on: one of a header, a cookie, or the client address."""

    header: str | None = None
    cookie: str | None = None
    client_ip: bool = False


class Timeouts(NamedTuple):
    """Seconds; None keeps the gateway's settings (LAMBDAMESH_READ_TIMEOUT and
    LAMBDAMESH_REQUEST_TIMEOUT), which also bound these."""

    per_try_seconds: float | None = None
    total_seconds: float | None = None


class Retries(NamedTuple):
    # Instances tried in all; None keeps the gateway's LAMBDAMESH_MAX_ATTEMPTS.
    max_attempts: int | None = None
    # Retries may add at most this share of the requests as extra load (per Lambda).
    budget_percent: float = 20.0
    backoff_base_ms: int = 25
    backoff_max_ms: int = 250


class OutlierDetection(NamedTuple):
    """In the spirit of Envoy's: ``consecutive_failures`` failures in a row (resets, timeouts,
    and answers ``failure_statuses`` counts) eject an instance for ``base_ejection_seconds``
    times the number of its ejections, up to ``max_ejection_seconds``; at most
    ``max_ejected_percent`` of a version at once (at least one instance, unless 0).

    By default only gateway errors count (Envoy's ``consecutive_gateway_failure``), so that a
    client cannot eject healthy instances by calling a path their app answers with a 500; and
    the cap is Envoy's default, which keeps what a client can still provoke (503s, slow
    answers) from taking much capacity away."""

    consecutive_failures: int = 5
    base_ejection_seconds: float = 30.0
    max_ejection_seconds: float = 300.0
    max_ejected_percent: int = 10
    failure_statuses: str = "gateway_errors"

    def counts(self, status: int) -> bool:
        """Whether an answer with ``status`` counts as a failure of the instance that gave
        it; one that does not counts as a success (it ends a run of failures)."""
        if self.failure_statuses == "all_5xx":
            return status >= 500
        return status in GATEWAY_ERRORS


class IntentionRule(NamedTuple):
    """Calls from ``source`` (a service's name, ``_gateway`` or ``*``, any caller), with one
    of ``methods`` (None: any) on a path under ``path_prefix`` (None: any), are given
    ``action``. ``source`` is the document's ``from``, which Python keeps as a keyword."""

    source: str
    action: str
    methods: tuple[str, ...] | None = None
    path_prefix: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The rule as written: the optional fields only when given."""
        return {
            "from": self.source,
            "action": self.action,
            **({} if self.methods is None else {"methods": list(self.methods)}),
            **({} if self.path_prefix is None else {"path_prefix": self.path_prefix}),
        }


class Intentions(NamedTuple):
    """Rules tried in order, the first that matches deciding; ``default`` decides when none
    does (None: the stage's ``LAMBDAMESH_INTENTIONS_DEFAULT``)."""

    default: str | None = None
    rules: tuple[IntentionRule, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"default": self.default, "rules": [rule.to_json() for rule in self.rules]}


class Policy(NamedTuple):
    aliases: Mapping[str, Alias] = MappingProxyType({})
    strategy: str = "weighted_round_robin"
    hash_on: HashOn | None = None
    timeouts: Timeouts = Timeouts()
    retries: Retries = Retries()
    outlier_detection: OutlierDetection = OutlierDetection()
    # Below this share of usable instances, route over every live one instead.
    panic_threshold_percent: int = 50
    rewrite_redirects: bool = False
    # None: the stage's LAMBDAMESH_MTLS_DEFAULT.
    mtls: str | None = None
    intentions: Intentions | None = None

    def to_json(self) -> dict[str, Any]:
        """The document, every field present: what GET answers and what is stored."""
        return {
            "aliases": {
                name: {
                    "split": dict(alias.split),
                    "match": [
                        {"header": r.header, "value": r.value, "version": r.version}
                        for r in alias.match
                    ],
                }
                for name, alias in sorted(self.aliases.items())
            },
            "strategy": self.strategy,
            "hash_on": None if self.hash_on is None else _hash_on_json(self.hash_on),
            "timeouts": {
                "per_try_seconds": self.timeouts.per_try_seconds,
                "total_seconds": self.timeouts.total_seconds,
            },
            "retries": self.retries._asdict(),
            "outlier_detection": self.outlier_detection._asdict(),
            "panic_threshold_percent": self.panic_threshold_percent,
            "rewrite_redirects": self.rewrite_redirects,
            "mtls": self.mtls,
            "intentions": None if self.intentions is None else self.intentions.to_json(),
        }


DEFAULT_POLICY = Policy()


def policy_answer(service: str, policy: Policy, updated_at: float) -> dict[str, Any]:
    """What the policy routes answer: the whole document, defaults filled in."""
    return {"service": service, "policy": policy.to_json(), "updated_at": round(updated_at, 3)}


def _hash_on_json(hash_on: HashOn) -> dict[str, Any]:
    if hash_on.header is not None:
        return {"header": hash_on.header}
    if hash_on.cookie is not None:
        return {"cookie": hash_on.cookie}
    return {"client_ip": True}


def from_json(doc: Mapping[str, Any]) -> Policy:
    """A policy from a validated document; absent fields take their defaults."""
    hash_on = doc.get("hash_on")
    timeouts = doc.get("timeouts") or {}
    return Policy(
        aliases={name: _alias(a) for name, a in (doc.get("aliases") or {}).items()},
        strategy=str(doc.get("strategy", DEFAULT_POLICY.strategy)),
        hash_on=None
        if not hash_on
        else HashOn(
            header=_lower(hash_on.get("header")),
            cookie=hash_on.get("cookie"),
            client_ip=bool(hash_on.get("client_ip", False)),
        ),
        timeouts=Timeouts(timeouts.get("per_try_seconds"), timeouts.get("total_seconds")),
        retries=Retries(**(doc.get("retries") or {})),
        outlier_detection=OutlierDetection(**(doc.get("outlier_detection") or {})),
        panic_threshold_percent=int(
            doc.get("panic_threshold_percent", DEFAULT_POLICY.panic_threshold_percent)
        ),
        rewrite_redirects=bool(doc.get("rewrite_redirects", DEFAULT_POLICY.rewrite_redirects)),
        mtls=doc.get("mtls"),
        intentions=_intentions(doc.get("intentions")),
    )


def _alias(doc: Mapping[str, Any]) -> Alias:
    return Alias(
        split=tuple((str(v), int(w)) for v, w in doc["split"].items()),
        match=tuple(
            MatchRule(header=str(r["header"]).lower(), value=str(r["value"]), version=r["version"])
            for r in doc.get("match") or ()
        ),
    )


def _intentions(doc: Mapping[str, Any] | None) -> Intentions | None:
    if doc is None:
        return None
    return Intentions(
        default=doc.get("default"),
        rules=tuple(
            IntentionRule(
                source=rule["from"],
                action=rule["action"],
                methods=None if rule.get("methods") is None else tuple(rule["methods"]),
                path_prefix=rule.get("path_prefix"),
            )
            for rule in doc.get("rules") or ()
        ),
    )


def _lower(name: Any) -> str | None:
    return None if name is None else str(name).lower()
