"""The worker: claim due jobs, run them, write their outcomes; stop gracefully.

One event loop drives everything. Sync tasks run in a thread pool of ``concurrency``
threads, ``async def`` tasks on the loop. The worker holds a fixed set of connections
whatever its concurrency: one to claim, one to write outcomes and heartbeats, one to
LISTEN, one for the reaper thread, and one for the scheduler thread when the app defines
recurring jobs (pgq.periodic). Behind PgBouncer in transaction pooling mode
(``pgbouncer``, docs/pgbouncer.md) the claim, writer and reaper connections prepare no
statement and set nothing for the session, and the worker LISTENs only on a direct URL
(``listen_url``); without one it polls, more often by default.

Wake-ups: a NOTIFY for one of our queues, a slot freeing up after a full claim, a retry
this worker scheduled coming due, or the poll interval (the fallback, and the way jobs
scheduled by others are found). A worker that was woken keeps claiming until a claim
comes back short.

Claim-ahead: while jobs are short, the worker claims more jobs than it has free slots and
starts them the moment a slot frees, so claiming costs one round trip per many jobs
instead of one per job or two. How many it claims ahead follows a moving average of job
durations, so that a claimed-ahead job waits ``CLAIM_AHEAD_WAIT`` seconds on average at
most (and never more than ``CLAIM_AHEAD_MAX`` jobs); jobs that take that long or longer
are claimed only for free slots, so no job waits behind a slow one here while another
worker is idle. Claimed-ahead jobs hold leases like running ones (heartbeats keep them)
and are given back at once on shutdown. Claimed sync jobs go to the threads' queue at
once, where each waits for a free thread; async ones wait here for a free slot. A job
cancelled or lost while it waits is taken back and never started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from secrets import token_hex
from typing import Any

import psycopg

from pgq import limits, reaper, scheduler, store
from pgq.children import (
    CHILD_TERM_WAIT,
    POOL_DEFAULT,
    POOLS,
    Child,
    ChildConfig,
    ProcessPool,
    outcome_of_child,
    start_method,
)
from pgq.completer import Completer
from pgq.db import ReconnectingConnection, describe_error, pgbouncer_mode, redact
from pgq.enqueue import NOTIFY_INTERVAL_DEFAULT
from pgq.errors import ArgsError, PgqError
from pgq.events import WorkerEvents
from pgq.heartbeat import Heartbeat, HeartbeatResult, Held
from pgq.jobtx import Database
from pgq.listener import Listener
from pgq.periodic import SCHEDULES, Schedule
from pgq.registry import LEASE_DEFAULT, REGISTRY, Registry, Task
from pgq.runner import (
    BAD_ARGUMENTS,
    PLAIN_RETURN,
    ClaimedJob,
    JobContext,
    Outcome,
    Returned,
    error_entry,
    execute,
    outcome_of_call,
    settle,
)
from pgq.threads import Done, Slots, ThreadPool
from pgq.worker_registry import STALE_AFTER, Presence

log = logging.getLogger("pgq.worker")

CONCURRENCY_DEFAULT = 10
POLL_INTERVAL_DEFAULT = 1.0
# Without LISTEN (PgBouncer mode and no direct URL) the poll is the only wake-up, and a job
# waits half of it on average; an idle worker then claims four times a second.
POLL_INTERVAL_POLL_ONLY_DEFAULT = 0.25
GRACE_DEFAULT = 30.0
RELEASE_WAIT = 5.0  # seconds given to cancelled async tasks to unwind at shutdown
REAPER_JOIN_TIMEOUT = 10.0  # seconds to wait for the reaper thread's pass to end at shutdown
CLAIM_AHEAD_WAIT = 0.05  # seconds a claimed-ahead job may wait on average for a slot
CLAIM_AHEAD_MAX = 400  # jobs
LINGER = 2 * NOTIFY_INTERVAL_DEFAULT  # seconds: a notified worker claims again this soon
DURATION_SMOOTHING = 0.1  # weight of the newest job in the moving average of durations
REGISTRY_TIMEOUT = 5.0  # seconds for entering pgq.workers at start, and leaving it at exit
UNBLOCK_BATCH = limits.UNBLOCK_BATCH_DEFAULT  # wakeups one promotion pass takes
UNBLOCK_PASSES_MAX = 4  # passes before a claim; more wakeups wait for the next claim
RATE_WAIT_MIN = 0.01  # seconds an idle worker waits at least for a rate key's next slot


@dataclass
class WorkerConfig:
    """How a worker runs; every field has the default ``pgq work`` uses."""

    database_url: str
    queues: list[str] | None = None  # None: every queue a registered task uses
    concurrency: int = CONCURRENCY_DEFAULT
    lease: float = LEASE_DEFAULT
    # None: POLL_INTERVAL_DEFAULT with LISTEN, POLL_INTERVAL_POLL_ONLY_DEFAULT without.
    poll_interval: float | None = None
    grace: float = GRACE_DEFAULT
    burst: bool = False
    run_reaper: bool = True
    # Enqueue the due ticks of the app's schedules (pgq.periodic) from a thread of this
    # process; any number of workers may, each tick is enqueued once.
    run_scheduler: bool = True
    # At start, mark inactive the schedules in the database that the app does not define.
    deactivate_missing_schedules: bool = True
    # database_url goes through PgBouncer in transaction pooling mode; None: $PGQ_PGBOUNCER.
    pgbouncer: bool | None = None
    # Where to LISTEN. None: database_url, except behind PgBouncer, where LISTEN would hold
    # a pooled server connection that PgBouncer hands to other clients: no LISTEN then.
    listen_url: str | None = None
    # "thread": sync tasks run in this process's threads; "process": in child processes
    # (children.py) that import ``apps``, which a timeout or cancel can stop.
    pool: str = POOL_DEFAULT
    apps: list[str] = field(default_factory=list)
    max_jobs_per_child: int | None = None  # process pool: replace a child after N jobs
    max_child_memory: float | None = None  # process pool: ... once its RSS passes this, MB
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{token_hex(2)}"
    )


@dataclass
class WorkerStats:
    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    snoozed: int = 0
    cancelled: int = 0
    released: int = 0
    lost: int = 0  # attempts whose lease was lost: their outcomes were not written

    def __str__(self) -> str:
        return ", ".join(f"{name} {value}" for name, value in vars(self).items())


@dataclass(eq=False, slots=True)
class _Running:
    job: ClaimedJob
    ctx: JobContext
    task: Task
    lease: float
    started: float  # loop time
    handle: asyncio.Task[None] | None = None  # async tasks: what runs them on the loop
    begun: bool = False  # sync tasks: a thread began the attempt (under _start_lock)
    child: Child | None = None  # process pool: the child running it (under _start_lock)
    lost: bool = False  # the lease is no longer ours: not held, its outcome not written


class Worker:
    """Runs registered tasks until stopped. ``Worker(config).run()`` blocks; see ``pgq work``."""

    def __init__(
        self,
        config: WorkerConfig,
        registry: Registry = REGISTRY,
        events: WorkerEvents | None = None,
        schedules: list[Schedule] | None = None,
    ) -> None:
        if len(registry) == 0:
            raise ValueError("no task is registered; import the modules that define tasks")
        if config.pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, not {config.pool!r}")
        if config.pool == "process" and not config.apps:
            raise ValueError("the process pool needs apps: the modules its children import")
        self.config = config
        self.registry = registry
        self.stats = WorkerStats()
        self.events = events or WorkerEvents()
        self.queues = config.queues or registry.queues()
        # The global schedules go with the global registry; a worker given a registry of
        # its own (tests, embedding) runs only the schedules it is given.
        if schedules is None:
            schedules = list(SCHEDULES) if registry is REGISTRY else []
        self.schedules = schedules
        self.pgbouncer = pgbouncer_mode() if config.pgbouncer is None else config.pgbouncer
        self.listen_url = config.listen_url or (None if self.pgbouncer else config.database_url)
        self.poll_interval = config.poll_interval or (
            POLL_INTERVAL_DEFAULT if self.listen_url else POLL_INTERVAL_POLL_ONLY_DEFAULT
        )
        # Where a task's own transaction connects (ctx.transaction()).
        self._database = Database(config.database_url, self.pgbouncer)
        # Each task's lease: its own, else the worker's. The claim takes them as two arrays.
        self._lease_by_task = {t.name: t.lease or config.lease for t in registry}
        self._names = list(self._lease_by_task)
        self._leases = list(self._lease_by_task.values())
        # Each task's rate limit, or None: the rated claim gives a key with due jobs and no
        # row (the pruner deleted it) the limit of its task (job_claim_rated.sql).
        rate_by_task = {t.name: t.rate_limit for t in registry}
        self._rates = [rate_by_task[name] for name in self._names]
        # Jobs handed to a thread (started or waiting in the threads' queue) or to the loop.
        self._running: dict[int, _Running] = {}
        self._ready: deque[ClaimedJob] = deque()  # async jobs claimed ahead, waiting for a slot
        kinds = {task.is_async for task in registry}
        # Threads and the loop share the concurrency limit only when both run jobs.
        self._slots = Slots(config.concurrency) if len(kinds) == 2 else None
        # A sync job is started by a thread or taken back by the loop (cancelled, lost),
        # never both: each side decides under this lock.
        self._start_lock = threading.Lock()
        self._avg_duration: float | None = None  # seconds, moving average
        self._linger_until = 0.0  # loop time before which a short claim is retried once
        # Paused queues (pgq.limits), read at most once per poll interval, and at once after
        # a pause or resume notified us; the claim leaves them out.
        self._paused: frozenset[str] = frozenset()
        self._pauses_read_at: float | None = None  # loop time; None: read before claiming
        # With a task under a concurrency limit, each claim is preceded by a promotion pass
        # that fills free slots with blocked jobs; a worker without one never runs it.
        self._runs_limited = any(t.concurrency_limit is not None for t in registry)
        self._unblock_due = True  # a pass before the next claim (see _unblock_wanted)
        self._unblocked_at = 0.0  # loop time of the last pass
        # Rate-limited tasks: each claim first runs the rated claim. The dict holds the
        # limits of the keys known before any job (synced at the first claim); None: no
        # task here has a rate limit, and the rated claim never runs.
        rated = [t for t in registry if t.rate_limit is not None]
        self._rated_keys: dict[str, tuple[int, float]] | None = (
            {
                t.name if t.rate_key is None else t.rate_key: t.rate_limit
                for t in rated
                if t.rate_limit is not None and not callable(t.rate_key)
            }
            if rated
            else None
        )
        self._rate_due: float | None = None  # loop time a rate key may admit a job again
        self._stopping = threading.Event()  # set from a signal handler or another thread
        self._signals = 0
        self._abandoned_threads = False
        # Sync tasks run in child processes: the process pool, when there are sync tasks.
        self._in_children = config.pool == "process" and False in kinds
        self._run_sync = self._run_in_child if self._in_children else self._run_in_thread

    # --- public entry points ----------------------------------------------------------------

    def run(self) -> WorkerStats:
        """Run until SIGTERM/SIGINT (or, in burst mode, until nothing is due)."""
        return asyncio.run(self.run_async(install_signal_handlers=True))

    def stop(self) -> None:
        """Ask the worker to stop gracefully; safe to call from any thread."""
        self._stopping.set()
        loop = getattr(self, "_loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(self._wake_all)

    async def run_async(self, install_signal_handlers: bool = False) -> WorkerStats:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._threads = self._start_pool()
        # Generic plans are a session setting: never on a pooled connection (there psycopg
        # prepares nothing either, so every claim is planned afresh; benchmarks/pgbouncer).
        self._claim_db = ReconnectingConnection(
            self.config.database_url,
            "claim",
            setup=None if self.pgbouncer else store.use_generic_plans(),
            pgbouncer=self.pgbouncer,
        )
        self._write_db = ReconnectingConnection(
            self.config.database_url, "writer", pgbouncer=self.pgbouncer
        )
        self._completer = Completer(
            self._write_db.execute, on_lost=self._outcome_lost, on_promoted=self._wake_all
        )
        presence = Presence.of(
            self.config.worker_id, self.queues, self.registry, self.config.concurrency
        )
        self._heartbeat = Heartbeat(
            self._write_db.execute,
            self._held,
            self._on_heartbeat,
            self.config.lease,
            presence=lambda: presence.row(running=self._running_now()),
        )
        self._listener = (
            Listener(self.listen_url, set(self.queues), self._notified, self._pauses_changed)
            if self.listen_url
            else None
        )
        if install_signal_handlers:
            self._install_signal_handlers()
        await self._register()
        background = self._start_background()
        reaper_thread = self._start_reaper()
        scheduler_thread = self._start_scheduler()
        log.info(
            "worker %s started: queues %s, %d tasks, concurrency %d%s%s%s",
            self.config.worker_id,
            ",".join(self.queues),
            len(self._names),
            self.config.concurrency,
            f", sync tasks in child processes ({start_method()})" if self._in_children else "",
            " (burst)" if self.config.burst else "",
            self._wakeup_description(),
        )
        try:
            await self._claim_loop()
        finally:
            await self._shutdown(background)
            for thread in (reaper_thread, scheduler_thread):
                if thread is not None:
                    await asyncio.to_thread(thread.join, REAPER_JOIN_TIMEOUT)
        return self.stats

    def _start_pool(self) -> ThreadPool:
        size, on_done = self.config.concurrency, self._on_threads_done
        if not self._in_children:
            return ThreadPool(self._loop, size, on_done)
        config = ChildConfig(
            apps=tuple(self.config.apps),
            worker_id=self.config.worker_id,
            max_jobs=self.config.max_jobs_per_child,
            max_memory_mb=self.config.max_child_memory,
            log_level=logging.getLogger("pgq").getEffectiveLevel(),
            database=self._database,
        )
        return ProcessPool(self._loop, size, on_done, config)

    # --- claiming ---------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            room = self._room()
            if room < self._claim_threshold():
                await self._wait(self._slot_freed)
                continue
            self._wakeup.clear()
            claimed = await self._claim(room)
            if claimed is None:
                continue  # the claim failed and already waited
            if len(claimed) == room:
                continue  # a full claim: more may be waiting
            if self.config.burst:
                if await self._burst_done(claimed):
                    return
                continue
            await self._wait(self._wakeup, self._idle_timeout())

    def _wakeup_description(self) -> str:
        mode = "; PgBouncer mode" if self.pgbouncer else ""
        if self.config.burst:
            return mode
        if self._listener is None:
            return f"{mode}, no LISTEN: polling every {self.poll_interval:g}s"
        where = f" on {redact(self.listen_url or '')}" if self.pgbouncer else ""
        return f"{mode}, LISTEN{where}, polling every {self.poll_interval:g}s"

    def _notified(self) -> None:
        self._unblock_due = True  # a limited enqueue notifies too: its key may have room
        # Enqueuers skip the NOTIFY of a job that follows another on the same queue within
        # NOTIFY_INTERVAL_DEFAULT (enqueue.py); one more claim shortly after finds it.
        self._linger_until = self._loop.time() + LINGER
        self._wakeup.set()

    def _idle_timeout(self) -> float:
        now = self._loop.time()
        linger, self._linger_until = self._linger_until - now, 0.0
        timeout = min(self.poll_interval, linger) if linger > 0 else self.poll_interval
        if self._rate_due is not None:  # a rate-limited job may start then
            timeout = min(timeout, max(RATE_WAIT_MIN, self._rate_due - now))
            self._rate_due = None
        return timeout

    async def _burst_done(self, claimed: list[ClaimedJob]) -> bool:
        """Burst mode ends when nothing runs, every outcome is written, and nothing is due."""
        if claimed:
            return False
        if self._running or self._ready:
            await self._wait(self._slot_freed)
            return False
        # An outcome still in the completer may be a retry that is due at once.
        await self._completer.wait_idle()
        self._unblock_due = True  # and a wakeup may wait for a promotion pass
        if await self._claim(self._room()) != []:
            return False
        if self._rate_due is not None:
            # Jobs wait for their rate key's window: due, only not yet. Wait for the slot.
            await asyncio.sleep(max(RATE_WAIT_MIN, self._rate_due - self._loop.time()))
            self._rate_due = None
            return False
        return True

    def _claim_ahead(self) -> int:
        avg = self._avg_duration
        if avg is None or avg >= CLAIM_AHEAD_WAIT:
            return 0
        # A job ahead of n others waits about n * avg / concurrency for a slot.
        affordable = self.config.concurrency * CLAIM_AHEAD_WAIT / max(avg, 1e-6)
        return min(CLAIM_AHEAD_MAX, int(affordable))

    def _room(self) -> int:
        capacity = self.config.concurrency + self._claim_ahead()
        return capacity - len(self._running) - len(self._ready)

    def _claim_threshold(self) -> int:
        # Claiming ahead, wait until half the buffer is used so each claim takes a batch;
        # the rest of the buffer keeps the slots busy meanwhile.
        return max(1, self._claim_ahead() // 2)

    async def _execute_claim(self, statement: store.Statement) -> list[store.Row]:
        try:
            return await self._claim_db.execute(statement)
        except psycopg.OperationalError:
            # A dropped connection (server restart, pg_terminate_backend) shows only when
            # used: reconnect (with backoff) and try once more before giving up this poll.
            return await self._claim_db.execute(statement)

    def _pauses_changed(self) -> None:
        self._pauses_read_at = None
        self._wakeup.set()

    async def _claimable_queues(self) -> list[str]:
        """Our queues minus the paused ones, the pauses read again when they may be stale."""
        read_at, now = self._pauses_read_at, self._loop.time()
        if read_at is None or now - read_at >= self.poll_interval:
            try:
                rows = await self._claim_db.execute(store.list_queue_pauses())
            except psycopg.Error as exc:
                # Keep the pauses known so far; the next poll reads them again.
                log.warning("reading paused queues failed: %s", describe_error(exc))
            else:
                paused = frozenset(row[0] for row in rows)
                if paused != self._paused:
                    log.info("paused queues: %s", ", ".join(sorted(paused)) or "none")
                self._paused = paused
            self._pauses_read_at = now
        return [queue for queue in self.queues if queue not in self._paused]

    def _unblock_wanted(self) -> bool:
        """A promotion pass is needed after a notification (a limited enqueue notifies its
        queue) and at least once per poll interval; not before every claim: finishes hand
        slots on by themselves, and a pass reads the wakeups table, whose dead rows cost
        every read until a vacuum (47-73 us per job of a drain, passing before each claim)."""
        now = self._loop.time()
        if self._unblock_due or now - self._unblocked_at >= self.poll_interval:
            self._unblock_due, self._unblocked_at = False, now
            return True
        return False

    async def _unblock(self) -> None:
        """Promotion passes until one comes back short (limits.py): blocked jobs of keys
        with a free slot become queued, for this claim or another worker's."""
        for _ in range(UNBLOCK_PASSES_MAX):
            try:
                rows = await self._claim_db.execute(store.unblock_jobs(limit=UNBLOCK_BATCH))
            except psycopg.Error as exc:
                log.warning("promoting blocked jobs failed: %s", describe_error(exc))
                return
            woken, created = rows[0][0], rows[0][1]
            if woken < UNBLOCK_BATCH and not created:
                return
        self._unblock_due = True  # more wakeups than these passes took: again next claim

    async def _claim_rated(self, queues: list[str], limit: int) -> list[store.Row]:
        """Admit and claim jobs of rate-limited keys (job_claim_rated.sql): before the plain
        claim, so a rate-limited job is started the moment its key has room."""
        if self._rated_keys:  # once: the limits of the keys known now (rate_limits_sync.sql)
            keys, self._rated_keys = self._rated_keys, {}
            await self._claim_db.execute(
                store.sync_rate_limits(
                    keys=list(keys),
                    max_starts=[rate[0] for rate in keys.values()],
                    periods=[rate[1] for rate in keys.values()],
                )
            )
        statement = store.claim_rated_jobs(
            queues=queues,
            tasks=self._names,
            leases=self._leases,
            rates=self._rates,
            limit=limit,
            worker_id=self.config.worker_id,
        )
        return await self._execute_claim(statement)

    async def _note_next_rate_slot(self, queues: list[str]) -> None:
        """When a rate key with a waiting job may admit one, by the database's clock: the
        idle wait ends then, not later (and no sooner, so a worker never spins on keys at
        their limit)."""
        rows = await self._claim_db.execute(store.next_rate_slot(queues=queues, tasks=self._names))
        seconds = rows[0][0] if rows else None
        self._rate_due = None if seconds is None else self._loop.time() + seconds

    async def _claim(self, limit: int) -> list[ClaimedJob] | None:
        queues = await self._claimable_queues()
        if not queues:
            return []  # every queue of ours is paused: wait for a poll or a resume
        if self._runs_limited and self._unblock_wanted():
            await self._unblock()
        try:
            rows = await self._claim_rated(queues, limit) if self._rated_keys is not None else []
            if len(rows) < limit:
                statement = store.claim_jobs(
                    queues=queues,
                    tasks=self._names,
                    leases=self._leases,
                    limit=limit - len(rows),
                    worker_id=self.config.worker_id,
                )
                rows += await self._execute_claim(statement)
            if self._rated_keys is not None and len(rows) < limit:
                await self._note_next_rate_slot(queues)
        except psycopg.Error as exc:
            log.warning("claiming failed: %s", describe_error(exc))
            # Wait (a notification ends the wait early) so a persistent error never spins.
            await self._wait(self._wakeup, self.poll_interval)
            return None
        jobs = sorted(
            (ClaimedJob.from_row(r) for r in rows), key=lambda j: (-j.priority, j.run_at, j.id)
        )
        self.stats.claimed += len(jobs)
        if jobs:
            self.events.jobs_claimed(jobs)
            self._heartbeat.claimed(min(self._lease_of(job) for job in jobs))
            for job in jobs:
                if job.id in self._running:
                    # Claimed again while an older attempt still runs here: that attempt's
                    # lease is certainly gone (the reaper took the job back). It is told
                    # now; the new attempt waits in _ready until the old one returns.
                    self._interrupt(job.id, "lease_lost")
        self._ready.extend(jobs)
        self._start_ready()
        return jobs

    async def _wait(self, event: asyncio.Event, timeout: float | None = None) -> None:
        # asyncio.timeout, not wait_for: wait_for wraps the wait in a task of its own, two
        # more loop turns between a notification and the claim it wakes.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
        event.clear()

    def _wake_all(self) -> None:
        self._wakeup.set()
        self._slot_freed.set()

    # --- running ----------------------------------------------------------------------------

    def _start_ready(self) -> None:
        # Sync jobs go to the threads' queue at once: there are `concurrency` threads, and a
        # thread that finishes a job takes the next without waking the loop. Async jobs
        # start on the loop while a slot is free.
        # A job whose earlier attempt (its lease lost) still runs here waits until that
        # attempt returns: two attempts of one job never overlap (guarantee 3).
        waiting: deque[ClaimedJob] = deque()
        while self._ready:
            job = self._ready.popleft()
            task = self.registry.get(job.task)
            assert task is not None, "claimed only registered task names"
            if job.id in self._running or (task.is_async and not self._take_async_slot()):
                waiting.append(job)
            else:
                self._start(job, task)
        self._ready = waiting

    def _take_async_slot(self) -> bool:
        if self._slots is not None:
            return self._slots.try_take()
        return len(self._running) < self.config.concurrency  # only async tasks here

    def _start(self, job: ClaimedJob, task: Task) -> None:
        ctx = JobContext(
            job,
            self.config.worker_id,
            timeout=task.timeout,
            worker_stopping=self._stopping,
            database=self._database,
        )
        if task.is_async:
            ctx.is_async = True  # ctx.transaction_async(), not ctx.transaction()
        running = _Running(job, ctx, task, self._lease_of(job), self._loop.time())
        self._running[job.id] = running
        problem = task.args_problem(job.args)
        if problem is not None:
            self._reject(running, problem)
        elif task.is_async:
            running.handle = asyncio.create_task(self._run_async_job(running))
        else:
            self._threads.submit(running, self._run_sync, (running,), {})

    def _reject(self, running: _Running, problem: str) -> None:
        """Arguments that do not bind fail the job for good: no retry could make them bind
        (the code reading them would have to change, and a new job be enqueued)."""
        if running.task.is_async and self._slots is not None:
            self._slots.give()  # taken by _start_ready for this job
        error = ArgsError(problem)
        outcome = Outcome(
            "failed", error=error_entry(BAD_ARGUMENTS, problem, None), exception=error
        )
        self._finished(running, outcome, 0.0)
        self._slot_freed.set()

    def _lease_of(self, job: ClaimedJob) -> float:
        return self._lease_by_task.get(job.task, self.config.lease)

    async def _run_async_job(self, running: _Running) -> None:
        outcome = await execute(running.task, running.job, running.ctx)
        if self._slots is not None:
            self._slots.give()
        seconds = self._loop.time() - running.started
        self._note_duration(seconds)
        self._finished(running, outcome, seconds)
        self._after_finishing()

    def _run_in_thread(self, running: _Running) -> Returned | None:
        """Run a sync job's attempt (in a pool thread); None if it must not start: the
        worker is stopping, or the job was cancelled or lost while it waited."""
        slots, ctx = self._slots, running.ctx
        if slots is not None:
            slots.take()
        try:
            with self._start_lock:
                if self._stopping.is_set() or ctx.interrupt is not None:
                    return None
                running.begun = True
            ctx.start_clock()
            task = running.task
            try:
                if task.pass_context:
                    value = task.func(ctx, **running.job.args)
                else:
                    value = task.func(**running.job.args)
            except BaseException:
                ctx.close_transaction()  # a raise rolls the task's transaction back
                raise
            finally:
                ctx.stop_clock()
            if value is None and ctx.tx is None and not ctx.completed_in:
                return PLAIN_RETURN  # the common case, without a call
            return settle(task, running.job, ctx, value)
        finally:
            if slots is not None:
                slots.give()

    def _run_in_child(self, child: Child | None, running: _Running) -> Outcome | bool:
        """Run a sync job's attempt in ``child`` (from a process pool thread) and return its
        outcome; False if it must not start (see _run_in_thread)."""
        slots, ctx = self._slots, running.ctx
        if slots is not None:
            slots.take()
        try:
            with self._start_lock:
                if self._stopping.is_set() or ctx.interrupt is not None:
                    return False
                running.begun, running.child = True, child
            result = None if child is None else child.run(running.job, running.task.timeout)
            return outcome_of_child(running.task, running.job, ctx, result)
        finally:
            if slots is not None:
                slots.give()

    def _on_threads_done(self, batch: list[Done]) -> None:
        """Sync jobs whose thread returned, collected from the threads in one go."""
        for done in batch:
            running: _Running = done.token
            if done.error is None and not done.value:  # None or False: never started
                self._not_started(running)
                continue
            if type(done.value) is Outcome:  # the process pool decided it
                outcome = done.value
            else:
                returned = PLAIN_RETURN if done.value is None else done.value
                outcome = outcome_of_call(
                    running.task, running.job, running.ctx, done.error, returned
                )
            self._note_duration(done.seconds)
            self._finished(running, outcome, done.seconds)
        self._after_finishing()

    def _not_started(self, running: _Running) -> None:
        reason = running.ctx.interrupt
        if reason == "lease_lost":
            # Reported when the heartbeat found out; nothing to write, the job is not ours.
            if self._running.get(running.job.id) is running:
                del self._running[running.job.id]
                self.stats.lost += 1
            return
        # Still ours: end it as the operator asked, or give it back uncounted.
        self._finished(running, Outcome("cancelled" if reason == "cancelled" else "release"), 0)

    def _finished(self, running: _Running, outcome: Outcome, seconds: float) -> None:
        job = running.job
        if self._running.get(job.id) is not running:
            return  # released at shutdown while still running; its outcome is moot
        del self._running[job.id]
        if outcome.kind == "committed":
            # The task's transaction wrote the success, fenced: nothing left to write.
            self._record(running.task, job, outcome, seconds)
            return
        if running.lost or outcome.kind == "stale":
            self._drop_lost(job, outcome, told=running.lost)
            return
        self._record(running.task, job, outcome, seconds)
        if outcome.kind in ("retry", "snooze"):
            self._loop.call_later(outcome.delay, self._wakeup.set)
        self._completer.submit(job, outcome)

    def _drop_lost(self, job: ClaimedJob, outcome: Outcome, told: bool = True) -> None:
        """An attempt whose lease was lost ended: nothing to write, the job is not ours.
        ``told``: the loss was reported when the heartbeat found it."""
        self.stats.lost += 1
        if outcome.kind == "stale":
            if not told:
                self.events.lease_lost(job)
            log.warning(
                "lease lost: job %d attempt %d returned after its lease was lost; its own "
                "transaction was rolled back and nothing of it was committed",
                job.id,
                job.attempt,
                extra=_fields(job),
            )
            return
        log.warning(
            "lease lost: job %d attempt %d ended after its lease was lost; its outcome (%s) "
            "was not written",
            job.id,
            job.attempt,
            outcome.kind,
            extra=_fields(job),
        )

    def _outcome_lost(self, job: ClaimedJob, outcome: Outcome) -> None:
        """The completer found the lease gone when writing ``outcome``: undo its count."""
        counter = _COUNTERS[_counted_kind(job, outcome)]
        setattr(self.stats, counter, getattr(self.stats, counter) - 1)
        self.stats.lost += 1
        self.events.lease_lost(job)

    def _after_finishing(self) -> None:
        if not self._stopping.is_set():
            self._start_ready()
        self._slot_freed.set()

    def _note_duration(self, seconds: float) -> None:
        avg = self._avg_duration
        self._avg_duration = seconds if avg is None else avg + DURATION_SMOOTHING * (seconds - avg)

    def _record(self, task: Task, job: ClaimedJob, outcome: Outcome, seconds: float) -> None:
        kind = _counted_kind(job, outcome)
        counter = _COUNTERS[kind]
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        self.events.job_finished(job, counter, seconds)
        if outcome.error is None:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("job %d %s", job.id, kind, extra=_fields(job))
            return
        level = logging.ERROR if kind == "failed" else logging.WARNING
        log.log(
            level,
            "job %d (%s) attempt %d/%d %s: %s: %s",
            job.id,
            job.task,
            job.attempt,
            job.max_attempts,
            "failed for good" if kind == "failed" else "will retry",
            outcome.error["kind"],
            outcome.error["message"],
            extra=_fields(job),
        )
        self._call_failure_hooks(task, job, outcome)

    def _call_failure_hooks(self, task: Task, job: ClaimedJob, outcome: Outcome) -> None:
        hooks = [h for h in (task.on_failure, self.on_failure) if h is not None]
        for hook in hooks:
            try:
                hook(job, outcome.exception)
            except Exception:  # a broken hook must not stop the worker
                log.exception("on_failure hook %r raised", hook, extra=_fields(job))

    on_failure: Any = None  # worker-wide hook: on_failure(job, exc); set by the caller

    # --- heartbeat and the worker registry ---------------------------------------------------

    async def _register(self) -> None:
        """Enter pgq.workers now (a first beat, with nothing held yet); if the database
        cannot be reached, the heartbeats keep trying."""
        try:
            async with asyncio.timeout(REGISTRY_TIMEOUT):
                await self._heartbeat.run_once()
        except (psycopg.Error, PgqError, TimeoutError) as exc:
            log.warning("registering in pgq.workers failed: %s", describe_error(exc))

    async def _unregister(self) -> None:
        # Bounded: with the database gone the writer would reconnect forever, and a clean
        # exit must not wait for it.
        try:
            async with asyncio.timeout(REGISTRY_TIMEOUT):
                statement = store.delete_worker(worker_id=self.config.worker_id)
                await self._write_db.execute(statement)
        except (psycopg.Error, PgqError, TimeoutError) as exc:
            log.warning(
                "could not remove this worker from pgq.workers (%s); the reaper removes it "
                "once it is unseen for %gs",
                describe_error(exc),
                STALE_AFTER,
            )

    def _running_now(self) -> int:
        return sum(1 for running in self._running.values() if not running.lost)

    def _held(self) -> list[Held]:
        running = [Held(r.job, r.lease) for r in self._running.values() if not r.lost]
        return running + [Held(job, self._lease_of(job)) for job in self._ready]

    def _on_heartbeat(self, result: HeartbeatResult) -> None:
        for job_id in result.lost:
            self._interrupt(job_id, "lease_lost")
        for job_id in result.cancel_requested:
            self._interrupt(job_id, "cancelled")

    def _interrupt(self, job_id: int, reason: str) -> None:
        running = self._running.get(job_id)
        if running is None:
            self._drop_ready(job_id, reason)
            return
        if running.lost:
            return  # told already; a newer claim of the same id waits in _ready
        if running.ctx.committing and reason in ("lease_lost", "cancelled"):
            # The task's transaction is completing the job, fenced by the lease: whether the
            # lease still held is what that commit decides (a heartbeat that waited for the
            # row's lock finds the job succeeded and reports it missing).
            return
        if reason == "lease_lost":
            running.lost = True
            self.events.lease_lost(running.job)
            log.warning(
                "lease lost: job %d attempt %d is no longer held by this worker; "
                "the task is asked to stop and its outcome will not be written",
                job_id,
                running.job.attempt,
                extra=_fields(running.job),
            )
        with self._start_lock:
            running.ctx.request_stop(reason)
            waiting = running.handle is None and not running.begun
            child = running.child
        if waiting:
            # A sync job still in the threads' queue: it will never start; end it now.
            self._not_started(running)
            self._slot_freed.set()
        elif running.handle is not None:
            running.handle.cancel()
        elif child is not None:
            child.terminate(running.job.id)  # its pool thread reports when it is gone
        # A sync task in a thread cannot be interrupted: it sees ctx.should_stop(), and its
        # job stays running (lease renewed) until it returns.

    def _drop_ready(self, job_id: int, reason: str) -> None:
        """A claimed-ahead job that lost its lease or was cancelled never starts here."""
        job = next((j for j in self._ready if j.id == job_id), None)
        if job is None:
            return
        self._ready.remove(job)
        self._slot_freed.set()
        if reason == "lease_lost":
            self.stats.lost += 1
            self.events.lease_lost(job)
            log.warning(
                "lease lost: job %d (claimed ahead) will not run here", job_id, extra=_fields(job)
            )
            return
        # Still ours: end it as the operator asked, without running it.
        self.stats.cancelled += 1
        self.events.job_finished(job, "cancelled", 0.0)
        self._completer.submit(job, Outcome("cancelled"))

    # --- background services and shutdown ---------------------------------------------------

    def _start_background(self) -> list[asyncio.Task[Any]]:
        tasks = [
            asyncio.create_task(self._completer.run(), name="pgq-completer"),
            asyncio.create_task(self._heartbeat.run(), name="pgq-heartbeat"),
        ]
        if not self.config.burst and self._listener is not None:
            tasks.append(asyncio.create_task(self._listener.run(), name="pgq-listener"))
        return tasks

    def _start_reaper(self) -> threading.Thread | None:
        # A thread with its own connection: every worker runs one, and an advisory lock
        # makes sure only one in the cluster does a pass at a time.
        if not self.config.run_reaper:
            return None
        thread = threading.Thread(
            target=reaper.run,
            args=(self.config.database_url, reaper.ReaperConfig(), self._stopping),
            kwargs={"pgbouncer": self.pgbouncer},
            name="pgq-reaper",
            daemon=True,
        )
        thread.start()
        return thread

    def _start_scheduler(self) -> threading.Thread | None:
        # Like the reaper: a thread with its own connection, in every worker; the tick
        # statement's compare-and-set makes each tick one job whoever gets there first.
        if not self.config.run_scheduler or not self.schedules or self.config.burst:
            return None
        config = scheduler.SchedulerConfig(
            deactivate_missing=self.config.deactivate_missing_schedules
        )
        thread = threading.Thread(
            target=scheduler.run,
            args=(self.config.database_url, self.schedules, config, self._stopping),
            kwargs={"pgbouncer": self.pgbouncer, "on_overdue": self._schedule_overdue},
            name="pgq-scheduler",
            daemon=True,
        )
        thread.start()
        return thread

    def _schedule_overdue(self, overdue: scheduler.OverdueSchedule) -> None:
        """An overdue schedule reaches the failure hooks as ``hook(overdue, exc)``: the
        task's ``on_failure`` and the worker's, with a ScheduleOverdue as ``exc``."""
        task = self.registry.get(overdue.task)
        error = overdue.error()
        for hook in (task.on_failure if task else None, self.on_failure):
            if hook is None:
                continue
            try:
                hook(overdue, error)
            except Exception:  # a broken hook must not stop the scheduler
                log.exception("on_failure hook %r raised for schedule %s", hook, overdue.name)

    def _install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting now; leases of running jobs will lapse")
            logging.shutdown()
            os._exit(128 + signum)
        log.info(
            "%s received: no new jobs; waiting up to %ss for %d running jobs",
            signal.Signals(signum).name,
            self.config.grace,
            len(self._running),
        )
        self.stop()

    async def _shutdown(self, background: list[asyncio.Task[Any]]) -> None:
        self._stopping.set()
        if isinstance(self._threads, ProcessPool):
            self._threads.stopping()  # tasks in children see stop_reason "shutdown"
        await self._finish_or_release()
        background[1].cancel()  # heartbeat: nothing left to keep alive
        for task in background[2:]:
            task.cancel()
        self._completer.close()
        with contextlib.suppress(asyncio.CancelledError):
            await background[0]
        await asyncio.gather(*background[1:], return_exceptions=True)
        await self._unregister()  # after the heartbeat ended: no beat brings the row back
        for db in (self._claim_db, self._write_db):
            await db.close()
        if self._listener is not None:
            await self._listener.close()
        if isinstance(self._threads, ProcessPool):
            await asyncio.to_thread(self._threads.close)  # every child gone before we exit
        else:
            self._threads.shutdown()
        log.info("worker %s stopped: %s", self.config.worker_id, self.stats)

    async def _finish_or_release(self) -> None:
        """Let running jobs finish within the grace period, then give the rest back."""
        self._release_ready()  # claimed ahead, never started: give them back at once
        for running in self._threads.drain():  # sync jobs no thread has started yet
            self._not_started(running)
        deadline = self._loop.time() + self.config.grace
        while self._running and (left := deadline - self._loop.time()) > 0:
            await self._wait(self._slot_freed, left)
        self._release_ready()  # those whose lost attempt returned within the grace
        leftovers = list(self._running.values())
        in_children: list[_Running] = []
        for running in leftovers:
            with self._start_lock:
                running.ctx.request_stop("shutdown")
                child = running.child
            if running.handle is not None:
                running.handle.cancel()  # its runner turns the cancel into a release
            elif child is not None:
                child.terminate(running.job.id)  # reported as stopped: a release
                in_children.append(running)
            elif running.lost:
                del self._running[running.job.id]  # not ours: nothing to write
                self._abandoned_threads = True
            else:
                # The thread cannot be stopped; release the job now and exit without it.
                del self._running[running.job.id]
                self._record(running.task, running.job, Outcome("release"), 0.0)
                self._completer.submit(running.job, Outcome("release"))
                self._abandoned_threads = True
        pending = [r.handle for r in leftovers if r.handle is not None]
        if pending:
            await asyncio.wait(pending, timeout=RELEASE_WAIT)
        deadline = self._loop.time() + CHILD_TERM_WAIT + RELEASE_WAIT
        while (
            any(self._running.get(r.job.id) is r for r in in_children)
            and (left := deadline - self._loop.time()) > 0
        ):
            await self._wait(self._slot_freed, left)

    def _release_ready(self) -> None:
        """Give back the claimed-ahead jobs, except one whose earlier attempt (its lease
        lost) still runs here: released, it could start elsewhere beside that attempt. Its
        lease lapses when this process exits, and the reaper returns it."""
        keep: deque[ClaimedJob] = deque()
        while self._ready:
            job = self._ready.popleft()
            if job.id in self._running:
                keep.append(job)
                continue
            self.stats.released += 1
            self.events.job_finished(job, "released", 0.0)
            self._completer.submit(job, Outcome("release"))
        self._ready = keep

    @property
    def abandoned_threads(self) -> bool:
        """True when sync tasks were still running at shutdown (the process must exit hard)."""
        return self._abandoned_threads


_COUNTERS = {
    "succeeded": "succeeded",
    "committed": "succeeded",
    "retry": "retried",
    "failed": "failed",
    "snooze": "snoozed",
    "cancelled": "cancelled",
    "release": "released",
}


def _counted_kind(job: ClaimedJob, outcome: Outcome) -> str:
    """The outcome as the worker counts it: a retry on the last attempt is a failure."""
    if outcome.kind == "retry" and job.attempt >= job.max_attempts:
        return "failed"
    return outcome.kind


def _fields(job: ClaimedJob) -> dict[str, Any]:
    return {"job_id": job.id, "task": job.task, "queue": job.queue, "attempt": job.attempt}
