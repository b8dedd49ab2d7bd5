"""Concurrency limits per key: the blocked state, the key on each job, a slot count per key.

Revision ID: pgq_0011
Revises: pgq_0010
Create Date: 2026-12-03
"""

from alembic import op

revision = "pgq_0011"
down_revision = "pgq_0010"
branch_labels = None
depends_on = None

# Why (docs/flow-control.md, docs/design-notes.md "Flow control"):
#
# - A job of a limited key is enqueued `blocked`, outside the claim index, and becomes
#   `queued` only when its key has a free slot: the claim never sees a job a limit holds
#   back (no churn), and 10,000 blocked jobs of one key cost the claim of another key
#   nothing (no head-of-line blocking). jobs_blocked_idx finds the next blocked job of a
#   key, oldest first.
# - pgq.concurrency_keys holds, per key, its limit and how many of its jobs hold a slot
#   (queued or running). Every statement that gives slots out or back locks the key's row
#   first, and a row lock always reads the newest row: two workers finishing jobs of one
#   key at the same instant take turns on it, and the second sees the first's count.
# - pgq.concurrency_wakeups is insert-only for enqueue: a limited enqueue adds one row,
#   never updates a shared one, so the caller's transaction never holds a lock a worker
#   waits for. A worker's promotion pass takes the rows and fills the keys' free slots.
# - jobs_unique_key_idx covers blocked jobs too: a unique key allows one live job, blocked
#   or not. ON CONFLICT still names `state IN ('queued', 'running')`, which implies the new
#   predicate, so the plain enqueue statements infer the new index unchanged.
#
# PostgreSQL refuses to use an enum value in the transaction that added it, and pgq's
# migrations run in one transaction (0006's `waiting` too, on an upgrade from before it).
# So 'blocked' goes last, after 'cancelled', and the predicates say `state > 'cancelled'`,
# naming only a value committed long ago: the same rows, and the planner proves that a
# query's `state = 'blocked'` implies it. Last, it is outside 0006's ranges (`waiting` is
# the one value between 'queued' and 'running'; live workflow jobs are `< 'succeeded'`);
# a job in a workflow never has a concurrency key, so it is never blocked. Adding the
# column is a catalog change (no default, no rewrite); the new indexes are small. Each
# predicate tests its column first: PostgreSQL evaluates every partial index's predicate
# on every new row version, and a plain job (no key) then skips the enum comparison.
UPGRADE = """
ALTER TYPE pgq.job_state ADD VALUE 'blocked' AFTER 'cancelled';

ALTER TABLE pgq.jobs ADD COLUMN concurrency_key text;

CREATE INDEX jobs_blocked_idx ON pgq.jobs (concurrency_key, id)
    WHERE concurrency_key IS NOT NULL AND state > 'cancelled';

CREATE UNIQUE INDEX jobs_unique_key_live_idx ON pgq.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND (state IN ('queued', 'running') OR state > 'cancelled');
DROP INDEX pgq.jobs_unique_key_idx;
ALTER INDEX pgq.jobs_unique_key_live_idx RENAME TO jobs_unique_key_idx;

CREATE TABLE pgq.concurrency_keys (
    key        text PRIMARY KEY,
    max_active integer NOT NULL CHECK (max_active >= 1),
    active     integer NOT NULL DEFAULT 0 CHECK (active >= 0),
    waiting    integer NOT NULL DEFAULT 0 CHECK (waiting >= 0)
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01,
        autovacuum_vacuum_threshold = 100, autovacuum_vacuum_cost_delay = 0);

COMMENT ON TABLE pgq.concurrency_keys IS
    'pgq: per concurrency key, its limit (max_active), the jobs holding a slot (queued or '
    'running: active) and the blocked jobs seen at the last count (waiting, a hint). '
    'Stable interface; written only by pgq.';

CREATE TABLE pgq.concurrency_wakeups (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key        text NOT NULL,
    max_active integer NOT NULL CHECK (max_active >= 1)
) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 100,
        autovacuum_vacuum_cost_delay = 0);

COMMENT ON SCHEMA pgq IS 'pgq schema 11';
"""

