"""The benchmark harness's pure pieces: percentiles, the JSON line, the summary, the soak's
figures. No database; speed is never asserted here."""

from __future__ import annotations

import json
import math
import os
import time

import pytest
from benchmarks import cli, harness, workers
from benchmarks.scenarios import pgbouncer, soak
from benchmarks.workers import parse_status_kib

# --- percentiles ----------------------------------------------------------------------------


def test_percentile_interpolates_between_ranks_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert harness.percentile(values, 0) == 1.0
    assert harness.percentile(values, 100) == 4.0
    assert harness.percentile(values, 50) == 2.5
    # numpy.percentile([1, 2, 3, 4], 95) == 3.85
    assert harness.percentile(values, 95) == pytest.approx(3.85)


def test_percentile_of_one_value_is_that_value() -> None:
    assert harness.percentile([7.5], 99) == 7.5


def test_percentile_on_a_hundred_values_hits_the_ranks() -> None:
    values = [float(i) for i in range(1, 101)]
    assert harness.percentile(values, 50) == pytest.approx(50.5)
    assert harness.percentile(values, 99) == pytest.approx(99.01)


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_refuses_a_rank_outside_0_to_100(q: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        harness.percentile([1.0], q)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        harness.percentile([], 50)


def test_latency_fields_name_every_percentile_in_milliseconds() -> None:
    fields = harness.latency_fields([1.0, 2.0, 3.0, 10.0])
    assert set(fields) == {"p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"}
    assert fields["p50_ms"] == 2.5
    assert fields["max_ms"] == 10.0
    assert fields["mean_ms"] == 4.0


# --- the JSON line --------------------------------------------------------------------------


def test_json_line_starts_with_the_common_fields_in_order() -> None:
    result = harness.Result("drain", "pgq", 20_000, 1.6, {"p50_ms": 1.23456})
    line = json.loads(result.json_line())
    assert list(line)[:5] == ["scenario", "variant", "n", "seconds", "per_s"]
    assert line["scenario"] == "drain"
    assert line["variant"] == "pgq"
    assert line["n"] == 20_000
    assert line["per_s"] == 12_500.0
    assert line["p50_ms"] == 1.235


def test_json_line_rounds_seconds_rates_and_extras() -> None:
    line = harness.Result("x", "y", 3, 0.123456789, {"ratio": 0.912345}).to_dict()
    assert line["seconds"] == 0.1235
    assert line["per_s"] == 24.3
    assert line["ratio"] == 0.912


def test_json_line_rounds_inside_lists_and_drops_non_finite_numbers() -> None:
    extra = {"per_minute": [1.23456, 2.0], "nested": {"a": 0.33333}, "bad": math.inf}
    line = json.loads(harness.Result("soak", "steady", 1, 1.0, extra).json_line())
    assert line["per_minute"] == [1.235, 2.0]
    assert line["nested"] == {"a": 0.333}
    assert line["bad"] is None


def test_target_and_verdict_appear_only_when_set() -> None:
    plain = harness.Result("enqueue_single", "floor", 10, 1.0).to_dict()
    assert "target" not in plain
    assert "met" not in plain
    judged = harness.Result("drain", "pgq", 10, 1.0, target=">= 10 jobs/s", met=True).to_dict()
    assert judged["target"] == ">= 10 jobs/s"
    assert judged["met"] is True


def test_per_s_of_zero_seconds_is_zero_not_a_division_error() -> None:
    assert harness.Result("x", "y", 5, 0.0).per_s == 0.0


def test_error_line_names_the_scenario_and_the_problem() -> None:
    line = json.loads(harness.error_line("drain", "the worker exited with 2"))
    assert line == {"scenario": "drain", "variant": "error", "error": "the worker exited with 2"}


def test_ratio_of_nothing_measured_is_zero() -> None:
    assert harness.ratio(5.0, 0.0) == 0.0
    assert harness.ratio(9.0, 10.0) == 0.9


# --- the summary table ----------------------------------------------------------------------


def test_summary_shows_figures_notes_and_verdicts() -> None:
    lines = [
        harness.Result("drain", "pgq", 20_000, 2.0, target=">= 10,000 jobs/s", met=True),
        harness.Result("backlog", "future", 10, 1.0, {"ratio": 0.75}, ">= 0.8 x empty", False),
    ]
    rows = harness.summary_rows(line.to_dict() for line in lines)
    assert rows[0][:5] == ["scenario", "variant", "n", "seconds", "per_s"]
    assert rows[1][:5] == ["drain", "pgq", "20000", "2.000", "10,000"]
    assert rows[1][6] == "met >= 10,000 jobs/s"
    assert rows[2][5] == "ratio=0.75"
    assert rows[2][6] == "MISSED >= 0.8 x empty"


def test_summary_shows_errors_of_whole_scenarios_and_of_variants() -> None:
    lines = [
        json.loads(harness.error_line("latency", "timed out after 30s waiting for x")),
        harness.Result("drain", "procrastinate", 0, 0.0, {"error": "not installed"}).to_dict(),
    ]
    rows = harness.summary_rows(lines)
    assert rows[1][1] == "ERROR"
    assert "timed out" in rows[1][5]
    assert rows[2][5] == "ERROR: not installed"


def test_a_skipped_scenario_is_a_line_with_its_reason_and_a_row() -> None:
    line = json.loads(harness.skipped_line("pgbouncer", "pgbouncer is not installed"))
    assert line == {"scenario": "pgbouncer", "variant": "skipped", "reason": line["reason"]}
    rows = harness.summary_rows([line])
    assert rows[1][:2] == ["pgbouncer", "skipped"]
    assert rows[1][5] == "pgbouncer is not installed"


def test_a_skipped_scenario_is_not_a_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pgbouncer.devbouncer, "find_binary", lambda: None)
    monkeypatch.setattr(cli, "load", lambda name: pgbouncer)
    lines, failed = cli.run_scenarios(harness.Context(None, log=lambda _: None), ["pgbouncer"])
    assert failed == 0
    assert lines == [{"scenario": "pgbouncer", "variant": "skipped", "reason": lines[0]["reason"]}]
    assert "apt-get install pgbouncer" in lines[0]["reason"]
    assert json.loads(capsys.readouterr().out) == lines[0]


