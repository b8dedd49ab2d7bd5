"""Stored results: a task's JSON return value, and a flag that asks for a notification
when the job finishes (pgq.wait).

Revision ID: pgq_0007
Revises: pgq_0006
Create Date: 2026-12-03
"""

from alembic import op

revision = "pgq_0007"
down_revision = "pgq_0006"
branch_labels = None
depends_on = None

# - result: what a task returned, as JSON (NULL: it returned None, or it has not
#   succeeded). It lives on the job's row, so it is kept as long as the job and pruned
#   with it; no index reads it.
# - waited: set by pgq.wait on a queued or running job it LISTENs for. A finish of a job
#   with the flag sends pg_notify('pgq_finished', id); a finish of any other job sends
#   nothing, so plain jobs pay no NOTIFY (which takes a global lock at commit).
#
# Both columns are nullable without a default: PostgreSQL adds them to the catalog only,
# without rewriting the table or touching an index, whatever the table holds. Neither is
# in an index, so heartbeats stay HOT updates.
UPGRADE = """
ALTER TABLE pgq.jobs
    ADD COLUMN result jsonb,
    ADD COLUMN waited boolean;

COMMENT ON SCHEMA pgq IS 'pgq schema 7';
"""

DOWNGRADE = """
ALTER TABLE pgq.jobs
    DROP COLUMN result,
    DROP COLUMN waited;

COMMENT ON SCHEMA pgq IS 'pgq schema 6';
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
