"""Backoff policy: how long a failed job waits before its next attempt. Pure functions.

The delay grows exponentially with the attempt number, is capped, and is spread by jitter
so that jobs which failed together (a dependency went down) do not retry in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

BACKOFF_BASE_DEFAULT = 1.0  # seconds before the 2nd attempt, before jitter
BACKOFF_FACTOR_DEFAULT = 2.0
BACKOFF_CAP_DEFAULT = 3600.0  # never wait more than an hour between attempts
BACKOFF_JITTER_DEFAULT = 0.25  # ± 25 %


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: ``min(cap, base * factor**(attempt-1)) * (1 ± jitter)``."""

    base: float = BACKOFF_BASE_DEFAULT
    factor: float = BACKOFF_FACTOR_DEFAULT
    cap: float = BACKOFF_CAP_DEFAULT
    jitter: float = BACKOFF_JITTER_DEFAULT

    def __post_init__(self) -> None:
        if self.base < 0 or self.factor < 1 or self.cap < 0 or not 0 <= self.jitter <= 1:
            raise ValueError("backoff needs base >= 0, factor >= 1, cap >= 0, 0 <= jitter <= 1")

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The smallest and largest delay after failed attempt number ``attempt`` (1-based)."""
        exponent = max(attempt, 1) - 1
        # Cap the exponent before the power so attempt 1000 cannot overflow a float.
        raw = self.base * self.factor ** min(exponent, 64)
        centre = min(self.cap, raw)
        return centre * (1 - self.jitter), min(self.cap, centre * (1 + self.jitter))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """A delay in seconds for failed attempt ``attempt``, drawn within :meth:`bounds`."""
        low, high = self.bounds(attempt)
        return (rng or random).uniform(low, high)


DEFAULT_BACKOFF = Backoff()