def test_format_table_aligns_columns() -> None:
    text = harness.format_table([["a", "bb"], ["ccc", "d"]])
    assert text.splitlines() == ["a    bb", "ccc  d"]


# --- command line and /proc -----------------------------------------------------------------


def test_chosen_scenarios_default_leaves_out_soak_and_peers() -> None:
    chosen = cli.chosen_scenarios(None)
    assert chosen[0] == "enqueue_single"
    assert "memory" in chosen
    assert "soak" not in chosen
    assert "peers" not in chosen


def test_chosen_scenarios_accepts_repeats_and_commas_in_order() -> None:
    assert cli.chosen_scenarios(["drain,latency", "soak"]) == ["drain", "latency", "soak"]


def test_an_unknown_scenario_is_a_one_line_error() -> None:
    with pytest.raises(SystemExit, match="unknown scenario draine; choose from"):
        cli.chosen_scenarios(["draine"])


def test_every_scenario_module_has_a_name_and_a_run() -> None:
    for name in (*cli.DEFAULT_SCENARIOS, "soak"):
        module = cli.load(name)
        assert name == module.NAME
        assert callable(module.run)


def test_parse_status_reads_a_kib_field() -> None:
    status = "Name:\tpgq\nVmHWM:\t   51200 kB\nVmRSS:\t   49152 kB\n"
    assert parse_status_kib(status, "VmRSS") == 49152
    assert parse_status_kib(status, "VmHWM") == 51200
    with pytest.raises(ValueError, match="VmSwap"):
        parse_status_kib(status, "VmSwap")


# --- the soak's figures ---------------------------------------------------------------------


def test_per_period_averages_whole_periods_only() -> None:
    buckets = [10.0] * 12 + [4.0] * 12 + [7.0] * 5  # 5 s buckets: 2 minutes and a bit
    assert soak.per_period(buckets, 60.0) == [10.0, 4.0]


