"""Workflows: jobs that wait on other jobs (chains, groups with a callback).

Revision ID: pgq_0006
Revises: pgq_0005
Create Date: 2026-12-03
"""

from alembic import context, op

revision = "pgq_0006"
down_revision = "pgq_0005"
branch_labels = None
depends_on = None

# What it adds (docs/workflows.md explains the model):
#
# - A state `waiting`, sorted between `queued` and `running`: a job whose parents have not
#   all finished. It is outside the claim index (state = 'queued'), so waiting jobs cost a
#   claim nothing and are never claimed.
# - pgq.job_dependencies (parent_id, child_id): one row per edge, written once when the
#   workflow is enqueued and never changed. `always` marks an edge that counts as
#   satisfied whatever the parent's final state (a callback asked to run on failure too).
#   No foreign keys: their triggers would run on every DELETE of a plain job by the pruner.
# - On pgq.jobs: workflow_id (the id of the workflow's first job; NULL for a plain job),
#   parents_pending (how many parents have not yet released the job: the counter two
#   parents finishing at once decrement under the child's row lock, so exactly one of them
#   sees it reach 0) and has_dependents (the claim returns it, so the worker sends only
#   those jobs' outcomes through job_finish_release_many.sql; plain jobs keep
#   job_finish_many.sql). Adding them rewrites nothing: NULL columns and a constant default.
#
# PostgreSQL refuses to use an enum value in the transaction that added it ("unsafe use of
# new value"), and this migration runs in one transaction with the others (and in a host
# app's alembic, in whatever transaction it uses). So nothing below names 'waiting': the
# index predicates and the views compare with the neighbouring committed values instead
# (waiting is the one value > 'queued' and < 'running'), or compare state::text. The
# planner proves `state = 'waiting'` implies those ranges, so later queries that name it
# use the indexes.
#
# Indexes hold workflow jobs only (workflow_id IS NOT NULL), so a plain job is in none of
# them: jobs_workflow_idx finds a workflow's members (pgq workflow ID), and
# jobs_workflow_live_idx the unfinished ones (the workflow_progress view, the waiting
# column of queue_stats) without reading finished history.
UPGRADE = """
ALTER TYPE pgq.job_state ADD VALUE 'waiting' BEFORE 'running';

ALTER TABLE pgq.jobs
    ADD COLUMN workflow_id bigint,
    ADD COLUMN parents_pending integer,
    ADD COLUMN has_dependents boolean NOT NULL DEFAULT false;

CREATE TABLE pgq.job_dependencies (
    parent_id bigint NOT NULL,
    child_id  bigint NOT NULL,
    always    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX job_dependencies_child_idx ON pgq.job_dependencies (child_id);

CREATE INDEX jobs_workflow_idx ON pgq.jobs (workflow_id) WHERE workflow_id IS NOT NULL;
CREATE INDEX jobs_workflow_live_idx ON pgq.jobs (workflow_id) INCLUDE (queue, state)
    WHERE workflow_id IS NOT NULL AND state < 'succeeded';
"""

# queue_stats gains a last column, waiting (CREATE OR REPLACE VIEW may only add columns at
# the end, which is also the rule of this stable interface).
VIEWS = """
CREATE OR REPLACE VIEW pgq.queue_stats AS
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
), waiting AS (
    -- state > 'queued' AND state < 'running' is state = 'waiting' (see the migration).
    SELECT queue, count(*) AS waiting
    FROM pgq.jobs
    WHERE workflow_id IS NOT NULL AND state > 'queued' AND state < 'running'
    GROUP BY queue
), queues AS (
    SELECT queue FROM queued
    UNION SELECT queue FROM running
    UNION SELECT queue FROM failed
    UNION SELECT queue FROM finished
    UNION SELECT queue FROM waiting
)
SELECT q.queue,
       coalesce(queued.ready, 0) AS ready,
       coalesce(queued.scheduled, 0) AS scheduled,
       coalesce(running.running, 0) AS running,
       coalesce(failed.failed, 0) AS failed,
       coalesce(finished.succeeded_last_hour, 0) AS succeeded_last_hour,
       extract(epoch FROM now() - queued.oldest_ready_at)::float8 AS oldest_ready_seconds,
       coalesce(finished.finished_last_5m, 0) / 5.0::float8 AS per_minute_last_5m,
       coalesce(waiting.waiting, 0) AS waiting
FROM queues AS q
LEFT JOIN queued USING (queue)
LEFT JOIN running USING (queue)
LEFT JOIN failed USING (queue)
LEFT JOIN finished USING (queue)
LEFT JOIN waiting USING (queue)
ORDER BY q.queue;

COMMENT ON COLUMN pgq.queue_stats.waiting IS
    'jobs waiting for their parents in a workflow (never claimed until released)';

CREATE VIEW pgq.workflow_progress AS
SELECT j.workflow_id,
       count(*) AS total,
       count(*) FILTER (WHERE j.state::text = 'waiting') AS waiting,
       count(*) FILTER (WHERE j.state::text = 'queued') AS queued,
       count(*) FILTER (WHERE j.state::text = 'running') AS running,
       count(*) FILTER (WHERE j.state::text = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE j.state::text = 'failed') AS failed,
       count(*) FILTER (WHERE j.state::text = 'cancelled') AS cancelled,
       min(j.created_at) AS created_at
FROM pgq.jobs AS j
WHERE j.workflow_id IN (
    SELECT workflow_id FROM pgq.jobs
    WHERE workflow_id IS NOT NULL AND state < 'succeeded'
)
GROUP BY j.workflow_id
ORDER BY j.workflow_id;

COMMENT ON VIEW pgq.workflow_progress IS
    'pgq: one row per workflow that still has a waiting, queued or running member, with '
    'its members counted by state. Stable interface.';
"""

