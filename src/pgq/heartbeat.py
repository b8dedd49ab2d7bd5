"""Keep the leases of running jobs alive, and hear about lost leases and cancels.

Every ``lease / 3`` one statement extends the lease of every job still running in this
worker, so a live worker never loses a job to the reaper even when one heartbeat fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pgq import store
from pgq.runner import ClaimedJob

log = logging.getLogger("pgq.worker")

Execute = Callable[[store.Statement], Awaitable[list[store.Row]]]


@dataclass(frozen=True, slots=True)
class Held:
    job: ClaimedJob
    lease: float


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    extended: int
    lost: list[int]  # ids whose lease is no longer ours
    cancel_requested: list[int]


class Heartbeat:
    def __init__(
        self,
        execute: Execute,
        held: Callable[[], Sequence[Held]],
        on_result: Callable[[HeartbeatResult], None],
        default_lease: float,
    ) -> None:
        self._execute = execute
        self._held = held
        self._on_result = on_result
        self._default_lease = default_lease

    def interval(self) -> float:
        leases = [h.lease for h in self._held()] or [self._default_lease]
        return min(leases) / 3

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval())
            try:
                await self.run_once()
            except Exception as exc:
                log.warning("heartbeat failed: %s", " ".join(str(exc).split()))

    async def run_once(self) -> HeartbeatResult:
        held = list(self._held())
        if not held:
            return HeartbeatResult(0, [], [])
        rows = await self._execute(
            store.extend_leases(
                ids=[h.job.id for h in held],
                tokens=[h.job.lease_token for h in held],
                leases=[h.lease for h in held],
            )
        )
        alive = {row[0] for row in rows}
        result = HeartbeatResult(
            extended=len(alive),
            lost=[h.job.id for h in held if h.job.id not in alive],
            cancel_requested=[row[0] for row in rows if row[1]],
        )
        self._on_result(result)
        return result
