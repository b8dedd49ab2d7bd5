"""The worker registry: pgq.workers, and the worker_status and orphaned_jobs views.

Revision ID: pgq_0009
Revises: pgq_0008
Create Date: 2026-12-03
"""

from alembic import op

revision = "pgq_0009"
down_revision = "pgq_0008"
branch_labels = None
depends_on = None

# Every `pgq work` process (every pgq.worker.Worker) upserts its row at start and at each
# heartbeat, and deletes it on a clean exit; the reaper deletes rows unseen for longer than
# their stale_after_seconds (a worker that died). Workers write the bound on their row, so
# the views and the reaper read one number the code chose (docs/workers.md says which).
#
# The table holds one row per live worker, so it stays small; the heartbeat's upsert
# changes only last_seen_at and running, no indexed column, so with room left on each page
# (fillfactor 50) it is a HOT update. Autovacuum's defaults would wait for 50 dead rows
# (a day of beats for a small fleet is thousands): vacuum after 100 changed rows instead.
#
# worker_status and orphaned_jobs read pgq.jobs only through the partial indexes of live
# rows (queued: jobs_claim_idx, running: jobs_running_idx), never the finished history
# (docs/views.md shows their plans on a table with 1,000,000 finished rows).
UPGRADE = """
CREATE TABLE pgq.workers (
    id                  text PRIMARY KEY,
    hostname            text NOT NULL,
    pid                 integer NOT NULL,
    version             text NOT NULL,
    queues              text[] NOT NULL,
    tasks               jsonb NOT NULL,
    concurrency         integer NOT NULL,
    started_at          timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz NOT NULL DEFAULT now(),
    running             integer NOT NULL DEFAULT 0,
    stale_after_seconds double precision NOT NULL
) WITH (
    fillfactor = 50,
    autovacuum_vacuum_threshold = 100,
    autovacuum_vacuum_scale_factor = 0
);

COMMENT ON TABLE pgq.workers IS
    'pgq: one row per running worker, written by the workers themselves. Stable interface.';
COMMENT ON COLUMN pgq.workers.id IS 'the worker_id it writes on the jobs it holds';
COMMENT ON COLUMN pgq.workers.queues IS 'the queues it claims from';
COMMENT ON COLUMN pgq.workers.tasks IS
    'the tasks registered in it: {task name: the queue the task enqueues to by default}';
COMMENT ON COLUMN pgq.workers.running IS 'jobs running in it at its last heartbeat';
COMMENT ON COLUMN pgq.workers.stale_after_seconds IS
    'unseen for longer than this, the worker counts as dead and the reaper removes the row';

CREATE VIEW pgq.worker_status AS
WITH held AS (
    SELECT worker_id, count(*) AS held
    FROM pgq.jobs
    WHERE state = 'running'
    GROUP BY worker_id
)
SELECT w.id,
       w.hostname,
       w.pid,
       w.version,
       w.queues,
       ARRAY(SELECT jsonb_object_keys(w.tasks) ORDER BY 1) AS tasks,
       w.concurrency,
       w.running,
       coalesce(held.held, 0) AS held,
       w.started_at,
       w.last_seen_at,
       extract(epoch FROM now() - w.last_seen_at)::float8 AS last_seen_seconds,
       w.last_seen_at >= now() - make_interval(secs => w.stale_after_seconds) AS alive
FROM pgq.workers AS w
LEFT JOIN held ON held.worker_id = w.id
ORDER BY w.hostname, w.started_at, w.id;

COMMENT ON VIEW pgq.worker_status IS
    'pgq: every registered worker, alive or not yet removed by the reaper. Stable interface.';
COMMENT ON COLUMN pgq.worker_status.running IS 'jobs running in it at its last heartbeat';
COMMENT ON COLUMN pgq.worker_status.held IS
    'jobs in state running under its worker_id now (running, or claimed ahead of a slot)';
COMMENT ON COLUMN pgq.worker_status.alive IS
    'seen within its stale_after_seconds; false: it stopped heartbeating (died, or cut off)';

CREATE VIEW pgq.orphaned_jobs AS
WITH queued AS (
    SELECT queue::text AS queue,
           task::text AS task,
           count(*) AS queued,
           count(*) FILTER (WHERE run_at <= now()) AS ready,
           min(created_at) AS oldest_created_at
    FROM pgq.jobs
    WHERE state = 'queued'
    GROUP BY queue, task
)
SELECT q.queue,
       q.task,
       q.queued,
       q.ready,
       q.oldest_created_at,
       extract(epoch FROM now() - q.oldest_created_at)::float8 AS oldest_seconds
FROM queued AS q
-- Per (queue, task) group, not per job: the groups are few, the queued jobs may be many.
WHERE NOT EXISTS (
    SELECT 1
    FROM pgq.workers AS w
    WHERE w.last_seen_at >= now() - make_interval(secs => w.stale_after_seconds)
      AND q.queue = ANY (w.queues)
      AND w.tasks ? q.task
)
ORDER BY q.queue, q.task;

COMMENT ON VIEW pgq.orphaned_jobs IS
    'pgq: queued jobs that no live worker serves (none claims from the queue with the task '
    'registered), per queue and task. They wait until such a worker starts. Stable interface.';
COMMENT ON COLUMN pgq.orphaned_jobs.queued IS 'queued jobs, due now or later';
COMMENT ON COLUMN pgq.orphaned_jobs.ready IS 'of those, jobs due now (run_at <= now())';
COMMENT ON COLUMN pgq.orphaned_jobs.oldest_seconds IS 'seconds since the oldest was enqueued';

COMMENT ON SCHEMA pgq IS 'pgq schema 9';
"""

DOWNGRADE = """
DROP VIEW pgq.orphaned_jobs;
DROP VIEW pgq.worker_status;
DROP TABLE pgq.workers;
COMMENT ON SCHEMA pgq IS 'pgq schema 8';
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
