"""The process pool (``pgq work --pool process``): sync tasks run in child processes.

A thread cannot be stopped from outside, so a sync task past its timeout or cancelled keeps
running in the thread pool until it returns. A child process can be stopped: the worker
sends it SIGTERM (the task's ``finally`` blocks run) and SIGKILL ``CHILD_TERM_WAIT``
seconds later if it is still there, then records the timeout or cancel and starts a new
child. Children are also replaced after ``max_jobs`` jobs or once their resident memory
passes ``max_memory_mb`` (checked after each job), which contains leaky task code.

Each pool thread owns one child and talks to it over a pipe, one job at a time. What
crosses the pipe is JSON: the job's row fields and arguments one way, the outcome (kind,
delay, error text) the other. Nothing is pickled from the database, and a child runs only
tasks registered by the ``--app`` modules it imports itself (guarantee 5). The parent keeps
everything else: the claim, the leases and heartbeats, the fencing of every write.

Children start from a fork server where the platform has one (a clean process that
imported pgq, forked for each child: no database connection or thread of the worker is
inherited), else by spawning a new interpreter. Either way each child imports the apps
itself, so an app's import-time state (engines, clients) is its own.

A child whose parent disappears (kill -9 of the worker) exits at once: its job's lease
lapses and the reaper gives the job to another worker, which must not find this attempt
still running. A SIGTERM the worker did not send (a service manager signalling the whole
process group) is ignored by the child: the worker decides, with its grace period, when
running jobs stop.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.context import BaseContext
from typing import Any

from pgq.errors import Fail, PgqError, Retry
from pgq.jobtx import Database
from pgq.registry import REGISTRY, Task
from pgq.runner import (
    PLAIN_RETURN,
    ClaimedJob,
    JobContext,
    Outcome,
    error_entry,
    outcome_of_call,
    settle,
    stopped_outcome,
)
from pgq.threads import _STOP, Done, ThreadPool

log = logging.getLogger("pgq.worker")

POOLS = ("thread", "process")
POOL_DEFAULT = "thread"
CHILD_TERM_WAIT = 5.0  # seconds from SIGTERM to SIGKILL when a child is stopped
CHILD_START_TIMEOUT = 60.0  # seconds a new child may take to import the apps
CHILD_START_RETRY = 1.0  # seconds a pool thread waits after a child failed to start
CHILD_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[child %(process)d]: %(message)s"
CHILD_DIED = "child_died"  # the error kind of an attempt whose child process died
CHILD_START_FAILED = "child_start_failed"


class ChildStartError(PgqError):
    """A child process of the process pool did not start."""


class ChildTaskError(PgqError):
    """A task raised in a child process of the process pool, or its child died.

    What failure hooks get in place of the exception, which stayed in the child: ``kind``
    is the exception's type name (or ``child_died``), the message is its text, and
    ``traceback`` the child's traceback text (None if there was none)."""

    def __init__(self, kind: str, message: str, traceback_text: str | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.traceback = traceback_text


@dataclass(frozen=True, slots=True)
class ChildConfig:
    """What every child needs: the modules to import, and when it is replaced."""

    apps: tuple[str, ...]
    worker_id: str
    max_jobs: int | None = None
    max_memory_mb: float | None = None
    log_level: int = logging.INFO
    # Where a task's own transaction (ctx.transaction()) connects: the worker's database.
    database: Database | None = None


@dataclass(frozen=True, slots=True)
class ChildResult:
    """How one job in a child ended: ``done`` (the child reported, ``message``), ``timeout``
    (stopped at its deadline), ``stopped`` (stopped on request) or ``died``."""

    kind: str
    message: dict[str, Any] | None = None
    exitcode: int | None = None
    pid: int = 0


def start_method() -> str:
    """``forkserver`` where the platform has it (Linux, BSDs, macOS), else ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


def mp_context(method: str | None = None) -> BaseContext:
    """The multiprocessing context children start from: ``method``, else ``start_method()``."""
    method = method or start_method()
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        # The fork server imports pgq once; a child then starts with a fork and its apps'
        # imports. Apps are not preloaded there: their import-time state (connections,
        # threads) must not be shared by every child forked from one copy.
        ctx.set_forkserver_preload(["pgq.children"])
    return ctx


# --- the parent's side ------------------------------------------------------------------------


class Child:
    """One child process and the pipe to it, driven by one pool thread. ``terminate`` may be
    called from any thread."""

    def __init__(self, ctx: BaseContext, config: ChildConfig, stopping: Any) -> None:
        parent_end, child_end = ctx.Pipe()
        self._term = ctx.RawValue("b", 0)  # set before the worker's own SIGTERM
        self._proc = ctx.Process(  # type: ignore[attr-defined]
            target=child_main,
            args=(child_end, config, stopping, self._term),
            name="pgq-child",
        )
        self._proc.start()
        child_end.close()
        self._conn = parent_end
        self.pid: int = self._proc.pid
        self.jobs = 0
        self.rss = 0  # bytes, as the child last reported
        self._lock = threading.Lock()
        self._job_id: int | None = None
        self._kill_at: float | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        # One selector for the child's life: waiting is then one epoll_wait per job, where
        # multiprocessing.connection.wait builds a selector at every call.
        self._selector = selectors.DefaultSelector()
        for watched in (self._conn, self._proc.sentinel, self._wake_r):
            self._selector.register(watched, selectors.EVENT_READ)
        self._await_ready()

    @property
    def alive(self) -> bool:
        return self._kill_at is None and self._proc.is_alive()

    def run(self, job: ClaimedJob, timeout: float | None) -> ChildResult:
        """Run ``job`` in the child and wait until it ends, is stopped, or the child dies."""
        with self._lock:
            self._job_id = job.id
        try:
            self._conn.send_bytes(_job_message(job, timeout))
            return self._wait_for(job, timeout)
        except (BrokenPipeError, EOFError, ConnectionResetError):
            return self._died()
        finally:
            with self._lock:
                self._job_id = None

    def terminate(self, job_id: int | None = None) -> bool:
        """Stop the child: SIGTERM now, SIGKILL after CHILD_TERM_WAIT. With ``job_id``,
        only while it runs that job (it may have moved on to the next one)."""
        with self._lock:
            if job_id is not None and self._job_id != job_id:
                return False
            if self._kill_at is None:
                self._kill_at = time.monotonic() + CHILD_TERM_WAIT
                self._term.value = 1
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGTERM)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")  # the thread in run() waits without a timeout
        return True

    def retire_due(self, config: ChildConfig) -> str | None:
        """Why this child should be replaced after its last job, or None."""
        if config.max_jobs is not None and self.jobs >= config.max_jobs:
            return f"it ran {self.jobs} jobs (--max-jobs-per-child {config.max_jobs})"
        limit = config.max_memory_mb
        if limit is not None and self.rss > limit * 1024 * 1024:
            return f"it uses {self.rss / 2**20:.0f} MB (--max-child-memory {limit:g})"
        return None

    def close(self) -> None:
        """Ask an idle child to exit; stop it if it does not. Blocks until it is gone."""
        if self._proc.is_alive() and self._kill_at is None:
            with contextlib.suppress(OSError, ValueError):
                self._conn.send_bytes(b'{"op": "exit"}')
            self._proc.join(CHILD_TERM_WAIT)
        if self._proc.is_alive():
            self.terminate()
            self._proc.join(CHILD_TERM_WAIT)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._selector.close()
        for end in (self._conn, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                end.close()

    def _await_ready(self) -> None:
        ready = multiprocessing.connection.wait(
            [self._conn, self._proc.sentinel], CHILD_START_TIMEOUT
        )
        message: dict[str, Any] = {}
        if self._conn in ready:
            with contextlib.suppress(EOFError, OSError):
                message = json.loads(self._conn.recv_bytes())
        if message.get("op") == "ready":
            return
        self.close()
        problem = message.get("error") or (
            f"it exited with {_describe_exit(self._proc.exitcode)}"
            if ready
            else f"it was not ready within {CHILD_START_TIMEOUT:g}s"
        )
        raise ChildStartError(f"a child process of the process pool did not start: {problem}")

    def _wait_for(self, job: ClaimedJob, timeout: float | None) -> ChildResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        timed_out = killed = False
        sentinel, pipe_open = self._proc.sentinel, True
        while True:
            kill_at = self._kill_at
            due = None if killed else kill_at if kill_at is not None else deadline
            left = None if due is None else max(0.0, due - time.monotonic())
            ready = {key.fileobj for key, _ in self._selector.select(left)}
            if self._wake_r in ready:
                self._wake_r.recv(64)
            if pipe_open and self._conn in ready:
                try:
                    data = self._conn.recv_bytes()
                except (EOFError, OSError):
                    data = None  # the child is exiting: its end of the pipe closed
                if data is not None:
                    message = json.loads(data)
                    self.jobs += 1
                    self.rss = int(message.get("rss") or 0)
                    if kill_at is not None:
                        self._proc.join(CHILD_TERM_WAIT)  # stopping anyway; the result stands
                    return ChildResult("done", message, pid=self.pid)
                self._selector.unregister(self._conn)
                pipe_open = False
            if sentinel in ready:
                self._proc.join()
                kind = "timeout" if timed_out else "stopped" if kill_at is not None else "died"
                return ChildResult(kind, exitcode=self._proc.exitcode, pid=self.pid)
            now = time.monotonic()
            if kill_at is not None and not killed and now >= kill_at:
                log.warning(
                    "child %d did not exit within %gs of SIGTERM (job %d): SIGKILL",
                    self.pid,
                    CHILD_TERM_WAIT,
                    job.id,
                )
                self._proc.kill()
                killed = True  # now only the child's exit is awaited
            elif kill_at is None and deadline is not None and now >= deadline:
                timed_out = True
                self.terminate()

    def _died(self) -> ChildResult:
        self._proc.join(CHILD_TERM_WAIT)
        return ChildResult("died", exitcode=self._proc.exitcode, pid=self.pid)


class ProcessPool(ThreadPool):
    """A ThreadPool whose ``size`` threads each own a child process: a submitted
    ``func(child, *args)`` runs in the thread (its child, or None when none would start)."""

    def __init__(
        self,
        loop: Any,
        size: int,
        on_done: Callable[[list[Done]], None],
        config: ChildConfig,
    ) -> None:
        self._config = config
        self._ctx = mp_context()
        self._stopping = self._ctx.Event()  # the children's ctx.worker_stopping
        self._children: set[Child] = set()  # under self._lock (ThreadPool's)
        super().__init__(loop, size, on_done, name="pgq-child")

    def stopping(self) -> None:
        """The worker is shutting down: running tasks see ``ctx.stop_reason == "shutdown"``."""
        self._stopping.set()

    def close(self) -> None:
        """Stop the threads and their children: idle ones exit; blocks until every child is
        gone (the worker has stopped the busy ones already)."""
        self.shutdown()
        for thread in self._threads:
            thread.join(CHILD_TERM_WAIT * 3)
        with self._lock:
            leftovers = list(self._children)
        for child in leftovers:  # a thread still stuck with its child: stop the child
            child.terminate()
            child.close()

    def _serve(self) -> None:
        clock = time.monotonic
        child = self._new_child()
        try:
            while (item := self._calls.get()) is not _STOP:
                token, func, args, kwargs = item
                if child is None or not child.alive:
                    if child is not None:
                        self._close_child(child)
                    child = self._new_child()
                started = clock()
                try:
                    value, error = func(child, *args, **kwargs), None
                except BaseException as exc:  # handed to the worker, which decides the outcome
                    value, error = None, exc
                self._finish(Done(token, value, error, clock() - started))
                if child is not None and child.alive and (why := child.retire_due(self._config)):
                    log.info("replacing child %d: %s", child.pid, why)
                    self._close_child(child)
                    child = self._new_child()
        finally:
            if child is not None:
                self._close_child(child)

    def _new_child(self) -> Child | None:
        try:
            child = Child(self._ctx, self._config, self._stopping)
        except (ChildStartError, OSError) as exc:
            log.error("%s", exc)
            time.sleep(CHILD_START_RETRY)  # a broken app must not make the pool spin
            return None
        with self._lock:
            self._children.add(child)
        return child

    def _close_child(self, child: Child) -> None:
        child.close()
        with self._lock:
            self._children.discard(child)


def outcome_of_child(
    task: Task, job: ClaimedJob, ctx: JobContext, result: ChildResult | None
) -> Outcome:
    """The outcome of an attempt in a child (``result`` None: no child would start)."""
    if result is not None and result.kind == "timeout":
        ctx.request_stop("timeout")
        if ctx.interrupt == "timeout":
            message = (
                f"the attempt ran past the task's timeout of {task.timeout}s; its child "
                f"process (pid {result.pid}) was stopped"
            )
            return _retry(task, job, "timeout", message, hooked=False)
    if ctx.interrupt is not None:
        return stopped_outcome(task, job, ctx)
    if result is None:
        message = "no child process would start; see the worker's log"
        return _retry(task, job, CHILD_START_FAILED, message)
    if result.kind == "died":
        message = (
            f"the child process (pid {result.pid}) running the attempt exited with "
            f"{_describe_exit(result.exitcode)}; a task that keeps killing its child fails "
            "after max_attempts"
        )
        return _retry(task, job, CHILD_DIED, message)
    assert result.message is not None
    return _outcome_of_message(result.message)


def _retry(task: Task, job: ClaimedJob, kind: str, message: str, hooked: bool = True) -> Outcome:
    # Failure hooks get None for a timeout, as with threads; a ChildTaskError otherwise.
    return Outcome(
        "retry",
        delay=task.backoff.delay(job.attempt),
        error=error_entry(kind, message, None),
        exception=ChildTaskError(kind, message) if hooked else None,
    )


def _outcome_of_message(message: dict[str, Any]) -> Outcome:
    exception: BaseException | None = None
    raised = message.get("raised")
    if raised is not None:
        if raised["type"] == "Fail":
            exception = Fail(raised["reason"])
        elif raised["type"] == "Retry":
            exception = Retry(raised["delay"], raised["reason"])
        else:
            exception = ChildTaskError(raised["kind"], raised["message"], raised["traceback"])
    return Outcome(
        message["kind"],
        delay=message["delay"],
        error=message["error"],
        exception=exception,
        result=message.get("result"),
    )


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "an unknown status"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {-code} ({signal.Signals(-code).name})"
        return f"signal {-code}"
    return f"exit code {code}"


def _job_message(job: ClaimedJob, timeout: float | None) -> bytes:
    fields = {
        "op": "run",
        "id": job.id,
        "queue": job.queue,
        "task": job.task,
        "args": job.args,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "lease_token": job.lease_token,
        "priority": job.priority,
        "run_at": job.run_at.isoformat(),
        "enqueued_at": job.enqueued_at.isoformat(),
        "lag": job.lag,
        "timeout": timeout,
    }
    return json.dumps(fields).encode()


# --- the child's side -------------------------------------------------------------------------


class _Terminated(BaseException):
    """Raised in a child's main thread by the worker's SIGTERM: unwind, then exit."""


def child_main(conn: Any, config: ChildConfig, stopping: Any, term: Any) -> None:
    """A child's life: import the apps, then run jobs one at a time until told to exit."""
    logging.basicConfig(level=config.log_level, format=CHILD_LOG_FORMAT, stream=sys.stderr)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent
    signal.signal(signal.SIGTERM, lambda *_: _on_sigterm(term))
    _exit_with_parent()
    try:
        for name in config.apps:
            importlib.import_module(name)
    except BaseException as exc:
        conn.send_bytes(json.dumps({"op": "failed", "error": _one_line(exc)}).encode())
        return
    conn.send_bytes(b'{"op": "ready"}')
    try:
        while True:
            request = json.loads(conn.recv_bytes())
            if request["op"] != "run":
                return
            conn.send_bytes(json.dumps(_run_one(request, config, stopping)).encode())
    except (_Terminated, EOFError, BrokenPipeError):
        return


def _on_sigterm(term: Any) -> None:
    if term.value:
        raise _Terminated()
    log.warning(
        "SIGTERM ignored: the worker (pid %d) stops running jobs itself, after its grace "
        "period; signal the worker only",
        _worker_pid(),
    )


def _worker_pid() -> int:
    # Not os.getppid(): a child's parent process is the fork server.
    parent = multiprocessing.parent_process()
    return os.getppid() if parent is None or parent.pid is None else parent.pid


def _exit_with_parent() -> None:
    # A child outliving its worker would run its job beside the attempt the reaper starts
    # elsewhere once the lease lapses.
    parent = multiprocessing.parent_process()
    if parent is None:  # pragma: no cover - always set for spawn and forkserver children
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(70)

    threading.Thread(target=watch, name="pgq-parent-watch", daemon=True).start()


def _run_one(request: dict[str, Any], config: ChildConfig, stopping: Any) -> dict[str, Any]:
    job = ClaimedJob(
        id=request["id"],
        queue=request["queue"],
        task=request["task"],
        args=request["args"],
        attempt=request["attempt"],
        max_attempts=request["max_attempts"],
        lease_token=request["lease_token"],
        priority=request["priority"],
        run_at=datetime.fromisoformat(request["run_at"]),
        enqueued_at=datetime.fromisoformat(request["enqueued_at"]),
        lag=request["lag"],
    )
    task = REGISTRY.get(job.task)
    if task is None:
        message = f"task {job.task!r} is not registered in the child (apps {config.apps})"
        error = error_entry("TaskNotRegistered", message, None)
        return {"kind": "retry", "delay": 0.0, "error": error, "raised": None, "rss": 0}
    ctx = JobContext(
        job,
        config.worker_id,
        timeout=request["timeout"],
        worker_stopping=stopping,
        database=config.database,
    )
    error_raised: BaseException | None = None
    returned = PLAIN_RETURN
    ctx.start_clock()
    try:
        value = task.func(ctx, **job.args) if task.pass_context else task.func(**job.args)
    except _Terminated:
        ctx.close_transaction()
        raise
    except BaseException as exc:  # every failure of the task becomes an outcome
        ctx.close_transaction()  # a raise rolls the task's transaction back
        error_raised = exc
    finally:
        ctx.stop_clock()
    if error_raised is None:
        try:  # the result checked, the task's own transaction committed (runner.settle)
            returned = settle(task, job, ctx, value)
        except _Terminated:
            raise  # stopped by the worker: settle rolled back what it had not committed
        except BaseException as exc:
            error_raised = exc
    outcome = outcome_of_call(task, job, ctx, error_raised, returned)
    return {
        "kind": outcome.kind,
        "delay": outcome.delay,
        "error": outcome.error,
        "raised": _describe_raised(outcome.exception),
        "result": outcome.result,
        "rss": _rss() if config.max_memory_mb is not None else 0,
    }


def _describe_raised(exc: BaseException | None) -> dict[str, Any] | None:
    if exc is None:
        return None
    if isinstance(exc, Fail):
        return {"type": "Fail", "reason": exc.reason}
    if isinstance(exc, Retry):
        return {"type": "Retry", "delay": exc.delay, "reason": exc.reason}
    return {
        "type": "error",
        "kind": type(exc).__qualname__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def _rss() -> int:
    """This process's resident memory now, in bytes (Linux), else its peak."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
