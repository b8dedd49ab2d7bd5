"""Dashboard views (queue_stats, recent_failures, running_jobs, throughput) and their indexes.

Revision ID: pgq_0002
Revises: pgq_0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "pgq_0002"
down_revision = "pgq_0001"
branch_labels = None
depends_on = None

# The views are a stable interface: Grafana, Metabase and psql users query them directly,
# so columns are only ever added, never renamed or removed. Durations are seconds
# (double precision) because every dashboard tool can plot and format a number.
#
# Every view must stay cheap on a table with millions of finished rows, so each one reads
# only a bounded slice through a partial index (docs/views.md shows the plans):
# - queued and running rows through the claim and running indexes (0001);
# - finished rows by a recent finished_at range through jobs_finished_stats_idx, which
#   carries queue and state so the counts are index-only scans;
# - failed rows per queue through jobs_failed_queue_idx (failed rows only, index-only);
# - jobs with errors through jobs_errors_idx: live ones (finished_at IS NULL) plus those
#   finished in the last 24 hours.
# None of the new indexes holds lease_expires_at, so heartbeats stay HOT updates, and each
# only receives rows whose state already changes (a non-HOT update anyway).
INDEXES = """
CREATE INDEX jobs_finished_stats_idx ON pgq.jobs (finished_at) INCLUDE (queue, state)
    WHERE state IN ('succeeded', 'failed', 'cancelled');
CREATE INDEX jobs_failed_queue_idx ON pgq.jobs (queue) WHERE state = 'failed';
CREATE INDEX jobs_errors_idx ON pgq.jobs (finished_at) WHERE errors <> '[]'::jsonb;
"""

# VIEWS and DROP_VIEWS are also run by 0004, which changes the types of columns the views
# read (PostgreSQL refuses that while a view depends on them): never edit them; a later
# change to a view belongs in a migration of its own.
VIEWS = """
CREATE VIEW pgq.queue_stats AS
WITH queued AS (
    SELECT queue,
           count(*) FILTER (WHERE run_at <= now()) AS ready,
           count(*) FILTER (WHERE run_at > now()) AS scheduled,
           min(run_at) FILTER (WHERE run_at <= now()) AS oldest_ready_at
    FROM pgq.jobs
    WHERE state = 'queued'
    GROUP BY queue
), running AS (
    SELECT queue, count(*) AS running
    FROM pgq.jobs
    WHERE state = 'running'
    GROUP BY queue
), failed AS (
    SELECT queue, count(*) AS failed
    FROM pgq.jobs
    WHERE state = 'failed'
    GROUP BY queue
), finished AS (
    SELECT queue,
           count(*) FILTER (WHERE state = 'succeeded') AS succeeded_last_hour,
           count(*) FILTER (WHERE state IN ('succeeded', 'failed')
                              AND finished_at > now() - interval '5 minutes') AS finished_last_5m
    FROM pgq.jobs
    WHERE state IN ('succeeded', 'failed', 'cancelled')
      AND finished_at > now() - interval '1 hour'
    GROUP BY queue
), queues AS (
    SELECT queue FROM queued
    UNION SELECT queue FROM running
    UNION SELECT queue FROM failed
    UNION SELECT queue FROM finished
)
SELECT q.queue,
       coalesce(queued.ready, 0) AS ready,
       coalesce(queued.scheduled, 0) AS scheduled,
       coalesce(running.running, 0) AS running,
       coalesce(failed.failed, 0) AS failed,
       coalesce(finished.succeeded_last_hour, 0) AS succeeded_last_hour,
       extract(epoch FROM now() - queued.oldest_ready_at)::float8 AS oldest_ready_seconds,
       coalesce(finished.finished_last_5m, 0) / 5.0::float8 AS per_minute_last_5m
FROM queues AS q
LEFT JOIN queued USING (queue)
LEFT JOIN running USING (queue)
LEFT JOIN failed USING (queue)
LEFT JOIN finished USING (queue)
ORDER BY q.queue;

COMMENT ON VIEW pgq.queue_stats IS
    'pgq: one row per queue that has queued, running or failed jobs, or jobs finished in '
    'the last hour. Stable interface.';
COMMENT ON COLUMN pgq.queue_stats.ready IS 'queued jobs with run_at <= now()';
COMMENT ON COLUMN pgq.queue_stats.scheduled IS
    'queued jobs with run_at > now() (scheduled, or waiting for a retry backoff)';
