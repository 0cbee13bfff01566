"""Full-jitter exponential backoff.

Many tasks lose the registry at the same moment (a deploy, a throttle, a network blip); drawing
each wait uniformly from zero to the exponential ceiling spreads their retries out instead of
letting them hit the registry again in lockstep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# 2**32 times any sensible base is far past any cap; bounding the exponent keeps the float finite.
_MAX_EXPONENT = 32


class RandomSource(Protocol):
    """The one method of ``random.Random`` the sidecar draws from, so tests can pin draws."""

    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True)
class Backoff:
    base: float = 0.5
    cap: float = 30.0

    def ceiling(self, attempt: int) -> float:
        """Longest wait allowed after ``attempt`` consecutive failures (0 for the first)."""
        return min(self.cap, self.base * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT))

    def delay(self, attempt: int, rng: RandomSource) -> float:
        return rng.uniform(0.0, self.ceiling(attempt))
