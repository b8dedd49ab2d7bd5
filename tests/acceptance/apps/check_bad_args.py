"""`pgq check` must fail on this app: the schedule's args do not bind to the function."""

import pgq


@pgq.periodic(cron="0 * * * *", args={"kind": "hourly"}, name="hourly-report")
@pgq.task(name="check.hourly")
def hourly(report_kind: str) -> None:
    pass
