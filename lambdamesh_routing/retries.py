"""When a failed attempt may be tried again on another instance, and how long to wait first.

* A connection that failed before anything was sent is always tried elsewhere: the upstream
  saw nothing, whatever the method.
* After sending, only idempotent methods (RFC 9110: GET, HEAD, OPTIONS, PUT, DELETE, TRACE)
  are retried, on a reset or a 502, 503 or 504 answer: a POST or PATCH may have been carried
  out already.
* A retry budget bounds what retries add: each request lets ``budget_percent`` / 100 of a retry
  through, banked up to ``BURST`` retries, so a failing service sees at most that share of
  extra load (plus the burst) rather than ``max_attempts`` times its traffic.
* Backoff is "full jitter": a random wait up to ``base * 2 ** retry``, at most ``max``.

Standard library only (shared with the sidecar); per-process state.
"""

from __future__ import annotations

import random
import threading
from collections import defaultdict

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRYABLE_STATUSES = frozenset({502, 503, 504})
# Retries a quiet service may bank, so the first failures after a calm spell are retried.
BURST = 10.0
# What a service starts with: a few retries before any request has paid in.
INITIAL_TOKENS = 3.0


def may_retry_after_sending(method: str) -> bool:
    return method.upper() in IDEMPOTENT


class RetryBudget:
    def __init__(self) -> None:
        self._tokens: defaultdict[str, float] = defaultdict(lambda: INITIAL_TOKENS)
        self._lock = threading.Lock()

    def deposit(self, service: str, budget_percent: float) -> None:
        """A request arrived: it pays for a share of a retry."""
        with self._lock:
            self._tokens[service] = min(BURST, self._tokens[service] + budget_percent / 100)

    def withdraw(self, service: str) -> bool:
        """True, and one retry spent, if the budget allows one now."""
        with self._lock:
            if self._tokens[service] < 1.0:
                return False
            self._tokens[service] -= 1.0
            return True


def backoff_seconds(retry: int, base_ms: int, max_ms: int, rng: random.Random) -> float:
    """Before the ``retry``-th retry (1 for the first): full jitter."""
    ceiling = min(max_ms, base_ms * 2 ** (retry - 1))
    return rng.uniform(0, ceiling) / 1000
