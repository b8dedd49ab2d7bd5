"""Rate limits per key: the key on each job, and the recent starts of each key.

Revision ID: pgq_0012
Revises: pgq_0011
Create Date: 2026-12-03
"""

from alembic import op

revision = "pgq_0012"
down_revision = "pgq_0011"
branch_labels = None
depends_on = None

# Why (docs/flow-control.md, docs/design-notes.md "Flow control"):
#
# - A job of a rate-limited key waits `blocked` (outside the claim index, as a job over a
#   concurrency limit does) until a worker's rated claim (job_claim_rated.sql) admits and
#   claims it in one statement: its start is the claim, in database time.
# - pgq.rate_limits keeps, per key, its limit (max_starts per period seconds) and the
#   starts of the last period, at most max_starts of them. The rated claim locks the row
#   (SKIP LOCKED: a key another worker is admitting right now is left to it), reads the
#   newest starts, admits as many jobs as the window has room for, and writes the starts
#   back in the same statement: over any window of the period, starts never exceed the
#   limit, whatever the number of workers.
# - jobs_rate_blocked_idx finds a key's waiting jobs, oldest first. `state > 'cancelled'`
#   is `blocked` (see pgq_0011).
UPGRADE = """
ALTER TABLE pgq.jobs ADD COLUMN rate_key text;

CREATE INDEX jobs_rate_blocked_idx ON pgq.jobs (rate_key, id)
    WHERE rate_key IS NOT NULL AND state > 'cancelled';

CREATE TABLE pgq.rate_limits (
    key        text PRIMARY KEY,
    max_starts integer NOT NULL CHECK (max_starts >= 1),
    period     float8 NOT NULL CHECK (period > 0),
    starts     timestamptz[] NOT NULL DEFAULT '{}'
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.01,
        autovacuum_vacuum_threshold = 100, autovacuum_vacuum_cost_delay = 0);

COMMENT ON TABLE pgq.rate_limits IS
    'pgq: per rate key, its limit (max_starts per period seconds) and the starts of the '
    'last period, oldest first. Stable interface; written only by pgq.';

-- Every limit with its use and the jobs waiting on it: concurrency keys holding a slot or
-- with blocked jobs, and rate keys with starts in their window or waiting jobs. Each count
-- reads one key's blocked jobs through its index (state > 'cancelled' is blocked).
CREATE VIEW pgq.flow_limits AS
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
COMMENT ON COLUMN pgq.flow_limits.max IS
    'concurrency: jobs of the key that may hold a slot at once; rate: starts per period';
COMMENT ON COLUMN pgq.flow_limits.in_use IS
    'concurrency: jobs holding a slot (queued or running); rate: starts in the last period';
COMMENT ON COLUMN pgq.flow_limits.waiting IS 'jobs of the key waiting blocked';

COMMENT ON SCHEMA pgq IS 'pgq schema 12';
"""

# Blocked jobs of a rate key become queued: without this schema nothing admits them.
DOWNGRADE = """
DROP VIEW pgq.flow_limits;
UPDATE pgq.jobs SET state = 'queued' WHERE state > 'cancelled' AND rate_key IS NOT NULL;
DROP TABLE pgq.rate_limits;
DROP INDEX pgq.jobs_rate_blocked_idx;
ALTER TABLE pgq.jobs DROP COLUMN rate_key;

COMMENT ON SCHEMA pgq IS 'pgq schema 11';
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
