"""Queue health: what ages a PostgreSQL queue, judged, with what to do (``pgq doctor``).

A queue table turns over its rows all day. Every claim and every finish leaves a dead row
version in ``pgq.jobs`` and an entry in its claim index that later claims step over until
a vacuum removes them; a transaction, replication slot or prepared transaction that holds
back the xmin horizon keeps vacuum from removing them at all, and the queue slows down as
it ages. The ``pgq.health`` view states the facts in one row;
[`check_health`][pgq.doctor.check_health] judges them against the thresholds below (named,
documented in docs/operations.md) and says, for each finding, what to do.

A finding is ``ok``, ``warn`` (worth knowing; nothing is wrong yet) or ``action`` (the
queue is ageing or will: do what it says). ``pgq doctor`` exits 1 when one needs action.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from pgq import store

# Dead rows in pgq.jobs: a finding when there are at least this many AND they are at least
# this fraction of all row versions. pgq's reaper vacuums at 20,000 (reaper.py); this many
# means neither it nor autovacuum keeps up, or something holds the xmin horizon back.
DEAD_ROWS_MIN = 50_000
DEAD_FRACTION_MAX = 0.2
# Rows changed since the last ANALYZE: past this the claim is planned on statistics of a
# different queue (230 ms per claim instead of under 1 ms, docs/design-notes.md).
STALE_STATS_ROWS = 50_000
# A transaction holding a snapshot this long holds back every vacuum of the database.
XACT_SECONDS_MAX = 300.0
# A prepared transaction is meant to be committed or rolled back within moments.
PREPARED_SECONDS_MAX = 60.0
# A replication slot has no start time: judge it by how many transactions old its xmin is.
SLOT_XMIN_AGE_MAX = 1_000_000
# The claim index, once past this size, against its live entries: a healthy entry of
# (queue, priority, run_at, id) takes about 40-60 bytes; four times that is mostly dead
# entries and half-empty pages that every claim reads.
CLAIM_INDEX_MIN_BYTES = 1024 * 1024
CLAIM_INDEX_BYTES_PER_ROW_MAX = 200

STATUSES = ("ok", "warn", "action")


@dataclass(frozen=True)
class Thresholds:
    """The limits [`check_health`][pgq.doctor.check_health] judges by; the defaults are the
    module's constants."""

    dead_rows_min: int = DEAD_ROWS_MIN
    dead_fraction_max: float = DEAD_FRACTION_MAX
    stale_stats_rows: int = STALE_STATS_ROWS
    xact_seconds_max: float = XACT_SECONDS_MAX
    prepared_seconds_max: float = PREPARED_SECONDS_MAX
    slot_xmin_age_max: int = SLOT_XMIN_AGE_MAX
    claim_index_min_bytes: int = CLAIM_INDEX_MIN_BYTES
    claim_index_bytes_per_row_max: float = CLAIM_INDEX_BYTES_PER_ROW_MAX


@dataclass(frozen=True)
class Health:
    """The ``pgq.health`` row (docs/operations.md lists the columns), with the seconds since
    the last vacuum and analyze."""

    jobs_live_rows: int
    jobs_dead_rows: int
    jobs_changed_since_analyze: int
    jobs_table_bytes: int
    last_vacuum_at: Any
    last_autovacuum_at: Any
    last_analyze_at: Any
    last_autoanalyze_at: Any
    autovacuum_enabled: bool
    claim_index_bytes: int
    queued_rows: int
    oldest_xact_pid: int | None
    oldest_xact_application_name: str | None
    oldest_xact_state: str | None
    oldest_xact_backend_type: str | None
    oldest_xact_seconds: float | None
    oldest_xact_xmin_age: int | None
    oldest_slot_name: str | None
    oldest_slot_active: bool | None
    oldest_slot_xmin_age: int | None
    oldest_prepared_gid: str | None
    oldest_prepared_owner: str | None
    oldest_prepared_seconds: float | None
    oldest_prepared_xmin_age: int | None
    vacuum_seconds_ago: float | None
    analyze_seconds_ago: float | None