# Blocked jobs become queued (each ran under its key's limit only while the code enforced
# it), and the type loses 'blocked' the only way PostgreSQL allows: a new type with the
# other values (whatever later migrations added), which rewrites the table and its
# indexes, with the table locked. The indexes and views that read the state go first and
# come back from their own definitions (and comments), read from the catalog.
DOWNGRADE = """
UPDATE pgq.jobs SET state = 'queued' WHERE state = 'blocked';

DROP TABLE pgq.concurrency_wakeups;
DROP TABLE pgq.concurrency_keys;
DROP INDEX pgq.jobs_blocked_idx;
ALTER TABLE pgq.jobs DROP COLUMN concurrency_key;

CREATE UNIQUE INDEX jobs_unique_key_live_idx ON pgq.jobs (unique_key)
    WHERE state IN ('queued', 'running') AND unique_key IS NOT NULL;
DROP INDEX pgq.jobs_unique_key_idx;
ALTER INDEX pgq.jobs_unique_key_live_idx RENAME TO jobs_unique_key_idx;

DO $$
DECLARE
    labels text;
    statements text[];
    statement text;
BEGIN
    SELECT string_agg(quote_literal(enumlabel), ', ' ORDER BY enumsortorder) INTO labels
    FROM pg_enum
    WHERE enumtypid = 'pgq.job_state'::regtype AND enumlabel <> 'blocked';
    -- What to create again afterwards: the views (in creation order) with their comments,
    -- then the state indexes.
    SELECT array_agg(sql ORDER BY rank, oid, sub) INTO statements FROM (
        SELECT 1 AS rank, c.oid, 0 AS sub,
               format('CREATE VIEW pgq.%I AS %s', c.relname, pg_get_viewdef(c.oid)) AS sql
        FROM pg_class AS c
        WHERE c.relnamespace = 'pgq'::regnamespace AND c.relkind = 'v'
        UNION ALL
        SELECT 2, c.oid, d.objsubid,
               CASE WHEN d.objsubid = 0
                    THEN format('COMMENT ON VIEW pgq.%I IS %L', c.relname, d.description)
                    ELSE format('COMMENT ON COLUMN pgq.%I.%I IS %L', c.relname, a.attname,
                                d.description) END
        FROM pg_class AS c
        JOIN pg_description AS d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass
        LEFT JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = d.objsubid
        WHERE c.relnamespace = 'pgq'::regnamespace AND c.relkind = 'v'
        UNION ALL
        SELECT 3, i.indexrelid, 0, pg_get_indexdef(i.indexrelid)
        FROM pg_index AS i
        WHERE i.indrelid = 'pgq.jobs'::regclass
          AND pg_get_indexdef(i.indexrelid) LIKE '%state%'
    ) AS todo;
    EXECUTE (SELECT string_agg(format('DROP VIEW IF EXISTS pgq.%I CASCADE', relname), '; ')
             FROM pg_class WHERE relnamespace = 'pgq'::regnamespace AND relkind = 'v');
    EXECUTE (SELECT string_agg(format('DROP INDEX pgq.%I', c.relname), '; ')
             FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
             WHERE i.indrelid = 'pgq.jobs'::regclass
               AND pg_get_indexdef(i.indexrelid) LIKE '%state%');
    ALTER TYPE pgq.job_state RENAME TO job_state_with_blocked;
    EXECUTE format('CREATE TYPE pgq.job_state AS ENUM (%s)', labels);
    ALTER TABLE pgq.jobs
        ALTER COLUMN state DROP DEFAULT,
        ALTER COLUMN state TYPE pgq.job_state USING state::text::pgq.job_state,
        ALTER COLUMN state SET DEFAULT 'queued';
    DROP TYPE pgq.job_state_with_blocked;
    FOREACH statement IN ARRAY statements LOOP
        EXECUTE statement;
    END LOOP;
END
$$;

COMMENT ON SCHEMA pgq IS 'pgq schema 10';
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
