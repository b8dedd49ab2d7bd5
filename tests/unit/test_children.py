"""The process pool's translation of what happened in a child into an outcome, and the
worker's refusal of pool settings that cannot work. (Real children: the acceptance tests.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

import pgq
from pgq.children import (
    ChildResult,
    ChildTaskError,
    _describe_raised,
    _job_message,
    outcome_of_child,
)
from pgq.registry import Registry
from pgq.runner import ClaimedJob, JobContext
from pgq.worker import Worker, WorkerConfig

NOW = datetime(2026, 1, 1, tzinfo=UTC)
JOB = ClaimedJob(7, "default", "t", {"x": 1}, 2, 3, 11, 0, NOW, NOW)
REG = Registry()


@pgq.task(name="t", registry=REG, timeout=5.0, backoff=pgq.Backoff(base=10, jitter=0.0))
def t(x: int) -> None:
    pass


def ctx() -> JobContext:
    return JobContext(JOB, "worker", timeout=5.0)


def test_a_child_that_died_is_a_failed_attempt_naming_the_signal() -> None:
    outcome = outcome_of_child(t, JOB, ctx(), ChildResult("died", exitcode=-9, pid=4242))
    assert (outcome.kind, outcome.delay) == ("retry", 20.0)  # the task's backoff, attempt 2
    assert outcome.error is not None
    assert outcome.error["kind"] == "child_died"
    assert "pid 4242" in outcome.error["message"]
    assert "signal 9 (SIGKILL)" in outcome.error["message"]
    assert isinstance(outcome.exception, ChildTaskError)
    assert outcome.exception.kind == "child_died"


def test_an_exit_code_is_named_as_such() -> None:
    outcome = outcome_of_child(t, JOB, ctx(), ChildResult("died", exitcode=3, pid=1))
    assert outcome.error is not None and "exit code 3" in outcome.error["message"]


def test_a_timeout_names_the_stopped_child_and_gives_hooks_none() -> None:
    context = ctx()
    outcome = outcome_of_child(t, JOB, context, ChildResult("timeout", exitcode=-15, pid=5))
    assert context.stop_reason == "timeout"
    assert outcome.kind == "retry" and outcome.exception is None
    assert outcome.error is not None and outcome.error["kind"] == "timeout"
    assert "timeout of 5.0s; its child process (pid 5) was stopped" in outcome.error["message"]


@pytest.mark.parametrize(("reason", "kind"), [("cancelled", "cancelled"), ("shutdown", "release")])
def test_a_stop_the_worker_asked_for_decides_the_outcome(reason: str, kind: str) -> None:
    context = ctx()
    context.request_stop(reason)
    for result in (ChildResult("stopped", exitcode=-15), ChildResult("done", {"kind": "x"})):
        assert outcome_of_child(t, JOB, context, result).kind == kind


def test_no_child_is_a_failed_attempt_that_says_why() -> None:
    outcome = outcome_of_child(t, JOB, ctx(), None)
    assert outcome.kind == "retry"
    assert outcome.error is not None and outcome.error["kind"] == "child_start_failed"


def test_what_the_child_reported_comes_back_with_an_exception_for_the_hooks() -> None:
    def reported(exc: BaseException) -> ChildResult:
        message = {"kind": "retry", "delay": 1.5, "error": {"kind": "k", "message": "m"}}
        message["raised"] = json.loads(json.dumps(_describe_raised(exc)))  # as it crosses
        return ChildResult("done", message)

    failed = outcome_of_child(t, JOB, ctx(), reported(pgq.Fail("no")))
    assert isinstance(failed.exception, pgq.Fail) and failed.exception.reason == "no"
    retried = outcome_of_child(t, JOB, ctx(), reported(pgq.Retry(3, "later")))
    assert isinstance(retried.exception, pgq.Retry)
    assert (retried.exception.delay, retried.exception.reason) == (3, "later")
    other = outcome_of_child(t, JOB, ctx(), reported(KeyError("k")))
    assert isinstance(other.exception, ChildTaskError)
    assert other.exception.kind == "KeyError"
    assert "KeyError" in (other.exception.traceback or "")
    assert (other.kind, other.delay) == ("retry", 1.5)


def test_the_job_crosses_as_json_with_its_arguments_and_times() -> None:
    message = json.loads(_job_message(JOB, 5.0))
    assert message["op"] == "run"
    assert (message["id"], message["task"], message["args"]) == (7, "t", {"x": 1})
    assert datetime.fromisoformat(message["run_at"]) == NOW
    assert message["timeout"] == 5.0


def test_the_worker_refuses_pool_settings_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="pool must be one of thread, process"):
        Worker(WorkerConfig("postgresql://x/y", pool="fork"), registry=REG)
    with pytest.raises(ValueError, match="needs apps"):
        Worker(WorkerConfig("postgresql://x/y", pool="process"), registry=REG)
