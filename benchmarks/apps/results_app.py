"""The wait scenario's task: runs for a few milliseconds (so pgq.wait really waits for it)
and returns a small result."""

import time

import pgq

SLEEP_RETURN = "bench.sleep_return"


@pgq.task(name=SLEEP_RETURN)
def sleep_return(ms: float) -> dict[str, float]:
    time.sleep(ms / 1000)
    return {"slept_ms": ms}
