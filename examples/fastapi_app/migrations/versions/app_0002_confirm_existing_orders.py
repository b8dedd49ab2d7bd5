"""enqueue a confirmation for every order that has none: the depends_on pattern

A data migration that writes into pgq.jobs, so it depends on pgq's branch (see "A
revision that needs pgq's tables" in docs/host-apps.md). Made with:
    alembic revision -m "confirm existing orders" --head app@head --depends-on pgq@head
which writes the id of pgq's head at the time; this one names pgq_0001, the revision that
created pgq.jobs, which is all it needs. `alembic upgrade app@head` on a fresh database
then applies pgq's branch up to there first.

Revision ID: app_0002
Revises: app_0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "app_0002"
down_revision: str | Sequence[str] | None = "app_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "pgq_0001"


def upgrade() -> None:
    # One statement, in the migration's transaction: the jobs exist once it commits.
    op.execute(
        """
        INSERT INTO pgq.jobs (queue, task, args)
        SELECT 'orders', 'orderapp.confirm_order', jsonb_build_object('order_id', o.id)
        FROM orders AS o
        WHERE NOT EXISTS (SELECT 1 FROM order_confirmations AS c WHERE c.order_id = o.id)
        """
    )


def downgrade() -> None:
    pass  # the jobs ran, or will: nothing to take back