# Back to schema 5. PostgreSQL cannot drop an enum value, so the type is made again
# without it, which rewrites the table and rebuilds every index (a second or so per
# million rows, with the table locked). Jobs still waiting can never run without this
# schema: they end as cancelled.
DOWNGRADE = """
DROP VIEW pgq.workflow_progress;

UPDATE pgq.jobs
SET state = 'cancelled', finished_at = now(), parents_pending = NULL
WHERE state = 'waiting';

DROP TABLE pgq.job_dependencies;
DROP INDEX pgq.jobs_workflow_live_idx;
DROP INDEX pgq.jobs_workflow_idx;
ALTER TABLE pgq.jobs
    DROP COLUMN workflow_id,
    DROP COLUMN parents_pending,
    DROP COLUMN has_dependents;

DROP INDEX pgq.jobs_claim_idx;
DROP INDEX pgq.jobs_running_idx;
DROP INDEX pgq.jobs_unique_key_idx;
DROP INDEX pgq.jobs_finished_stats_idx;
DROP INDEX pgq.jobs_failed_queue_idx;

ALTER TYPE pgq.job_state RENAME TO job_state_0006;
CREATE TYPE pgq.job_state AS ENUM ('queued', 'running', 'succeeded', 'failed', 'cancelled');
ALTER TABLE pgq.jobs
    ALTER COLUMN state DROP DEFAULT,
    ALTER COLUMN state TYPE pgq.job_state USING state::text::pgq.job_state,
    ALTER COLUMN state SET DEFAULT 'queued';
DROP TYPE pgq.job_state_0006;

CREATE INDEX jobs_claim_idx ON pgq.jobs (queue, priority DESC, run_at, id)
    WHERE state = 'queued';
CREATE INDEX jobs_running_idx ON pgq.jobs (id) WHERE state = 'running';
CREATE UNIQUE INDEX jobs_unique_key_idx ON pgq.jobs (unique_key)
    WHERE state IN ('queued', 'running') AND unique_key IS NOT NULL;
CREATE INDEX jobs_finished_stats_idx ON pgq.jobs (finished_at) INCLUDE (queue, state)
    WHERE state IN ('succeeded', 'failed', 'cancelled');
CREATE INDEX jobs_failed_queue_idx ON pgq.jobs (queue) WHERE state = 'failed';
"""


def _views() -> tuple[str, str]:
    """0002's DROP_VIEWS and VIEWS, from the module alembic loaded for that revision."""
    module = context.script.get_revision("pgq_0002").module
    return module.DROP_VIEWS, module.VIEWS


def upgrade() -> None:
    op.execute(UPGRADE + VIEWS + "\nCOMMENT ON SCHEMA pgq IS 'pgq schema 6';\n")


def downgrade() -> None:
    drop_views, views = _views()
    op.execute(_downgrade_sql(drop_views, views))


def _downgrade_sql(drop_views: str, views: str) -> str:
    # The views read the state column, whose type changes: dropped first, then made again
    # from 0002's text (queue_stats without its waiting column, as schemas 2 to 5 had it).
    return drop_views + DOWNGRADE + views + "\nCOMMENT ON SCHEMA pgq IS 'pgq schema 5';\n"
