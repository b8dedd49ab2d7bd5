"""The app's pgq tasks. Run them with ``pgq work --app orderapp.jobs``."""

from __future__ import annotations

import pgq
from orderapp.db import sessions
from orderapp.models import Confirmation


@pgq.task(name="orderapp.confirm_order", queue="orders", max_attempts=5, pass_context=True)
async def confirm_order(ctx: pgq.JobContext, order_id: int) -> None:
    """Record the order's confirmation and complete the job in one transaction: if the
    worker dies before the commit, neither happened and the job runs again; after it, both
    did. So each committed order is confirmed once, though pgq runs jobs at least once."""
    async with sessions()() as session, session.begin():
        session.add(Confirmation(order_id=order_id, job_id=ctx.id, attempt=ctx.attempt))
        await session.flush()
        await ctx.complete_in(session)
