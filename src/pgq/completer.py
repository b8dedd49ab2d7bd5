"""Writing attempts' outcomes in batches, fenced by lease token.

Outcomes queue up while a write is in flight, and the next write takes all of them: under
load one statement finishes many jobs, when idle each outcome is written at once. A batch
that cannot be written is retried; if it still fails, its jobs' leases simply lapse and the
reaper gives them back. Nothing is ever dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pgq import store
from pgq.runner import ClaimedJob, Outcome

log = logging.getLogger("pgq.worker")

WRITE_ATTEMPTS_DEFAULT = 5
WRITE_RETRY_DELAY_DEFAULT = 0.2  # seconds, doubled after each failed write
BATCH_MAX_DEFAULT = 1000

Execute = Callable[[store.Statement], Awaitable[list[store.Row]]]


@dataclass(frozen=True, slots=True)
class Finished:
    job: ClaimedJob
    outcome: Outcome


class Completer:
    """Collects outcomes and writes them with ``store.finish_jobs`` through ``execute``."""

    def __init__(
        self,
        execute: Execute,
        batch_max: int = BATCH_MAX_DEFAULT,
        on_lost: Callable[[ClaimedJob, Outcome], None] | None = None,
        on_promoted: Callable[[], None] | None = None,
    ) -> None:
        self._execute = execute
        self._on_lost = on_lost
        # Called after outcomes of limited jobs are written: their finish may have made
        # blocked jobs queued, which the worker can claim at once.
        self._on_promoted = on_promoted
        self._batch_max = batch_max
        self._pending: list[Finished] = []
        self._ready = asyncio.Event()
        self._closing = False
        self._idle = asyncio.Event()  # set while nothing is pending or being written
        self._idle.set()
        self.lost = 0  # outcomes not applied because the lease was no longer ours
        self.given_up = 0  # outcomes that could not be written at all (leases will lapse)

    def submit(self, job: ClaimedJob, outcome: Outcome) -> None:
        self._pending.append(Finished(job, outcome))
        self._idle.clear()
        self._ready.set()

    async def wait_idle(self) -> None:
        """Return once every outcome submitted so far has been written (or given up on)."""
        await self._idle.wait()

    def close(self) -> None:
        """Ask ``run`` to return once everything submitted has been written."""
        self._closing = True
        self._ready.set()

    async def run(self) -> None:
        """Write batches as outcomes arrive, until ``close`` and nothing is pending."""
        while not (self._closing and not self._pending):
            await self._ready.wait()
            await self.run_once()

    async def run_once(self) -> int:
        """Write everything pending (in batches of at most ``batch_max``); return the count."""
        written = 0
        while self._pending:
            batch = self._pending[: self._batch_max]
            del self._pending[: self._batch_max]
            for part, statement in _statements(batch):
                await self._write_with_retries(part, statement)
            written += len(batch)
        if not self._closing:
            self._ready.clear()
        self._idle.set()
        return written

    async def _write_with_retries(self, batch: list[Finished], statement: store.Statement) -> None:
        delay = WRITE_RETRY_DELAY_DEFAULT
        for attempt in range(1, WRITE_ATTEMPTS_DEFAULT + 1):
            try:
                applied = await self._execute(statement)
            except Exception as exc:
                log.warning(
                    "writing %d outcomes failed (try %d of %d): %s",
                    len(batch),
                    attempt,
                    WRITE_ATTEMPTS_DEFAULT,
                    exc,
                )
                await asyncio.sleep(delay)
                delay *= 2
                continue
            self._report(batch, {row[0] for row in applied})
            if self._on_promoted is not None and batch[0].job.limited:
                self._on_promoted()
            return
        self.given_up += len(batch)
        log.error(
            "gave up writing %d outcomes (job ids %s); their leases will lapse and the "
            "reaper will run them again",
            len(batch),
            [f.job.id for f in batch][:20],
        )

    def _report(self, batch: list[Finished], applied: set[int]) -> None:
        for item in batch:
            if item.job.id not in applied:
                self.lost += 1
                if self._on_lost is not None:
                    self._on_lost(item.job, item.outcome)
                log.warning(
                    "lease lost: job %d was taken back before its outcome %r was "
                    "written; nothing was changed",
                    item.job.id,
                    item.outcome.kind,
                    extra={
                        "job_id": item.job.id,
                        "task": item.job.task,
                        "queue": item.job.queue,
                        "attempt": item.job.attempt,
                    },
                )


def _statements(batch: list[Finished]) -> list[tuple[list[Finished], store.Statement]]:
    """The statements that write ``batch``. Jobs of a concurrency-limited key (``limited``,
    from the claim) go through the finish that hands their slots on (and stores their
    results); jobs that others wait for (has_dependents) through the finish that also
    releases their dependents (with their results); jobs that returned a value through the
    finish that stores it; every other job through the plain finish, which stays exactly
    what it was without limits, workflows or results."""
    if not any(
        f.job.limited or f.job.has_dependents or f.outcome.result is not None for f in batch
    ):
        return [(batch, _statement(batch))]
    limited, parents, with_result, plain = [], [], [], []
    for f in batch:
        if f.job.limited:
            limited.append(f)
        elif f.job.has_dependents:
            parents.append(f)
        elif f.outcome.result is not None:
            with_result.append(f)
        else:
            plain.append(f)
    groups = []
    if plain:
        groups.append((plain, _statement(plain)))
    if with_result:
        groups.append((with_result, _results_statement(with_result)))
    if parents:
        groups.append((parents, _releasing_statement(parents)))
    if limited:
        groups.append((limited, _limited_statement(limited)))
    return groups


def _limited_statement(batch: list[Finished]) -> store.Statement:
    return store.finish_limited_jobs(
        ids=[f.job.id for f in batch],
        tokens=[f.job.lease_token for f in batch],
        outcomes=[f.outcome.kind for f in batch],
        delays=[f.outcome.delay for f in batch],
        errors=[f.outcome.error_json() for f in batch],
        results=[f.outcome.result for f in batch],
    )


def _results_statement(batch: list[Finished]) -> store.Statement:
    return store.finish_jobs_with_results(
        ids=[f.job.id for f in batch],
        tokens=[f.job.lease_token for f in batch],
        results=[f.outcome.result or "null" for f in batch],
    )


def _releasing_statement(batch: list[Finished]) -> store.Statement:
    return store.finish_and_release_jobs(
        ids=[f.job.id for f in batch],
        tokens=[f.job.lease_token for f in batch],
        outcomes=[f.outcome.kind for f in batch],
        delays=[f.outcome.delay for f in batch],
        errors=[f.outcome.error_json() for f in batch],
        results=[f.outcome.result for f in batch],
    )


def _statement(batch: list[Finished]) -> store.Statement:
    return store.finish_jobs(
        ids=[f.job.id for f in batch],
        tokens=[f.job.lease_token for f in batch],
        outcomes=[f.outcome.kind for f in batch],
        delays=[f.outcome.delay for f in batch],
        errors=[f.outcome.error_json() for f in batch],
    )
