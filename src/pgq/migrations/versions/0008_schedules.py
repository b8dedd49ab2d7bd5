"""pgq.schedules: one row per recurring job, whose last tick advances by compare-and-set in
the same statement that inserts the tick's job; and the pgq.schedule_status view.

Revision ID: pgq_0008
Revises: pgq_0007
Create Date: 2026-12-03
"""

from alembic import op

revision = "pgq_0008"
down_revision = "pgq_0007"
branch_labels = None
depends_on = None

# Why a table of its own, and nothing on pgq.jobs: a job made by a schedule is an ordinary
# job (its run_at is its tick), so the claim and the finish pay nothing for schedules. The
# row holds the definition the workers agreed on (definition_hash: only a worker whose
# definition matches may tick it, so two versions of an app during a rolling deploy never
# both enqueue "the same" tick at two different times), and the state that makes a tick
# happen once: last_tick_at, advanced by compare-and-set (sql/schedule_tick_many.sql).
#
# A schedule no longer in the code is marked inactive, never deleted: its history (last
# tick, last job, last success) stays to be seen. active_since is when it last became
# active: ticks before it are never caught up.
#
# last_success_at and last_outcome are written when the next tick replaces last_job_id; the
# view reads the last job itself for anything newer, so it is current without a statement
# in the worker's finish path. overdue_since is set by the one worker that reports a
# schedule overdue (sql/schedule_overdue_mark.sql), so it is logged once per episode.
UPGRADE = """
CREATE TABLE pgq.schedules (
    name             text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 255),
    task             pgq.task_name NOT NULL,
    queue            pgq.queue_name NOT NULL,
    expression       text NOT NULL,
    timezone         text NOT NULL DEFAULT 'UTC',
    args             jsonb NOT NULL DEFAULT '{}'::jsonb,
    priority         smallint NOT NULL DEFAULT 0,
    max_attempts     pgq.attempt_limit NOT NULL DEFAULT 20,
    catch_up         integer NOT NULL DEFAULT 1 CHECK (catch_up >= 1),
    overlap          text NOT NULL DEFAULT 'skip' CHECK (overlap IN ('skip', 'allow')),
    grace            interval NOT NULL,
    definition_hash  text NOT NULL,
    active           boolean NOT NULL DEFAULT true,
    active_since     timestamptz NOT NULL DEFAULT now(),
    last_tick_at     timestamptz,
    next_tick_at     timestamptz,
    last_job_id      bigint,
    last_enqueued_at timestamptz,
    last_skipped_at  timestamptz,
    skipped_ticks    bigint NOT NULL DEFAULT 0,
    last_outcome     text,
    last_outcome_at  timestamptz,
    last_success_at  timestamptz,
    overdue_since    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The dashboard's and `pgq schedules`' view: one row per schedule, with its last job's
-- state read through the primary key (never a scan of pgq.jobs).
CREATE VIEW pgq.schedule_status AS
SELECT s.name,
       s.task,
       s.queue,
       s.expression,
       s.timezone,
       s.active,
       s.next_tick_at,
       s.last_tick_at,
       s.last_job_id,
       s.last_enqueued_at,
       coalesce(j.state::text, s.last_outcome) AS last_outcome,
       CASE WHEN j.id IS NOT NULL THEN coalesce(j.finished_at, j.started_at, j.created_at)
            ELSE s.last_outcome_at END AS last_outcome_at,
       greatest(s.last_success_at,
                CASE WHEN j.state = 'succeeded' THEN j.finished_at END) AS last_success_at,
       s.last_skipped_at,
       s.skipped_ticks,
       s.grace,
       s.active AND now() > coalesce(
           greatest(s.last_success_at, CASE WHEN j.state = 'succeeded' THEN j.finished_at END),
           s.active_since) + s.grace AS overdue,
       s.overdue_since,
       s.catch_up,
       s.overlap,
       s.created_at,
       s.updated_at
FROM pgq.schedules AS s
LEFT JOIN pgq.jobs AS j ON j.id = s.last_job_id;
"""

DOWNGRADE = """
DROP VIEW pgq.schedule_status;
DROP TABLE pgq.schedules;
"""


def upgrade() -> None:
    op.execute(UPGRADE + "\nCOMMENT ON SCHEMA pgq IS 'pgq schema 8';\n")


def downgrade() -> None:
    op.execute(DOWNGRADE + "\nCOMMENT ON SCHEMA pgq IS 'pgq schema 7';\n")
