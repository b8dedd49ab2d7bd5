"""A sound app for `pgq check`: a task and two schedules whose args bind."""

from datetime import timedelta

import pgq


@pgq.periodic(cron="*/15 * * * *", timezone="Europe/Paris", args={"kind": "quarter-hour"})
@pgq.task(name="check.report", queue="reports")
def report(kind: str) -> None:
    pass


@pgq.task(name="check.cleanup", pass_context=True)
def cleanup(ctx: pgq.JobContext, days: int = 7) -> None:
    pass


pgq.schedule("cleanup", task=cleanup, every=timedelta(minutes=5))
