"""The flow-control benchmark's concurrency-limited task: a no-op under a per-key limit of 2.
Alone in its module, so the limited drain's worker runs no rate-limited claim
(benchmarks/apps/rated.py has the rate-limited task)."""

from typing import Any

import pgq

LIMITED = "bench.limited"


@pgq.task(name=LIMITED, concurrency_limit=2, concurrency_key=lambda args: f"k{args['key']}")
def limited(**_args: Any) -> None:
    return None
