"""The worker's threads for sync tasks, handing results back to the event loop in batches.

``loop.run_in_executor`` wakes the event loop once per finished call (a write to its
self-pipe and a loop iteration each). With short jobs that was the worker's largest cost:
a no-op sync drain ran at half the speed of an async one. Here a finished call joins a
list, and only the first call finishing while the loop has not yet collected wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = None


class ThreadPool:
    """``size`` daemon threads running sync callables for one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int, name: str = "pgq") -> None:
        self._loop = loop
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None]
        self._calls = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._finished: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, call: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``call`` in a thread; the returned future (of this loop) gets its result."""
        future = self._loop.create_future()
        self._calls.put((call, future))
        return future

    def shutdown(self) -> None:
        """Let idle threads exit. Threads still running a call finish it and then exit;
        being daemons, they never keep the process alive."""
        for _ in self._threads:
            self._calls.put(_STOP)

    def _serve(self) -> None:
        while (item := self._calls.get()) is not _STOP:
            call, future = item
            try:
                result, error = call(), None
            except BaseException as exc:  # handed to the awaiting coroutine, which decides
                result, error = None, exc
            self._finish(future, result, error)

    def _finish(
        self, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        with self._lock:
            self._finished.append((future, result, error))
            first = len(self._finished) == 1
        if first:
            # RuntimeError: the loop is closed; the worker is gone and nobody awaits this.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
        for future, result, error in finished:
            if future.cancelled():
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
