"""The benchmark's pgq task: does nothing, so a drain measures the queue, not the work."""

from typing import Any

import pgq

NOOP = "bench.noop"


@pgq.task(name=NOOP)
def noop(**_args: Any) -> None:
    return None
