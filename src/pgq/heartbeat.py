"""Keep the leases of running jobs alive, and hear about lost leases and cancels.

One statement extends the lease of every job this worker holds. A beat is due a third of
the shortest lease held after the previous one, so a live worker never loses a job to the
reaper even when one beat fails. The schedule follows the jobs held: when jobs are
claimed with a shorter lease than the heartbeat is sleeping for, ``Heartbeat.claimed``
brings the next beat forward. (Sleeping for an interval chosen when the heartbeat went to
sleep let a job claimed with a 3 s lease wait for the idle worker's 10 s beat; the reaper
requeued it meanwhile and the same worker started a second attempt beside the first.)

Given a ``presence`` (the worker's row in pgq.workers, pgq.worker_registry), the same
statement marks the worker seen, and a beat comes at least every ``BEAT_INTERVAL_MAX``
seconds, idle or not, so the registry can tell a live worker from a dead one within a
fixed bound whatever the leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pgq import store
from pgq.runner import ClaimedJob

log = logging.getLogger("pgq.worker")

Execute = Callable[[store.Statement], Awaitable[list[store.Row]]]
BEATS_PER_LEASE = 3
# Seconds: the longest time between two beats, whatever the leases (a 300 s lease alone
# would otherwise beat every 100 s). pgq.worker_registry's stale bound is three of these.
BEAT_INTERVAL_MAX = 10.0


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
        presence: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        """``presence()``, when given, returns the worker's registry row at each beat (the
        ``worker`` of ``store.extend_leases``); the heartbeat then beats even when idle."""
        self._execute = execute
        self._presence = presence
        self._held = held
        self._on_result = on_result
        self._default_lease = default_lease
        self._due: float | None = None  # loop time of the next beat, once run() started
        self._rescheduled = asyncio.Event()

    def interval(self) -> float:
        """Seconds from one beat to the next: a third of the shortest lease held, at most
        ``BEAT_INTERVAL_MAX``."""
        leases = [h.lease for h in self._held()] or [self._default_lease]
        return min(min(leases) / BEATS_PER_LEASE, BEAT_INTERVAL_MAX)

    def claimed(self, lease: float) -> None:
        """Jobs were just claimed with ``lease`` seconds: beat before a third of it passes.

        Call it on the loop as soon as the claim returns; the leases started in the
        database a moment before."""
        if self._due is None:
            return  # not running yet: run() starts from the jobs held by then
        due = asyncio.get_running_loop().time() + lease / BEATS_PER_LEASE
        if due < self._due:
            self._due = due
            self._rescheduled.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self.interval()
        while True:
            await self._sleep_until_due(loop)
            try:
                await self.run_once()
            except Exception as exc:
                log.warning("heartbeat failed: %s", " ".join(str(exc).split()))
            self._due = loop.time() + self.interval()

    async def _sleep_until_due(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._due is not None
        while (left := self._due - loop.time()) > 0:
            self._rescheduled.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._rescheduled.wait()

    async def run_once(self) -> HeartbeatResult:
        held = list(self._held())
        worker = self._presence() if self._presence is not None else None
        if not held and worker is None:
            return HeartbeatResult(0, [], [])
        rows = await self._execute(
            store.extend_leases(
                ids=[h.job.id for h in held],
                tokens=[h.job.lease_token for h in held],
                leases=[h.lease for h in held],
                worker=worker,
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
