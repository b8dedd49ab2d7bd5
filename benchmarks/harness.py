"""The pieces every scenario shares: results, their JSON line, percentiles, the summary.

Nothing here touches the database, so tests/unit/test_bench_harness.py checks it all.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

# Rounding of the JSON line: enough digits to compare runs, few enough to read.
SECONDS_DIGITS = 4
RATE_DIGITS = 1
EXTRA_DIGITS = 3


@dataclass
class Result:
    """One measured figure: ``n`` items in ``seconds``, plus scenario-specific fields.

    ``target`` says in words what the issue asks of this figure and ``met`` whether this run
    reached it (None when the figure has no target of its own).
    """

    scenario: str
    variant: str
    n: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
    target: str | None = None
    met: bool | None = None

    @property
    def per_s(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        line: dict[str, Any] = {
            "scenario": self.scenario,
            "variant": self.variant,
            "n": self.n,
            "seconds": round(self.seconds, SECONDS_DIGITS),
            "per_s": round(self.per_s, RATE_DIGITS),
        }
        line.update({key: _rounded(value) for key, value in self.extra.items()})
        if self.target is not None:
            line["target"] = self.target
            line["met"] = self.met
        return line

    def json_line(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)


def error_line(scenario: str, message: str) -> str:
    """The JSON line of a scenario that could not be measured."""
    return json.dumps({"scenario": scenario, "variant": "error", "error": message})


class Skipped(Exception):
    """A scenario that cannot run on this machine (a binary it needs is missing); the
    message says why. Not a failure: the run's exit code stays 0."""


def skipped_line(scenario: str, reason: str) -> str:
    """The JSON line of a scenario skipped on this machine, with the reason."""
    return json.dumps({"scenario": scenario, "variant": "skipped", "reason": reason})


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, EXTRA_DIGITS) if math.isfinite(value) else None
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0 to 100) of ``values``, interpolating linearly between ranks.

    The same definition as numpy's default, so figures can be checked with numpy.
    Raises ValueError for an empty sequence or ``q`` outside [0, 100].
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not between 0 and 100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_fields(millis: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max (and mean) of latencies in milliseconds."""
    return {
        "p50_ms": percentile(millis, 50),
        "p95_ms": percentile(millis, 95),
        "p99_ms": percentile(millis, 99),
        "max_ms": max(millis),
        "mean_ms": sum(millis) / len(millis),
    }


def ratio(value: float, reference: float) -> float:
    """``value / reference``; 0 when the reference is 0 (nothing measured)."""
    return value / reference if reference > 0 else 0.0


# --- the summary table ----------------------------------------------------------------------

SUMMARY_KEYS = (
    "ratio",
    "server_floor_ratio",
    "p50_ms",
    "p99_ms",
    "claim_p50_ms",
    "finish_p50_ms",
    "p50_vs_direct",
    "p50_vs_hand_loop",
    "speedup",
    "rss_10k_mb",
    "rss_100k_mb",
)
ERROR_CHARS = 70  # of an error message in the table (the JSON line has all of it)


def summary_rows(lines: Iterable[dict[str, Any]]) -> list[list[str]]:
    """The human summary of result lines: one row per line, the figures that matter."""
    rows = [["scenario", "variant", "n", "seconds", "per_s", "notes", "target"]]
    for line in lines:
        if line.get("variant") == "error":
            rows.append([line["scenario"], "ERROR", "", "", "", line["error"][:ERROR_CHARS], ""])
            continue
        if line.get("variant") == "skipped":
            rows.append([line["scenario"], "skipped", "", "", "", line["reason"][:ERROR_CHARS], ""])
            continue
        notes = " ".join(f"{k}={_short(line[k])}" for k in SUMMARY_KEYS if k in line)
        if "error" in line:
            notes = f"ERROR: {line['error'][:ERROR_CHARS]}"
        verdict = ""
        if "target" in line:
            verdict = ("met " if line["met"] else "MISSED ") + line["target"]
        rows.append(
            [
                line["scenario"],
                line["variant"],
                str(line["n"]),
                f"{line['seconds']:.3f}",
                f"{line['per_s']:,.0f}",
                notes,
                verdict,
            ]
        )
    return rows


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# --- progress -------------------------------------------------------------------------------


class Progress:
    """Progress messages on stderr, each with the seconds since the run started."""

    def __init__(self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self._stream = stream
        self._clock = clock
        self._start = clock()

    def __call__(self, message: str) -> None:
        stream = self._stream or sys.stderr
        print(f"[{self._clock() - self._start:7.1f}s] {message}", file=stream, flush=True)


# --- what a scenario is given ---------------------------------------------------------------


@dataclass
class Context:
    """What every scenario gets: the server to make databases on, the size, progress."""

    server: Any  # pgq.devdb.Server; Any keeps this module free of database imports
    quick: bool = False
    log: Callable[[str], None] = field(default_factory=Progress)

    def size(self, full: int, quick: int) -> int:
        """``full`` for a real run, ``quick`` for ``--quick`` (a smoke run)."""
        return quick if self.quick else full

    def seconds(self, full: float, quick: float) -> float:
        return quick if self.quick else full