@dataclass(frozen=True)
class Finding:
    """One judged fact: ``check`` names it, ``status`` is ok, warn or action, ``summary``
    says what was found and ``advice`` what to do (None when nothing is to be done)."""

    check: str
    status: str
    summary: str
    advice: str | None = None


@dataclass(frozen=True)
class HealthReport:
    """Every finding, and the facts they were judged on."""

    findings: list[Finding]
    health: Health
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def needs_action(self) -> bool:
        return any(f.status == "action" for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready report (``pgq doctor --json``)."""
        return {
            "needs_action": self.needs_action,
            "findings": [asdict(f) for f in self.findings],
            "health": asdict(self.health),
            "thresholds": asdict(self.thresholds),
        }


def read_health(conn: psycopg.Connection[Any]) -> Health:
    """The ``pgq.health`` row."""
    row = store.fetch(conn, store.select_health())[0]
    return Health(*row)


def check_health(
    conn: psycopg.Connection[Any], thresholds: Thresholds | None = None
) -> HealthReport:
    """Read ``pgq.health`` and judge it: one finding per check, in a fixed order.

    The checks: dead rows, autovacuum, statistics, the oldest transaction, replication slot
    and prepared transaction holding back the xmin horizon, and the claim index's size
    against live queued rows."""
    limits = thresholds or Thresholds()
    health = read_health(conn)
    return HealthReport(judge(health, limits), health, limits)


def judge(health: Health, limits: Thresholds) -> list[Finding]:
    """The findings about ``health`` (pure: no database)."""
    return [check(health, limits) for check in _CHECKS]


# --- the checks -------------------------------------------------------------------------------


def _dead_rows(h: Health, t: Thresholds) -> Finding:
    total = h.jobs_live_rows + h.jobs_dead_rows
    fraction = h.jobs_dead_rows / total if total else 0.0
    summary = (
        f"{h.jobs_dead_rows:,} dead row versions beside {h.jobs_live_rows:,} live ones in "
        f"pgq.jobs ({fraction:.0%} dead)"
    )
    if h.jobs_dead_rows >= t.dead_rows_min and fraction >= t.dead_fraction_max:
        return Finding(
            "dead_rows",
            "action",
            summary,
            "run VACUUM (ANALYZE) pgq.jobs; if they come back, look at the xmin findings "
            "below (no vacuum removes a row an old snapshot can still see) and at autovacuum",
        )
    return Finding("dead_rows", "ok", summary)


def _autovacuum(h: Health, t: Thresholds) -> Finding:
    if h.autovacuum_enabled:
        return Finding("autovacuum", "ok", "autovacuum is on for pgq.jobs")
    return Finding(
        "autovacuum",
        "warn",
        "autovacuum is off for pgq.jobs (autovacuum_enabled = false on the table, or "
        "autovacuum = off on the server)",
        "turn it on: ALTER TABLE pgq.jobs RESET (autovacuum_enabled), or autovacuum = on in "
        "postgresql.conf; until then only the reaper in pgq work vacuums pgq.jobs, when its "
        "dead rows pass 20,000",
    )


def _statistics(h: Health, t: Thresholds) -> Finding:
    summary = (
        f"last vacuum {_ago(h.vacuum_seconds_ago)}, last analyze "
        f"{_ago(h.analyze_seconds_ago)}; {h.jobs_changed_since_analyze:,} rows changed since"
    )
    if h.jobs_changed_since_analyze >= t.stale_stats_rows:
        return Finding(
            "statistics",
            "warn",
            summary,
            "run ANALYZE pgq.jobs: the claim is planned on statistics of the queue as it was",
        )
    return Finding("statistics", "ok", summary)


def _oldest_transaction(h: Health, t: Thresholds) -> Finding:
    if h.oldest_xact_pid is None or h.oldest_xact_seconds is None:
        return Finding("oldest_transaction", "ok", "no other session holds a snapshot")
    pid = h.oldest_xact_pid
    summary = (
        f"pid {pid} ({h.oldest_xact_backend_type}, application_name "
        f"{h.oldest_xact_application_name or ''!r}, state {h.oldest_xact_state or '-'}) has "
        f"held its snapshot for {_duration(h.oldest_xact_seconds)}, "
        f"{h.oldest_xact_xmin_age or 0:,} transactions back"
    )
    if h.oldest_xact_seconds < t.xact_seconds_max:
        return Finding("oldest_transaction", "ok", summary)
    if h.oldest_xact_backend_type == "walsender":
        advice = (
            f"a standby with hot_standby_feedback holds it (walsender pid {pid}): end the long "
            "queries on that standby, or set max_standby_streaming_delay there"
        )
    else:
        advice = (
            f"end that transaction: COMMIT or ROLLBACK in its session, or SELECT "
            f"pg_terminate_backend({pid}); idle_in_transaction_session_timeout stops it "
            "happening again"
        )
    return Finding("oldest_transaction", "action", summary, advice)


def _replication_slot(h: Health, t: Thresholds) -> Finding:
    if h.oldest_slot_name is None:
        return Finding("replication_slot", "ok", "no replication slot holds the xmin horizon")
    name, age = h.oldest_slot_name, h.oldest_slot_xmin_age or 0
    state = "active" if h.oldest_slot_active else "inactive"
    summary = f"replication slot {name!r} ({state}) holds xmin {age:,} transactions back"
    if h.oldest_slot_active and age < t.slot_xmin_age_max:
        return Finding("replication_slot", "ok", summary)
    return Finding(
        "replication_slot",
        "action",
        summary,
        f"if its standby is gone, drop it: SELECT pg_drop_replication_slot('{name}'); if not, "
        "end the standby's long queries (it sends hot_standby_feedback)",
    )


def _prepared_transaction(h: Health, t: Thresholds) -> Finding:
    if h.oldest_prepared_gid is None or h.oldest_prepared_seconds is None:
        return Finding("prepared_transaction", "ok", "no prepared transaction in this database")
    gid = h.oldest_prepared_gid
    summary = (
        f"prepared transaction {gid!r} (owner {h.oldest_prepared_owner}) has waited "
        f"{_duration(h.oldest_prepared_seconds)}, {h.oldest_prepared_xmin_age or 0:,} "
        "transactions back"
    )
    if h.oldest_prepared_seconds < t.prepared_seconds_max:
        return Finding("prepared_transaction", "ok", summary)
    quoted = gid.replace("'", "''")
    return Finding(
        "prepared_transaction",
        "action",
        summary,
        f"its transaction manager should have resolved it: COMMIT PREPARED '{quoted}' or "
        f"ROLLBACK PREPARED '{quoted}' (as its owner or a superuser)",
    )


def _claim_index(h: Health, t: Thresholds) -> Finding:
    per_row = h.claim_index_bytes / max(h.queued_rows, 1)
    per_job = f"{per_row:,.0f} bytes per job" if h.queued_rows else "none of it live"
    summary = (
        f"jobs_claim_idx is {_size(h.claim_index_bytes)} for {h.queued_rows:,} queued jobs "
        f"({per_job})"
    )
    bloated = (
        h.claim_index_bytes >= t.claim_index_min_bytes and per_row > t.claim_index_bytes_per_row_max
    )
    if not bloated:
        return Finding("claim_index", "ok", summary)
    return Finding(
        "claim_index",
        "action",
        summary,
        "rebuild it without blocking the queue: REINDEX INDEX CONCURRENTLY pgq.jobs_claim_idx "
        "(vacuum first if dead rows are a finding too)",
    )


_CHECKS = (
    _dead_rows,
    _autovacuum,
    _statistics,
    _oldest_transaction,
    _replication_slot,
    _prepared_transaction,
    _claim_index,
)
CHECKS = tuple(check.__name__.lstrip("_") for check in _CHECKS)  # the names, in order


def _ago(seconds: float | None) -> str:
    return "never" if seconds is None else f"{_duration(seconds)} ago"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"


def _size(n: int) -> str:
    if n < 1024 * 1024:
        return f"{n / 1024:,.0f} KiB"
    return f"{n / 1024 / 1024:,.1f} MiB"
