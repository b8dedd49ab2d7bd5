"""JobContext's clock for sync attempts: the timeout counts from start_clock(), is noticed
whenever the context is asked, and is judged once and for all by stop_clock()."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from pgq.runner import ClaimedJob, JobContext

NOW = datetime(2026, 1, 1, tzinfo=UTC)
JOB = ClaimedJob(1, "default", "t", {}, 1, 3, 1, 0, NOW, NOW)


def context(timeout: float | None) -> JobContext:
    job = ClaimedJob(1, "default", "t", {}, 1, 3, 1, 0, NOW, NOW)
    return JobContext(job, "worker", timeout=timeout)


def test_the_timeout_does_not_run_before_the_attempt_starts() -> None:
    ctx = context(0.01)
    time.sleep(0.03)
    assert not ctx.should_stop()
    assert not ctx.timed_out


def test_after_the_deadline_the_context_says_timed_out() -> None:
    ctx = context(0.01)
    ctx.start_clock()
    assert not ctx.should_stop()
    time.sleep(0.03)
    assert ctx.should_stop()
    assert (ctx.timed_out, ctx.stop_reason) == (True, "timeout")


def test_a_cancel_after_the_deadline_does_not_hide_the_timeout() -> None:
    ctx = context(0.01)
    ctx.start_clock()
    time.sleep(0.03)
    ctx.request_stop("cancelled")
    assert ctx.stop_reason == "timeout"


def test_an_attempt_that_returned_in_time_never_times_out_later() -> None:
    ctx = context(0.05)
    ctx.start_clock()
    ctx.stop_clock()
    time.sleep(0.08)
    ctx.request_stop("cancelled")
    assert (ctx.timed_out, ctx.stop_reason) == (False, "cancelled")


def test_an_attempt_that_returned_late_is_a_timeout() -> None:
    ctx = context(0.01)
    ctx.start_clock()
    time.sleep(0.03)
    ctx.stop_clock()
    assert ctx.stop_reason == "timeout"


def test_without_a_timeout_there_is_no_deadline() -> None:
    ctx = context(None)
    ctx.start_clock()
    assert ctx.deadline is None
    assert not ctx.should_stop()


def test_during_shutdown_the_stop_reason_says_so_without_deciding_the_outcome() -> None:
    stopping = threading.Event()
    ctx = JobContext(JOB, "w", worker_stopping=stopping)
    assert (ctx.should_stop(), ctx.stop_reason) == (False, None)
    stopping.set()
    assert (ctx.should_stop(), ctx.stop_reason, ctx.shutting_down) == (True, "shutdown", True)
    assert ctx.interrupt is None, "a task that returns within the grace has succeeded"
    ctx.request_stop("lease_lost")
    assert (ctx.stop_reason, ctx.lease_lost) == ("lease_lost", True)
