"""Backoff: exponential growth by ``factor``, a hard ``cap``, and jitter of exactly ±``jitter``."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest

import pgq
from pgq.retry import (
    BACKOFF_BASE_DEFAULT,
    BACKOFF_CAP_DEFAULT,
    BACKOFF_FACTOR_DEFAULT,
    BACKOFF_JITTER_DEFAULT,
    DEFAULT_BACKOFF,
    Backoff,
)


def test_defaults_are_the_named_constants() -> None:
    named = Backoff(
        BACKOFF_BASE_DEFAULT, BACKOFF_FACTOR_DEFAULT, BACKOFF_CAP_DEFAULT, BACKOFF_JITTER_DEFAULT
    )
    assert named == DEFAULT_BACKOFF
    assert pgq.Backoff is Backoff


def test_without_jitter_the_delay_is_base_times_factor_to_the_attempt() -> None:
    backoff = Backoff(base=2.0, factor=3.0, cap=10_000.0, jitter=0.0)
    for attempt in range(1, 8):
        expected = 2.0 * 3.0 ** (attempt - 1)
        assert backoff.bounds(attempt) == (expected, expected)
        assert backoff.delay(attempt) == expected


def test_bounds_grow_by_factor_until_the_cap() -> None:
    backoff = Backoff(base=1.0, factor=2.0, cap=100.0, jitter=0.25)
    lows = [backoff.bounds(attempt)[0] for attempt in range(1, 8)]  # 1, 2, 4 … 64
    assert all(b == pytest.approx(a * 2) for a, b in itertools.pairwise(lows))
    assert backoff.bounds(8)[0] == pytest.approx(75.0)  # 128 capped to 100, then -25 %
    assert backoff.bounds(9) == backoff.bounds(8)


@pytest.mark.parametrize("jitter", [0.0, 0.1, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("attempt", [1, 2, 5])
def test_jitter_range_is_exactly_one_plus_or_minus_jitter_below_the_cap(
    jitter: float, attempt: int
) -> None:
    backoff = Backoff(base=3.0, factor=2.0, cap=1e6, jitter=jitter)
    centre = 3.0 * 2.0 ** (attempt - 1)
    low, high = backoff.bounds(attempt)
    assert low == pytest.approx(centre * (1 - jitter))
    assert high == pytest.approx(centre * (1 + jitter))


def test_delays_spread_over_the_whole_jitter_range_and_stay_inside_it() -> None:
    backoff = Backoff(base=10.0, factor=2.0, cap=1e6, jitter=0.25)
    rng = random.Random(7)
    delays = [backoff.delay(1, rng) for _ in range(2000)]
    assert min(delays) >= 7.5 and max(delays) <= 12.5
    # Spread over the range, not clustered: both outer tenths are reached.
    assert min(delays) < 8.0 and max(delays) > 12.0


@pytest.mark.parametrize("attempt", [1, 5, 12, 13, 50, 1000, 10**9])
def test_a_delay_never_exceeds_the_cap(attempt: int) -> None:
    backoff = Backoff(base=1.0, factor=2.0, cap=3600.0, jitter=0.5)
    rng = random.Random(attempt)
    low, high = backoff.bounds(attempt)
    assert 0 <= low <= high <= 3600.0
    assert all(backoff.delay(attempt, rng) <= 3600.0 for _ in range(200))


@pytest.mark.parametrize("factor", [2.0, 10.0, 1e10, 2])
def test_attempt_1000_does_not_overflow(factor: float) -> None:
    backoff = Backoff(base=1.0, factor=factor, cap=3600.0, jitter=0.25)
    low, high = backoff.bounds(1000)
    assert (low, high) == (2700.0, 3600.0)
    assert math.isfinite(backoff.delay(1000))


def test_a_slow_factor_still_reaches_its_cap() -> None:
    # 1.05 ** 999 is about 1.5e21: a slow growth must still end at the cap, not stall.
    assert Backoff(base=1.0, factor=1.05, cap=3600.0, jitter=0.0).bounds(1000) == (3600.0, 3600.0)


def test_attempt_zero_or_negative_counts_as_the_first() -> None:
    assert DEFAULT_BACKOFF.bounds(0) == DEFAULT_BACKOFF.bounds(1) == DEFAULT_BACKOFF.bounds(-3)


def test_zero_base_means_no_wait() -> None:
    assert Backoff(base=0.0).bounds(1000) == (0.0, 0.0)


def test_factor_one_is_a_constant_delay() -> None:
    backoff = Backoff(base=5.0, factor=1.0, jitter=0.0)
    assert {backoff.delay(attempt) for attempt in (1, 10, 1000)} == {5.0}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base": -1.0}, "base"),
        ({"base": math.nan}, "base"),
        ({"base": math.inf}, "base"),
        ({"factor": 0.5}, "factor"),
        ({"factor": math.nan}, "factor"),
        ({"cap": -1.0}, "cap"),
        ({"cap": math.inf}, "cap"),
        ({"cap": 10**400}, "cap"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": 1.01}, "jitter"),
        ({"jitter": math.nan}, "jitter"),
        ({"base": "1"}, "base"),
        ({"factor": True}, "factor"),
        ({"cap": None}, "cap"),
    ],
)
def test_invalid_parameters_raise_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(pgq.OptionError, match=f"Backoff {field} must be"):
        Backoff(**kwargs)


def test_backoff_is_immutable() -> None:
    with pytest.raises(AttributeError):
        DEFAULT_BACKOFF.cap = 1.0  # type: ignore[misc]
