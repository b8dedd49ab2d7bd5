"""The flow-control benchmark's tasks: no-ops under a per-key concurrency limit of 2, and
under one shared rate limit of 100 a second."""

from typing import Any

import pgq

LIMITED = "bench.limited"
RATED = "bench.rated"
RATE = 100  # starts per second


@pgq.task(name=LIMITED, concurrency_limit=2, concurrency_key=lambda args: f"k{args['key']}")
def limited(**_args: Any) -> None:
    return None


@pgq.task(name=RATED, rate_limit=f"{RATE}/s", rate_key="bench")
def rated(**_args: Any) -> None:
    return None
