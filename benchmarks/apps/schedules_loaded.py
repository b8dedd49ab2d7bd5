"""The benchmark's no-op task plus 1,000 schedules that are never due during a drain
(yearly), so a drain measures what loaded schedules cost a worker standing by."""

from typing import Any

import pgq
from benchmarks.apps.noop import noop  # noqa: F401  (registers bench.noop)

SCHEDULES = 1000


@pgq.task(name="bench.tick")  # the drain's queue: one queue to claim from in both variants
def tick(**_args: Any) -> None:
    return None


for i in range(SCHEDULES):
    pgq.schedule(f"bench-yearly-{i:04d}", task=tick, cron="0 0 1 1 *", args={"i": i})