def test_period_is_a_minute_except_in_a_short_quick_run() -> None:
    assert soak.period_of(600.0) == 60.0
    assert soak.period_of(40.0) == 10.0


def test_recovery_is_zero_when_throughput_never_dips() -> None:
    buckets = [100.0] * 40
    figures = soak.dip_and_recovery(buckets, txn_start=80.0, txn_end=140.0)
    assert figures["baseline_per_s"] == 100.0
    assert figures["recovery_s"] == 0.0
    assert figures["dip_ratio"] == 1.0


def test_recovery_ends_where_every_30_s_window_is_back_above_target() -> None:
    # 5 s buckets; the transaction holds from 80 s to 140 s; throughput sags from 100 s
    # and is back in the bucket starting at 160 s. The 30 s window starting at 150 s
    # holds one low bucket (mean 91.7, above 90): back from 155 s, 15 s after the end.
    buckets = [100.0] * 20 + [50.0] * 12 + [100.0] * 10
    figures = soak.dip_and_recovery(buckets, txn_start=80.0, txn_end=140.0)
    assert figures["dip_per_s"] == 50.0
    assert figures["dip_ratio"] == 0.5
    assert figures["recovery_window_s"] == 30.0
    assert figures["recovery_s"] == 15.0
    assert figures["recovery_s_by_bucket"] == 20.0  # the last low bucket ends at 160 s


def test_one_noisy_bucket_long_after_does_not_undo_a_recovery() -> None:
    # Back at 160 s; one 5 s bucket at 0.85 x at 300 s, as a steady run also shows.
    buckets = [100.0] * 20 + [50.0] * 12 + [100.0] * 28 + [85.0] + [100.0] * 9
    figures = soak.dip_and_recovery(buckets, txn_start=80.0, txn_end=140.0)
    assert figures["recovery_s"] == 15.0
    assert figures["recovery_s_by_bucket"] == 165.0  # judged bucket by bucket: 305 s


def test_recovery_is_none_when_the_run_ends_below_target() -> None:
    buckets = [100.0] * 20 + [50.0] * 20
    assert soak.dip_and_recovery(buckets, 80.0, 140.0)["recovery_s"] is None


def test_machine_cores_turn_busy_seconds_into_cores_per_period() -> None:
    # 90 busy seconds in the first minute, 60 in the second: 1.5 cores, then 1.0.
    assert soak.machine_cores([90.0, 150.0], 60.0) == [1.5, 1.0]


def test_machine_cores_are_none_where_busy_time_cannot_be_read() -> None:
    assert soak.machine_cores([90.0, None], 60.0) is None
    assert soak.since(None, 5.0) is None and soak.since(2.0, 5.0) == 3.0


def test_machine_busy_seconds_grow_while_this_process_spins() -> None:
    before = soak.machine_busy_seconds()
    if before is None:
        pytest.skip("no /proc/stat on this system")
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        pass
    after = soak.machine_busy_seconds()
    assert after is not None and after - before >= 0.2


def test_backend_cores_add_up_each_kind_of_backend_per_period() -> None:
    readings = [
        {10: ("pgq claim", 30.0), 11: ("pgq writer", 12.0)},
        # Minute two: the claim backend used 45 s more; a parallel vacuum worker (20)
        # came and used 6 s; the writer's backend was replaced by a new one (12).
        {10: ("pgq claim", 75.0), 12: ("pgq writer", 30.0), 20: ("pgq reaper", 6.0)},
    ]
    assert soak.backend_cores(readings, 60.0) == {
        "pgq claim": [0.5, 0.75],
        "pgq reaper": [0.0, 0.1],
        "pgq writer": [0.2, 0.5],
    }


def test_backend_cpu_seconds_reads_live_processes_and_names_the_nameless() -> None:
    if workers.process_cpu_seconds(os.getpid()) is None:
        pytest.skip("no /proc on this system")
    gone = 2**22 + 1  # above Linux's largest pid
    sessions = [(os.getpid(), "", "active"), (gone, "pgq claim", "idle")]
    found = workers.backend_cpu_seconds(sessions)
    assert list(found) == [os.getpid()]
    name, seconds = found[os.getpid()]
    assert name == "other" and seconds > 0
