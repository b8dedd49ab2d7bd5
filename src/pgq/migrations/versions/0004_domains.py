"""Column rules as domains instead of table CHECK constraints: the same rules, checked only
where a value is written.

Revision ID: pgq_0004
Revises: pgq_0003
Create Date: 2026-11-30
"""

from alembic import context, op

revision = "pgq_0004"
down_revision = "pgq_0003"
branch_labels = None
depends_on = None

# Why (`perf record` on the backend of 8,000 one-job transactions, BEGIN / pgq's INSERT /
# COMMIT, figures in benchmarks/README.md):
#
# - PostgreSQL reads a table's CHECK constraints back from their stored text, plans them
#   and builds their executor state for every INSERT and UPDATE statement, and evaluates
#   them on every new row version. The four on pgq.jobs took 7 % of the backend's time in
#   a one-job transaction (28 us), most of it parsing the stored expressions, and ran again
#   in every claim, finish and heartbeat, none of which changes a checked column.
# - A domain's constraints are parsed and planned once per backend and cached, and are
#   checked only when a value is assigned to the column: at enqueue, and when attempts
#   grows at claim. Statement time of the same transaction: 112 us before, 89 us after.
#
# The rules and their effect are unchanged: a row written by hand with a bad queue name,
# task name or attempt count is refused with a check_violation naming the rule.
#
# The columns change type with their domains still empty, which PostgreSQL does without
# rewriting the table; it does rebuild the three partial indexes that hold queue (it never
# reuses a partial index across a type change). With 1,000,000 rows that took 1.1-1.3 s
# here, with the table locked: run it when the queue is quiet. The rules are added right
# after, in the same transaction, as NOT VALID: every existing row already passed the same
# rule as a table CHECK, and validating would read the whole table again under that lock,
# to prove nothing new. New and changed values are checked all the same.
#
# PostgreSQL refuses to change the type of a column a view reads, so the dashboard views
# are dropped and created again from 0002's text, unchanged.
UPGRADE = """
ALTER TABLE pgq.jobs
    DROP CONSTRAINT jobs_queue_valid,
    DROP CONSTRAINT jobs_task_valid,
    DROP CONSTRAINT jobs_max_attempts_positive,
    DROP CONSTRAINT jobs_attempts_nonnegative;

CREATE DOMAIN pgq.queue_name AS text;
CREATE DOMAIN pgq.task_name AS text;
CREATE DOMAIN pgq.attempt_count AS integer;
CREATE DOMAIN pgq.attempt_limit AS integer;

ALTER TABLE pgq.jobs
    ALTER COLUMN queue TYPE pgq.queue_name,
    ALTER COLUMN task TYPE pgq.task_name,
    ALTER COLUMN attempts TYPE pgq.attempt_count,
    ALTER COLUMN max_attempts TYPE pgq.attempt_limit;

ALTER DOMAIN pgq.queue_name ADD CONSTRAINT queue_name_valid
    CHECK (octet_length(VALUE) BETWEEN 1 AND 63 AND VALUE !~ '[^A-Za-z0-9_.:-]') NOT VALID;
ALTER DOMAIN pgq.task_name ADD CONSTRAINT task_name_valid
    CHECK (length(VALUE) BETWEEN 1 AND 255) NOT VALID;
ALTER DOMAIN pgq.attempt_count ADD CONSTRAINT attempt_count_nonnegative
    CHECK (VALUE >= 0) NOT VALID;
ALTER DOMAIN pgq.attempt_limit ADD CONSTRAINT attempt_limit_positive
    CHECK (VALUE >= 1) NOT VALID;
"""

# Back to 0003's plain columns and table CHECKs (which read the table once to validate).
DOWNGRADE = """
ALTER TABLE pgq.jobs
    ALTER COLUMN queue TYPE text,
    ALTER COLUMN task TYPE text,
    ALTER COLUMN attempts TYPE integer,
    ALTER COLUMN max_attempts TYPE integer;

DROP DOMAIN pgq.queue_name;
DROP DOMAIN pgq.task_name;
DROP DOMAIN pgq.attempt_count;
DROP DOMAIN pgq.attempt_limit;

ALTER TABLE pgq.jobs
    ADD CONSTRAINT jobs_queue_valid
        CHECK (octet_length(queue) BETWEEN 1 AND 63 AND queue !~ '[^A-Za-z0-9_.:-]'),
    ADD CONSTRAINT jobs_task_valid CHECK (length(task) BETWEEN 1 AND 255),
    ADD CONSTRAINT jobs_max_attempts_positive CHECK (max_attempts >= 1),
    ADD CONSTRAINT jobs_attempts_nonnegative CHECK (attempts >= 0);
"""


def _views() -> tuple[str, str]:
    """0002's DROP_VIEWS and VIEWS, from the module alembic loaded for that revision."""
    module = context.script.get_revision("pgq_0002").module
    return module.DROP_VIEWS, module.VIEWS


def upgrade() -> None:
    drop_views, views = _views()
    op.execute(drop_views + UPGRADE + views + "\nCOMMENT ON SCHEMA pgq IS 'pgq schema 4';\n")


def downgrade() -> None:
    drop_views, views = _views()
    op.execute(drop_views + DOWNGRADE + views + "\nCOMMENT ON SCHEMA pgq IS 'pgq schema 3';\n")
