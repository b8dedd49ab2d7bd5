"""Idle flow-control rows are pruned: what pruning must keep, and the live keys in the view.

Revision ID: pgq_0013
Revises: pgq_0012
Create Date: 2026-12-04
"""

from alembic import op

revision = "pgq_0013"
down_revision = "pgq_0012"
branch_labels = None
depends_on = None

# Why (docs/flow-control.md "When key rows go", docs/design-notes.md "Flow control"):
#
# - The reaper's pruner deletes the row of a concurrency key nothing holds or waits on
#   (sql/concurrency_keys_prune.sql) and of a rate key with no blocked job and no start in
#   its period (sql/rate_limits_prune.sql), so keys made from arguments (one per customer)
#   no longer grow the tables without bound.
# - jobs_concurrency_final_idx: a failed or cancelled job of a concurrency key keeps the
#   key's row. `pgq retry` sends such a job back blocked with a wakeup that carries the
#   row's limit (job_retry_many.sql); without the row it would carry 1. The index holds
#   only failed and cancelled limited jobs (rare), and lets the pruner ask per key.
# - rate_limits.synced: a row a worker wrote at start from its code (rate_limits_sync.sql:
#   a task's own name, a fixed rate_key) is never pruned, so the limit the code has now
#   stays the key's limit; a job enqueued by older code (a rolling deploy) cannot bring its
#   limit back by re-creating a pruned row. Such keys are as many as the tasks. A constant
#   default is a catalog change: no rewrite.
# - pgq.flow_limits lists a rate key only while it is in use (starts in its period) or has
#   waiting jobs, as it lists concurrency keys: a key pgq still keeps (synced, or not yet
#   pruned) but nobody uses is not a limit in use.
UPGRADE = """
CREATE INDEX jobs_concurrency_final_idx ON pgq.jobs (concurrency_key)
    WHERE concurrency_key IS NOT NULL AND state IN ('failed', 'cancelled');

ALTER TABLE pgq.rate_limits ADD COLUMN synced boolean NOT NULL DEFAULT false;

COMMENT ON TABLE pgq.rate_limits IS
    'pgq: per rate key, its limit (max_starts per period seconds) and the starts of the '
    'last period, oldest first; synced: written by a worker from its code, never pruned. '
    'Stable interface; written only by pgq.';

CREATE OR REPLACE VIEW pgq.flow_limits AS
SELECT 'concurrency'::text AS kind, k.key, k.max_active AS max, NULL::float8 AS period_seconds,
       k.active AS in_use, b.waiting
FROM pgq.concurrency_keys AS k
CROSS JOIN LATERAL (
    SELECT count(*) AS waiting FROM pgq.jobs AS j
    WHERE j.concurrency_key = k.key AND j.state > 'cancelled'
) AS b
WHERE k.active > 0 OR b.waiting > 0
UNION ALL
SELECT 'rate', r.key, r.max_starts, r.period, u.in_use, b.waiting
FROM pgq.rate_limits AS r
CROSS JOIN LATERAL (
    SELECT count(*)::integer AS in_use FROM unnest(r.starts) AS s
    WHERE s > now() - make_interval(secs => r.period)
) AS u
CROSS JOIN LATERAL (
    SELECT count(*) AS waiting FROM pgq.jobs AS j
    WHERE j.rate_key = r.key AND j.state > 'cancelled'
) AS b
WHERE u.in_use > 0 OR b.waiting > 0;

COMMENT ON VIEW pgq.flow_limits IS
    'pgq: each concurrency limit in use (jobs holding a slot, or blocked) and each rate '
    'limit in use (starts in its period, or blocked jobs), with its use and the jobs '
    'waiting on it. Stable interface.';

COMMENT ON SCHEMA pgq IS 'pgq schema 13';
"""

# The view of 0012 (every rate key), its comments kept by CREATE OR REPLACE.
DOWNGRADE = """
CREATE OR REPLACE VIEW pgq.flow_limits AS
SELECT 'concurrency'::text AS kind, k.key, k.max_active AS max, NULL::float8 AS period_seconds,
       k.active AS in_use, b.waiting
FROM pgq.concurrency_keys AS k
CROSS JOIN LATERAL (
    SELECT count(*) AS waiting FROM pgq.jobs AS j
    WHERE j.concurrency_key = k.key AND j.state > 'cancelled'
) AS b
WHERE k.active > 0 OR b.waiting > 0
UNION ALL
SELECT 'rate', r.key, r.max_starts, r.period,
       (SELECT count(*) FROM unnest(r.starts) AS s
        WHERE s > now() - make_interval(secs => r.period))::integer,
       b.waiting
FROM pgq.rate_limits AS r
CROSS JOIN LATERAL (
    SELECT count(*) AS waiting FROM pgq.jobs AS j
    WHERE j.rate_key = r.key AND j.state > 'cancelled'
) AS b;

COMMENT ON VIEW pgq.flow_limits IS
    'pgq: each concurrency limit in use (jobs holding a slot, or blocked) and each rate '
    'limit, with its use and the jobs waiting on it. Stable interface.';

ALTER TABLE pgq.rate_limits DROP COLUMN synced;

COMMENT ON TABLE pgq.rate_limits IS
    'pgq: per rate key, its limit (max_starts per period seconds) and the starts of the '
    'last period, oldest first. Stable interface; written only by pgq.';

DROP INDEX pgq.jobs_concurrency_final_idx;

COMMENT ON SCHEMA pgq IS 'pgq schema 12';
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
