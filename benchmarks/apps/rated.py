"""The flow-control benchmark's rate-limited task: a no-op under one shared rate limit of
100 starts a second."""

from typing import Any

import pgq

RATED = "bench.rated"
RATE = 100  # starts per second


@pgq.task(name=RATED, rate_limit=f"{RATE}/s", rate_key="bench")
def rated(**_args: Any) -> None:
    return None
