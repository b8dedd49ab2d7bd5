"""pgq.jobs: the job table, its state enum, partial indexes and storage settings.

Revision ID: pgq_0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op

from pgq.migrate import warn_foreign_revisions

revision = "pgq_0001"
down_revision = None
branch_labels = ("pgq",)
depends_on = None

# A host app's alembic imports this file in every command that loads pgq's branch: the one
# place pgq runs in all of them. A host revision written into this folder by a plain
# `alembic revision` (pgq's head was the only head) is warned about here, before a
# reinstall of pgq deletes it.
warn_foreign_revisions()

# Why these settings: a queue table turns over its rows all day. Dead tuples in the claim
# index are what slow a queue as it ages, so autovacuum runs after 1% of the table (or
# 500 rows) changes instead of PostgreSQL's 20%, without cost delay. fillfactor 80 leaves
# room on each page so heartbeats (which touch no indexed column) stay HOT updates.
UPGRADE = """
CREATE SCHEMA IF NOT EXISTS pgq;

CREATE TYPE pgq.job_state AS ENUM ('queued', 'running', 'succeeded', 'failed', 'cancelled');

CREATE TABLE pgq.jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue            text NOT NULL,
    task             text NOT NULL,
    args             jsonb NOT NULL DEFAULT '{}'::jsonb,
    state            pgq.job_state NOT NULL DEFAULT 'queued',
    priority         smallint NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 20,
    lease_token      bigint NOT NULL DEFAULT 0,
    worker_id        text,
    lease_expires_at timestamptz,
    started_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    errors           jsonb NOT NULL DEFAULT '[]'::jsonb,
    unique_key       text,
    cancel_requested boolean NOT NULL DEFAULT false,
    CONSTRAINT jobs_queue_valid CHECK (queue ~ '^[A-Za-z0-9_.:-]{1,63}$'),
    CONSTRAINT jobs_task_valid CHECK (length(task) BETWEEN 1 AND 255),
    CONSTRAINT jobs_max_attempts_positive CHECK (max_attempts >= 1),
    CONSTRAINT jobs_attempts_nonnegative CHECK (attempts >= 0)
) WITH (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 500,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

-- Claim: only queued rows, in claim order.
CREATE INDEX jobs_claim_idx ON pgq.jobs (queue, priority DESC, run_at, id)
    WHERE state = 'queued';
-- Reaper: the running set is small; lease_expires_at stays out of every index so
-- heartbeats are HOT updates.
CREATE INDEX jobs_running_idx ON pgq.jobs (id) WHERE state = 'running';
-- Pruning finished rows by age.
CREATE INDEX jobs_finished_idx ON pgq.jobs (finished_at)
    WHERE state IN ('succeeded', 'failed', 'cancelled');
-- At most one live job per unique key.
CREATE UNIQUE INDEX jobs_unique_key_idx ON pgq.jobs (unique_key)
    WHERE state IN ('queued', 'running');

COMMENT ON SCHEMA pgq IS 'pgq schema 1';
"""

DOWNGRADE = """
DROP TABLE pgq.jobs;
DROP TYPE pgq.job_state;
COMMENT ON SCHEMA pgq IS NULL;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    # The schema itself stays: it holds pgq's own version table.
    op.execute(DOWNGRADE)
