"""The benchmark suite end to end, small: so it cannot rot while nobody runs `make bench`.

Runs ``python -m benchmarks --only drain --quick`` (a real ``pgq work`` subprocess draining
a fresh database) against the server the test session uses. Nothing here is about speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgq import devdb

ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT = 120  # seconds; the run takes about ten


def test_quick_drain_prints_its_json_lines_and_a_summary(pg_server: devdb.Server) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "drain", "--quick"],
        cwd=ROOT,
        env={**os.environ, devdb.TEST_URL_ENV: pg_server.url},
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )
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
    assert done.stderr.strip().splitlines() == [
        "benchmarks: error: unknown scenario nope; choose from "
        "enqueue_single, enqueue_many, drain, latency, backlog, scale_out, "
        "enqueue_concurrent, memory, soak, peers"
    ]
    assert done.stdout == ""
