"""Paused queues: a small table workers read to leave a queue alone.

Revision ID: pgq_0005
Revises: pgq_0004
Create Date: 2026-12-03
"""

from alembic import op

revision = "pgq_0005"
down_revision = "pgq_0004"
branch_labels = None
depends_on = None

# Why a table and not a flag on each job: pausing a queue of a million jobs must not write a
# million rows, and a pause must outlive the jobs (a queue paused while empty stays paused
# for the jobs enqueued after). Workers read it once per poll (and on the NOTIFY `pgq pause`
# sends) and leave the paused queues out of their claim, so the claim statement and its
# index are unchanged: jobs of queues nobody paused pay nothing.
UPGRADE = """
CREATE TABLE pgq.queue_pauses (
    queue     pgq.queue_name PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now(),
    reason    text
);

COMMENT ON TABLE pgq.queue_pauses IS
    'pgq: queues no worker claims from (pgq pause / pgq resume). Stable interface.';

COMMENT ON SCHEMA pgq IS 'pgq schema 5';
"""

DOWNGRADE = """
DROP TABLE pgq.queue_pauses;

COMMENT ON SCHEMA pgq IS 'pgq schema 4';
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
