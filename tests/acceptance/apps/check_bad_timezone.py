"""`pgq check` must fail on this app: a time zone that does not exist."""

import pgq


@pgq.periodic(cron="0 9 * * 1-5", timezone="Europe/Pariss", name="morning-digest")
@pgq.task(name="check.digest")
def digest() -> None:
    pass
