"""Scenario: a rate limit's accuracy with eight workers (see limits.py); about a minute."""

from __future__ import annotations

from collections.abc import Iterator

from benchmarks.harness import Context, Result
from benchmarks.scenarios.limits import rate_accuracy

NAME = "limits_rate"


def run(ctx: Context) -> Iterator[Result]:
    yield rate_accuracy(ctx)
