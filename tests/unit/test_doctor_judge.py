"""pgq.doctor's judgements on facts given by hand: the cases a test database cannot make
(a walsender, a replication slot holding xmin) and the edges of each threshold."""

from __future__ import annotations

from dataclasses import replace

from pgq.doctor import CHECKS, Health, Thresholds, judge

HEALTHY = Health(
    *(1000, 0, 0, 8192 * 10, None, None, None, None, True, 8192 * 4, 1000),
    *(None, None, None, None, None, None),
    *(None, None, None),
    *(None, None, None, None),
    *(None, None),
)


def verdicts(health: Health, limits: Thresholds | None = None) -> dict[str, str]:
    return {f.check: f.status for f in judge(health, limits or Thresholds())}


def finding(health: Health, check: str) -> tuple[str, str, str | None]:
    found = next(f for f in judge(health, Thresholds()) if f.check == check)
    return found.status, found.summary, found.advice


def test_healthy_facts_need_nothing() -> None:
    assert verdicts(HEALTHY) == dict.fromkeys(CHECKS, "ok")


def test_dead_rows_need_both_the_count_and_the_fraction() -> None:
    many_but_few = replace(HEALTHY, jobs_live_rows=1_000_000, jobs_dead_rows=60_000)
    assert verdicts(many_but_few)["dead_rows"] == "ok", "6 % dead: autovacuum's business"
    few_but_most = replace(HEALTHY, jobs_live_rows=10, jobs_dead_rows=40_000)
    assert verdicts(few_but_most)["dead_rows"] == "ok", "under 50,000"
    both = replace(HEALTHY, jobs_live_rows=100_000, jobs_dead_rows=50_000)
    assert verdicts(both)["dead_rows"] == "action"


def test_a_walsender_holding_xmin_points_at_the_standby() -> None:
    held = replace(
        HEALTHY,
        oldest_xact_pid=77,
        oldest_xact_backend_type="walsender",
        oldest_xact_seconds=3600.0,
        oldest_xact_xmin_age=5000,
    )
    status, summary, advice = finding(held, "oldest_transaction")
    assert status == "action"
    assert "pid 77 (walsender" in summary and "60.0m" in summary
    assert advice is not None and "hot_standby_feedback" in advice


def test_a_replication_slot_inactive_or_far_behind_needs_action() -> None:
    slot = replace(HEALTHY, oldest_slot_name="standby_1", oldest_slot_xmin_age=10)
    active = replace(slot, oldest_slot_active=True)
    assert finding(active, "replication_slot")[0] == "ok"
    status, summary, advice = finding(replace(slot, oldest_slot_active=False), "replication_slot")
    assert (status, summary) == (
        "action",
        "replication slot 'standby_1' (inactive) holds xmin 10 transactions back",
    )
    assert advice is not None and "pg_drop_replication_slot('standby_1')" in advice
    behind = replace(active, oldest_slot_xmin_age=2_000_000)
    assert finding(behind, "replication_slot")[0] == "action"


def test_a_prepared_transaction_gid_is_quoted_in_the_advice() -> None:
    prepared = replace(
        HEALTHY,
        oldest_prepared_gid="it's-42",
        oldest_prepared_owner="app",
        oldest_prepared_seconds=120.0,
        oldest_prepared_xmin_age=3,
    )
    status, _, advice = finding(prepared, "prepared_transaction")
    assert status == "action"
    assert advice is not None and "ROLLBACK PREPARED 'it''s-42'" in advice


def test_the_claim_index_is_judged_per_live_queued_job_past_a_minimum_size() -> None:
    small = replace(HEALTHY, claim_index_bytes=512 * 1024, queued_rows=0)
    assert verdicts(small)["claim_index"] == "ok", "under 1 MiB"
    bloated = replace(HEALTHY, claim_index_bytes=8 * 1024 * 1024, queued_rows=1000)
    assert verdicts(bloated)["claim_index"] == "action"
    backlog = replace(HEALTHY, claim_index_bytes=8 * 1024 * 1024, queued_rows=150_000)
    assert verdicts(backlog)["claim_index"] == "ok"
    assert (
        verdicts(bloated, Thresholds(claim_index_bytes_per_row_max=10_000))["claim_index"] == "ok"
    )


def test_warnings_are_not_actions() -> None:
    off = replace(HEALTHY, autovacuum_enabled=False, jobs_changed_since_analyze=100_000)
    statuses = verdicts(off)
    assert (statuses["autovacuum"], statuses["statistics"]) == ("warn", "warn")
    assert "action" not in statuses.values()
