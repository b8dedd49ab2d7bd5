"""`pgq doctor` and the pgq.health view, each finding driven by real database state.

Every test gets a database of its own (migrated), since they turn autovacuum off, leave
dead rows and bloat the claim index. The state is made for real: a second connection that
holds a snapshot, rows deleted with autovacuum off, a claim index emptied by state
changes, a prepared transaction (on a throwaway cluster with max_prepared_transactions
when the test server has none).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry
from test_cli_ops import pgq, pgq_process

from pgq import devdb, migrate
from pgq.doctor import (
    CHECKS,
    DEAD_ROWS_MIN,
    Finding,
    HealthReport,
    Thresholds,
    check_health,
    read_health,
)
from pgq.metrics import QueueGauges

Conn = psycopg.Connection[Any]
WAIT_TIMEOUT = 30.0
ROWS = DEAD_ROWS_MIN + 10_000


def wait_until(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not true within {WAIT_TIMEOUT}s")
        time.sleep(0.05)
    return result


@pytest.fixture
def own_url(empty_db_url: str) -> str:
    migrate.upgrade(empty_db_url)
    return empty_db_url


@pytest.fixture
def own(own_url: str) -> Iterator[Conn]:
    with psycopg.connect(own_url, autocommit=True) as conn:
        yield conn


def findings(report: HealthReport) -> dict[str, Finding]:
    return {f.check: f for f in report.findings}


def insert_queued(conn: Conn, n: int) -> None:
    conn.execute(
        "INSERT INTO pgq.jobs (queue, task) SELECT 'q' || i %% 3, 't' "
        "FROM generate_series(1, %s) AS i",
        (n,),
    )


def test_a_fresh_database_needs_nothing(own_url: str, own: Conn) -> None:
    report = check_health(own)
    assert [f.check for f in report.findings] == list(CHECKS)
    autovacuum_on = own.execute("SHOW autovacuum").fetchone() == ("on",)
    statuses = {f.check: f.status for f in report.findings}
    assert statuses == {
        **dict.fromkeys(CHECKS, "ok"),
        "autovacuum": "ok" if autovacuum_on else "warn",
    }
    assert not report.needs_action
    assert pgq(own_url, "doctor").code == 0


def test_dead_rows_with_autovacuum_off_need_a_vacuum(own_url: str, own: Conn) -> None:
    own.execute("ALTER TABLE pgq.jobs SET (autovacuum_enabled = false)")
    insert_queued(own, ROWS)
    own.execute("DELETE FROM pgq.jobs")
    wait_until(lambda: read_health(own).jobs_dead_rows >= ROWS, "the dead rows counted")

    report = check_health(own)
    found = findings(report)
    assert found["dead_rows"].status == "action"
    assert f"{ROWS:,} dead row versions beside 0 live" in found["dead_rows"].summary
    assert "VACUUM (ANALYZE) pgq.jobs" in (found["dead_rows"].advice or "")
    assert found["autovacuum"].status == "warn"
    assert "RESET (autovacuum_enabled)" in (found["autovacuum"].advice or "")
    assert report.needs_action

    run = pgq(own_url, "doctor")
    as_json = pgq(own_url, "doctor", "--json")
    assert run.code == 1
    assert "dead_rows" in run.out and "ACTION" in run.out
    assert as_json.code == 1
    assert as_json.json()["needs_action"] is True
    assert as_json.json()["health"]["jobs_dead_rows"] >= ROWS

    own.execute("VACUUM pgq.jobs")
    wait_until(lambda: read_health(own).jobs_dead_rows == 0, "the vacuum counted")
    assert findings(check_health(own))["dead_rows"].status == "ok"


def test_changed_rows_since_the_last_analyze_say_to_analyze(own: Conn) -> None:
    own.execute("ALTER TABLE pgq.jobs SET (autovacuum_enabled = false)")
    insert_queued(own, ROWS)
    wait_until(lambda: read_health(own).jobs_changed_since_analyze >= ROWS, "the changes counted")
    found = findings(check_health(own))["statistics"]
    assert (found.status, found.advice) == (
        "warn",
        "run ANALYZE pgq.jobs: the claim is planned on statistics of the queue as it was",
    )
    own.execute("ANALYZE pgq.jobs")
    wait_until(lambda: read_health(own).last_analyze_at is not None, "the analyze counted")
    assert findings(check_health(own))["statistics"].status == "ok"


def test_an_open_transaction_holds_back_vacuum_and_is_named(own_url: str, own: Conn) -> None:
    insert_queued(own, 1000)
    with psycopg.connect(own_url, application_name="report-export") as holder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM pgq.jobs")  # takes the snapshot, stays open
        pid = holder.info.backend_pid
        own.execute("DELETE FROM pgq.jobs")
        own.execute("VACUUM pgq.jobs")  # cannot remove what the snapshot still sees
        wait_until(lambda: read_health(own).jobs_dead_rows >= 1000, "the dead rows counted")
        wait_until(
            lambda: (read_health(own).oldest_xact_seconds or 0) > 1.0, "a second of snapshot"
        )

        health = read_health(own)
        assert (health.oldest_xact_pid, health.oldest_xact_application_name) == (
            pid,
            "report-export",
        )
        assert health.oldest_xact_state == "idle in transaction"
        within = findings(check_health(own))["oldest_transaction"]
        assert within.status == "ok", "younger than the 5 minute default"
        assert f"pid {pid}" in within.summary
        strict = findings(check_health(own, Thresholds(xact_seconds_max=1.0)))
        held = strict["oldest_transaction"]
        assert held.status == "action"
        assert "'report-export'" in held.summary and "idle in transaction" in held.summary
        assert f"pg_terminate_backend({pid})" in (held.advice or "")
        holder.rollback()

    own.execute("VACUUM pgq.jobs")  # now it can
    wait_until(lambda: read_health(own).jobs_dead_rows == 0, "the vacuum counted")
    assert findings(check_health(own))["oldest_transaction"].status == "ok"


def test_a_claim_index_of_dead_entries_says_to_reindex(own: Conn) -> None:
    own.execute("ALTER TABLE pgq.jobs SET (autovacuum_enabled = false)")
    insert_queued(own, ROWS)
    # Every job leaves the queued state: the index keeps its size, none of it live.
    own.execute("UPDATE pgq.jobs SET state = 'succeeded', finished_at = now()")
    own.execute("VACUUM pgq.jobs")

    found = findings(check_health(own))["claim_index"]
    assert found.status == "action"
    assert "for 0 queued jobs" in found.summary
    assert "REINDEX INDEX CONCURRENTLY pgq.jobs_claim_idx" in (found.advice or "")

    own.execute("REINDEX INDEX CONCURRENTLY pgq.jobs_claim_idx")
    assert findings(check_health(own))["claim_index"].status == "ok"


def test_a_live_backlog_is_no_bloat(own: Conn) -> None:
    insert_queued(own, ROWS)
    health = read_health(own)
    assert health.queued_rows == ROWS
    assert health.claim_index_bytes > 1024 * 1024
    assert findings(check_health(own))["claim_index"].status == "ok"


@pytest.fixture
def prepared_url(pg_server: devdb.Server) -> Iterator[str]:
    """A migrated database on a server that allows prepared transactions: the test server,
    or a throwaway cluster with max_prepared_transactions = 2 when it has none."""
    with psycopg.connect(pg_server.url) as conn:
        allowed = int(conn.execute("SHOW max_prepared_transactions").fetchone()[0])  # type: ignore[index]
    with contextlib.ExitStack() as stack:
        server = pg_server
        if allowed == 0:
            try:
                server = stack.enter_context(
                    devdb.throwaway_cluster(settings={"max_prepared_transactions": "2"})
                )
            except (RuntimeError, OSError) as exc:
                pytest.skip(
                    "the test server has max_prepared_transactions = 0 and no throwaway "
                    f"cluster could be started with more: {exc}"
                )
        url = stack.enter_context(devdb.scratch_database(server, prefix="pgq_prepared"))
        migrate.upgrade(url)
        yield url


def test_a_forgotten_prepared_transaction_is_named(prepared_url: str) -> None:
    with psycopg.connect(prepared_url, autocommit=True) as conn:
        with psycopg.connect(prepared_url) as tx:
            tx.execute("INSERT INTO pgq.jobs (queue, task) VALUES ('q', 't')")
            tx.execute("PREPARE TRANSACTION 'pay-42'")
        try:
            wait_until(lambda: (read_health(conn).oldest_prepared_seconds or 0) > 1.0, "a second")
            assert findings(check_health(conn))["prepared_transaction"].status == "ok"
            found = findings(check_health(conn, Thresholds(prepared_seconds_max=1.0)))
            prepared = found["prepared_transaction"]
            assert prepared.status == "action"
            assert "'pay-42'" in prepared.summary
            assert "ROLLBACK PREPARED 'pay-42'" in (prepared.advice or "")
        finally:
            conn.execute("ROLLBACK PREPARED 'pay-42'")
        assert findings(check_health(conn))["prepared_transaction"].status == "ok"


def test_the_metrics_carry_the_same_facts_and_judgements(own_url: str, own: Conn) -> None:
    own.execute("ALTER TABLE pgq.jobs SET (autovacuum_enabled = false)")
    insert_queued(own, ROWS)
    own.execute("DELETE FROM pgq.jobs")
    wait_until(lambda: read_health(own).jobs_dead_rows >= ROWS, "the dead rows counted")
    with psycopg.connect(own_url) as holder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT 1")  # the transaction's snapshot, held while it sits idle
        wait_until(lambda: read_health(own).oldest_xact_pid is not None, "the holder seen")

        registry = CollectorRegistry()
        registry.register(QueueGauges(own_url))
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect()
            for s in family.samples
        }
        holder.rollback()

    assert samples[("pgq_jobs_dead_rows", ())] >= ROWS
    assert samples[("pgq_jobs_live_rows", ())] == 0
    assert samples[("pgq_claim_index_bytes", ())] > 1024 * 1024
    assert samples[("pgq_xmin_holder_seconds", (("holder", "transaction"),))] > 0
    assert samples[("pgq_xmin_holder_age_xids", (("holder", "slot"),))] == 0
    actions = {k[1][0][1]: v for k, v in samples.items() if k[0] == "pgq_health_action"}
    assert set(actions) == set(CHECKS)
    assert actions["dead_rows"] == 1 and actions["claim_index"] == 1
    assert actions["oldest_transaction"] == 0  # younger than the default threshold


def test_doctor_through_the_installed_script(own_url: str, own: Conn) -> None:
    run = pgq_process("doctor", "--json", "--database-url", own_url)
    assert (run.code, run.json()["needs_action"]) == (0, False)
    assert [f["check"] for f in run.json()["findings"]] == list(CHECKS)
