"""The benchmark suite end to end, small: so it cannot rot while nobody runs `make bench`.

Runs ``python -m benchmarks --only drain --quick`` (a real ``pgq work`` subprocess draining
a fresh database), the latency scenario (``pgq work`` and the hand-written yardstick
woken by NOTIFY) and scenario 1's loops against the server the test session uses.
Nothing here is about speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.cli import ALL_SCENARIOS

from pgq import devbouncer, devdb

ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT = 120  # seconds; the run takes about ten


def run_quick(pg_server: devdb.Server, scenario: str) -> subprocess.CompletedProcess[str]:
    return run_module(pg_server, "benchmarks", "--only", scenario, "--quick")


def run_module(pg_server: devdb.Server, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m <args>`` in the checkout, against the test server."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env={**os.environ, devdb.TEST_URL_ENV: pg_server.url},
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )


def test_quick_drain_prints_its_json_lines_and_a_summary(pg_server: devdb.Server) -> None:
    done = run_quick(pg_server, "drain")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    # The hand-written yardstick loop first, then pgq's figure with its ratio to it.
    assert [(line["scenario"], line["variant"], line["n"]) for line in lines] == [
        ("drain", "hand_loop", 2000),
        ("drain", "pgq", 2000),
    ], done.stdout
    hand, line = lines
    assert line["seconds"] > 0 and hand["seconds"] > 0
    assert line["per_s"] > 0
    # per_s is rounded in the JSON; the ratio was taken before rounding.
    assert line["hand_loop_ratio"] == pytest.approx(line["per_s"] / hand["per_s"], rel=0.01)
    assert isinstance(line["met"], bool)
    assert "scenario" in done.stderr and "drain" in done.stderr.splitlines()[-1]


def test_quick_latency_times_pgq_and_its_hand_loop_yardstick(pg_server: devdb.Server) -> None:
    done = run_quick(pg_server, "latency")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(line["scenario"], line["variant"], line["n"]) for line in lines] == [
        ("latency", "hand_loop", 30),
        ("latency", "pgq", 30),
    ], done.stdout
    hand, line = lines
    assert 0 < hand["p50_ms"] <= hand["p99_ms"] and 0 < line["p50_ms"] <= line["p99_ms"]
    # The JSON rounds the ratio and both p50s to 3 decimals (half a unit each); the ratio
    # was taken before rounding, so it may differ from the rounded p50s' ratio by that much.
    mine, theirs, half = line["p50_ms"], hand["p50_ms"], 0.0005
    rounding = half + half * (1 / theirs + mine / theirs**2)
    assert line["p50_vs_hand_loop"] == pytest.approx(mine / theirs, abs=rounding)
    assert "target" not in hand and isinstance(line["met"], bool)


def test_quick_wait_times_both_ways_a_waiter_hears_of_the_finish(
    pg_server: devdb.Server,
) -> None:
    done = run_quick(pg_server, "wait")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(line["scenario"], line["variant"], line["n"]) for line in lines] == [
        ("wait", "listen", 10),
        ("wait", "poll", 10),
    ], done.stdout
    listen, poll = lines
    assert 0 < listen["p50_ms"] <= listen["max_ms"] and 0 < poll["p50_ms"] <= poll["max_ms"]
    # LISTEN: the read before the finish and the one the notification wakes, a few more
    # at most (a notification of the warm-up's jobs); polling reads at each step.
    assert 2 <= listen["reads_per_wait"] <= 3
    assert poll["reads_per_wait"] >= 2


def test_quick_enqueue_single_compares_pgq_with_its_floors(pg_server: devdb.Server) -> None:
    done = run_quick(pg_server, "enqueue_single")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {line["variant"]: line for line in map(json.loads, done.stdout.splitlines())}
    assert list(lines) == ["floor", "pgq", "pgq_autocommit", "floor_no_flush", "pgq_no_flush"]
    assert {line["n"] for line in lines.values()} == {200}
    for name, floor in [("pgq", "floor"), ("pgq_no_flush", "floor_no_flush")]:
        ours, theirs = lines[name], lines[floor]
        # The JSON rounds per_s to one decimal; floor_per_s and ratio come from the
        # unrounded rates (ratio rounded to 3 decimals).
        assert ours["floor_per_s"] == pytest.approx(theirs["per_s"], abs=0.05)
        assert ours["ratio"] == pytest.approx(ours["per_s"] / theirs["per_s"], abs=0.001)
    assert isinstance(lines["pgq"]["met"], bool) and "target" not in lines["pgq_no_flush"]


def test_an_unknown_scenario_fails_in_one_line_without_touching_the_database() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )
    assert done.returncode != 0
    # Every scenario is named, in the order the suite runs them: the list grows as features
    # bring their own benchmarks, so it is read from the CLI rather than written here.
    assert done.stderr.strip().splitlines() == [
        f"benchmarks: error: unknown scenario nope; choose from {', '.join(ALL_SCENARIOS)}"
    ]
    assert done.stdout == ""


def test_drain_costs_counts_wal_and_backend_cpu_per_job(pg_server: devdb.Server) -> None:
    # 20,000 jobs keep the worker's backends alive for many of the tool's polls; with 2,000
    # the writer's backend once lived and ended between two polls, and went uncounted.
    done = run_module(pg_server, "benchmarks.drain_costs", "-n", "20000")
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [json.loads(text) for text in done.stdout.splitlines()]
    assert line["n"] == 20000 and line["per_s"] > 0
    # Each drained job is claimed and finished (a heap and index records each, and more).
    assert line["wal_records_per_job"] > 3 and line["wal_bytes_per_job"] > 100
    if sys.platform == "linux":
        assert {"pgq claim", "pgq writer"} <= set(line["backend_cpu_us_per_job"])


@pytest.mark.skipif(not (ROOT / ".venv").is_dir(), reason="compare runs checkouts' .venv")
def test_compare_alternates_two_checkouts_and_sums_up_their_ratio(
    pg_server: devdb.Server,
) -> None:
    done = run_module(
        pg_server,
        "benchmarks.compare",
        *("--base", str(ROOT), "--rounds", "2", "drain_costs", "-n", "2000"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    *runs, summary = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["round"], r["variant"]) for r in runs] == [(0, "A"), (0, "B"), (1, "B"), (1, "A")]
    assert all(r["per_s"] > 0 for r in runs)
    assert summary["rounds"] == 2
    assert summary["b_over_a_min"] <= summary["b_over_a_median"] <= summary["b_over_a_max"]


def test_quick_pgbouncer_compares_the_modes_in_one_run(pg_server: devdb.Server) -> None:
    if devbouncer.find_binary() is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    done = run_quick(pg_server, "pgbouncer")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {line["variant"]: line for line in map(json.loads, done.stdout.splitlines())}
    modes = ("direct", "direct_pooled_mode", "pgbouncer")
    figures = ("claim_finish", "idle_claim", "drain")
    assert sorted(lines) == sorted(f"{f}_{m}" for f in figures for m in modes), done.stdout
    assert lines["claim_finish_direct"]["ratio"] == 1.0
    assert lines["idle_claim_direct"]["p50_vs_direct"] == 1.0
    assert all(line["per_s"] > 0 for line in lines.values())


def test_quick_process_pool_compares_the_pools_in_one_run(pg_server: devdb.Server) -> None:
    done = run_quick(pg_server, "process_pool")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {line["variant"]: line for line in map(json.loads, done.stdout.splitlines())}
    assert {"drain_thread", "drain_process", "child_start_spawn"} <= set(lines), done.stdout
    assert lines["drain_thread"]["ratio"] == 1.0
    assert lines["drain_process"]["ratio"] > 0
    assert all(line["per_s"] > 0 for line in lines.values())
    assert all(line["rss_mib"] > 0 for v, line in lines.items() if v.startswith("child_"))


def test_quick_schedules_counts_a_due_minute_and_drains_with_schedules_loaded(
    pg_server: devdb.Server,
) -> None:
    done = run_quick(pg_server, "schedules")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {line["variant"]: line for line in map(json.loads, done.stdout.splitlines())}
    assert set(lines) == {"due_each_minute", "drain_loaded"}, done.stdout
    due = lines["due_each_minute"]
    # One pass per minute: the list and the tick statement; a loser sends only the list.
    assert (due["statements_per_minute"], due["loser_statements_per_minute"]) == (2, 1)
    assert due["jobs_per_minute"] == due["n"]
    assert lines["drain_loaded"]["ratio_vs_none"] > 0
