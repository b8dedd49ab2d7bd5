"""Backoff policy: how long a failed job waits before its next attempt. Pure functions.

The delay grows exponentially with the attempt number, is capped, and is spread by jitter
so that jobs which failed together (a dependency went down) do not retry in lockstep.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from pgq.errors import OptionError

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
        _check_number("base", self.base, low=0.0)
        _check_number("factor", self.factor, low=1.0)
        _check_number("cap", self.cap, low=0.0)
        _check_number("jitter", self.jitter, low=0.0, high=1.0)

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The smallest and largest delay after failed attempt number ``attempt`` (1-based).

        Below the cap the range is exactly ``centre * (1 ± jitter)``; the upper end is then
        clipped to ``cap``, so no delay ever exceeds it.
        """
        centre = min(self.cap, self._raw(max(attempt, 1) - 1))
        return centre * (1 - self.jitter), min(self.cap, centre * (1 + self.jitter))

    def _raw(self, exponent: int) -> float:
        if self.base == 0:
            return 0.0
        try:
            return float(self.base) * float(self.factor) ** exponent
        except OverflowError:
            # attempt 1000 with factor 2 is past any float; the cap applies anyway. (Capping
            # the exponent instead would stop a slow factor such as 1.05 short of its cap.)
            return math.inf

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed ``attempt``, within [`bounds`][pgq.Backoff.bounds]."""
        low, high = self.bounds(attempt)
        return (rng or random).uniform(low, high)


def _check_number(name: str, value: object, low: float, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OptionError(f"Backoff {name} must be a number, not {value!r}")
    # NaN compares false with everything, so the range check alone would let it through.
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for any float
        finite = False
    if not finite or not low <= value <= high:
        raise OptionError(
            f"Backoff {name} must be a finite number in [{low:g}, {high:g}], not {value!r}"
        )


DEFAULT_BACKOFF = Backoff()
