"""`pgq check` must fail on this app: a cron expression with a minute of 61."""

import pgq


@pgq.periodic(cron="61 * * * *", name="nightly-export")
@pgq.task(name="check.export")
def export() -> None:
    pass