COMMENT ON COLUMN pgq.queue_stats.running IS 'jobs a worker holds now';
COMMENT ON COLUMN pgq.queue_stats.failed IS 'failed jobs still in the table (all ages)';
COMMENT ON COLUMN pgq.queue_stats.succeeded_last_hour IS
    'jobs that succeeded with finished_at > now() - 1 hour';
COMMENT ON COLUMN pgq.queue_stats.oldest_ready_seconds IS
    'seconds since the run_at of the oldest ready job; NULL when none is ready';
COMMENT ON COLUMN pgq.queue_stats.per_minute_last_5m IS
    'succeeded + failed jobs with finished_at > now() - 5 minutes, divided by 5';

CREATE VIEW pgq.recent_failures AS
SELECT j.id AS job_id,
       j.queue,
       j.task,
       j.state,
       (e.error ->> 'attempt')::int AS attempt,
       e.error ->> 'kind' AS kind,
       e.error ->> 'message' AS message,
       (e.error ->> 'at')::timestamptz AS at,
       e.error ->> 'worker_id' AS worker_id
FROM (
    -- Two index ranges rather than one OR, which the planner would turn into a scan of
    -- every job with errors: live jobs, then jobs finished in the window.
    SELECT id, queue, task, state, errors
    FROM pgq.jobs
    WHERE errors <> '[]'::jsonb AND finished_at IS NULL
    UNION ALL
    SELECT id, queue, task, state, errors
    FROM pgq.jobs
    WHERE errors <> '[]'::jsonb AND finished_at > now() - interval '24 hours'
) AS j
CROSS JOIN LATERAL jsonb_array_elements(j.errors) AS e(error)
WHERE (e.error ->> 'at')::timestamptz > now() - interval '24 hours'
ORDER BY at DESC, job_id DESC, attempt DESC;

COMMENT ON VIEW pgq.recent_failures IS
    'pgq: every error recorded in the last 24 hours, newest first: one row per failed '
    'attempt, whatever the job''s state is now. Stable interface.';
COMMENT ON COLUMN pgq.recent_failures.state IS
    'the job''s state now: queued (waiting for its retry), running, failed, succeeded '
    '(a later attempt worked) or cancelled';

CREATE VIEW pgq.running_jobs AS
SELECT id,
       queue,
       task,
       worker_id,
       attempts AS attempt,
       max_attempts,
       started_at,
       extract(epoch FROM now() - started_at)::float8 AS running_seconds,
       lease_expires_at,
       extract(epoch FROM lease_expires_at - now())::float8 AS lease_left_seconds,
       cancel_requested
FROM pgq.jobs
WHERE state = 'running'
ORDER BY started_at, id;

COMMENT ON VIEW pgq.running_jobs IS
    'pgq: the jobs workers hold now, longest running first. Stable interface.';
COMMENT ON COLUMN pgq.running_jobs.lease_left_seconds IS
    'seconds until the lease lapses; negative when it has lapsed and the reaper has not '
    'returned the job yet';

CREATE VIEW pgq.throughput AS
SELECT date_trunc('minute', finished_at) AS minute,
       queue,
       count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE state = 'failed') AS failed
FROM pgq.jobs
WHERE state IN ('succeeded', 'failed')
  AND finished_at > now() - interval '24 hours'
GROUP BY 1, 2
ORDER BY 1, 2;

COMMENT ON VIEW pgq.throughput IS
    'pgq: jobs finished per minute and queue over the last 24 hours; minutes without '
    'finished jobs have no row. Stable interface.';
"""

UPGRADE = (
    INDEXES
    + VIEWS
    + """
COMMENT ON SCHEMA pgq IS 'pgq schema 2';
"""
)

DROP_VIEWS = """
DROP VIEW pgq.throughput;
DROP VIEW pgq.running_jobs;
DROP VIEW pgq.recent_failures;
DROP VIEW pgq.queue_stats;
"""

DOWNGRADE = (
    DROP_VIEWS
    + """
DROP INDEX pgq.jobs_errors_idx;
DROP INDEX pgq.jobs_failed_queue_idx;
DROP INDEX pgq.jobs_finished_stats_idx;
COMMENT ON SCHEMA pgq IS 'pgq schema 1';
"""
)


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
