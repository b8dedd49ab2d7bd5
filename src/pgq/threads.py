"""The worker's threads for sync tasks, handing finished calls back to the loop in batches.

A call and its result never touch an asyncio future or task: the worker submits a call
with a token of its own, a thread runs it, and the finished ``(token, value, error,
seconds)`` joins a list that the loop collects in one callback. Only the first call
finishing while the loop has not yet collected wakes it. With short jobs the per-job cost
of ``run_in_executor`` (a future, a task step to await it, a loop wake-up each) was the
worker's largest: a no-op sync drain ran at half the speed of the same drain without task
code.

The queue may hold more calls than there are threads (the worker hands over every
claimed sync job at once): a thread that finishes a call takes the next one without
sleeping, and the loop is not involved between them. ``Slots`` lets threads and the
loop share one limit when some jobs run on the loop instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_STOP = None


@dataclass(frozen=True, slots=True)
class Done:
    """One finished call: the submitter's token, what it returned, what it raised (None:
    it returned), and how long it ran."""

    token: Any
    value: Any
    error: BaseException | None
    seconds: float


class ThreadPool:
    """``size`` daemon threads running sync callables; ``on_done`` gets finished calls in
    batches, on the loop's thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        size: int,
        on_done: Callable[[list[Done]], None],
        name: str = "pgq",
    ) -> None:
        self._loop = loop
        self._on_done = on_done
        self._calls: queue.SimpleQueue[tuple[Any, Callable[..., Any], Any, Any] | None]
        self._calls = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._finished: list[Done] = []
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self, token: Any, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Run ``func(*args, **kwargs)`` in a thread; ``on_done`` hears of it with ``token``."""
        self._calls.put((token, func, args, kwargs))

    def drain(self) -> list[Any]:
        """Take back the calls no thread has started yet; return their tokens."""
        tokens: list[Any] = []
        while True:
            try:
                item = self._calls.get_nowait()
            except queue.Empty:
                return tokens
            if item is not _STOP:
                tokens.append(item[0])

    def shutdown(self) -> None:
        """Let idle threads exit. Threads still running a call finish it and then exit;
        being daemons, they never keep the process alive."""
        for _ in self._threads:
            self._calls.put(_STOP)

    def _serve(self) -> None:
        clock = time.monotonic
        while (item := self._calls.get()) is not _STOP:
            token, func, args, kwargs = item
            started = clock()
            try:
                value, error = func(*args, **kwargs), None
            except BaseException as exc:  # handed to the worker, which decides the outcome
                value, error = None, exc
            self._finish(Done(token, value, error, clock() - started))

    def _finish(self, done: Done) -> None:
        with self._lock:
            self._finished.append(done)
            first = len(self._finished) == 1
        if first:
            # RuntimeError: the loop is closed; the worker is gone and nobody waits for this.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
        self._on_done(finished)


class Slots:
    """How many jobs may run at once, shared by the threads (which wait for a slot) and the
    event loop (which only takes a free one). A worker needs it only when it runs sync and
    async tasks: with sync tasks alone the number of threads is the limit."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._changed = threading.Condition(threading.Lock())

    def take(self) -> None:
        """Wait for a free slot and take it (pool threads)."""
        with self._changed:
            while self._free == 0:
                self._changed.wait()
            self._free -= 1

    def try_take(self) -> bool:
        """Take a free slot if there is one (the event loop, which must not block)."""
        with self._changed:
            if self._free == 0:
                return False
            self._free -= 1
            return True

    def give(self) -> None:
        with self._changed:
            self._free += 1
            self._changed.notify()
