"""A batch's rows: the shortcut for repeated options never changes a row or an error.

checked_rows() checks each distinct (task, queue, priority, max_attempts) once per batch.
Every case here puts a job after others whose options look the same to ``==`` (True and
1, 1.0 and 1) or are the same, and expects exactly what job_row() says about that job
alone: the same row, or the same error type and message with the job's position.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import pgq
from pgq.registry import REGISTRY, JobSpec, Task
from pgq.rows import checked_rows, insert_document, job_row


@pytest.fixture
def registered() -> Iterator[Task]:
    @pgq.task(name="rows.registered", queue="reg_queue", priority=7, max_attempts=3)
    def registered_task() -> None:
        return None

    yield registered_task
    REGISTRY.remove("rows.registered")


class Str(str):
    pass


GOOD = [
    JobSpec("t", {"i": 1}),
    JobSpec("t", priority=1),  # the lookalikes of True and 1.0 below
    JobSpec("t", max_attempts=1),
    JobSpec("t", max_attempts=20),
    JobSpec("rows.registered", priority=1),
    JobSpec("t", {"i": 2}, queue="q", priority=5, max_attempts=2),
    JobSpec("t", {"i": 3}, priority=-32768, max_attempts=1000),
    JobSpec("rows.registered", {"i": 4}),
    JobSpec("rows.registered", {"i": 5}, queue="other", priority=0),
    JobSpec("t", delay=1.5),
    JobSpec("t", delay=timedelta(minutes=1)),
    JobSpec("t", run_at=datetime(2030, 1, 1, tzinfo=UTC)),
    JobSpec("t", unique_key="k"),
    JobSpec(Str("t"), queue=Str("q")),
    JobSpec("t", {"enum_like": True, "nested": {"a": [1, 2]}}),
]

# Each is valid-looking next to GOOD, and wrong (or right) on its own terms.
TRICKY: list[Any] = [
    JobSpec("t", priority=True),  # == 1 to a dict, not a priority
    JobSpec("t", priority=1.0),
    JobSpec("t", max_attempts=True),
    JobSpec("t", max_attempts=20.0),
    JobSpec("t", priority=40000),
    JobSpec("t", queue="no spaces"),
    JobSpec("t", queue=""),
    JobSpec("", {}),
    JobSpec(["t"]),  # type: ignore[arg-type]  # unhashable
    JobSpec("t", queue=["q"]),  # type: ignore[arg-type]
    JobSpec("t", priority={}),  # type: ignore[arg-type]
    JobSpec("t", {"a": float("nan")}),
    JobSpec("t", {1: "x"}),  # type: ignore[dict-item]
    JobSpec("t", [1]),  # type: ignore[arg-type]
    JobSpec("t", delay=-1),
    JobSpec("t", delay=1, run_at=datetime(2030, 1, 1, tzinfo=UTC)),
    JobSpec("t", run_at=datetime(2030, 1, 1)),
    JobSpec("t", unique_key=""),
    JobSpec("t", queue="bad queue", priority=99999, args={"a": float("nan")}),  # first wins
    JobSpec("rows.registered", priority=True),
    JobSpec("t", {"i": 1}),  # a good one after all, identical to GOOD[0]
    {"task": "t"},
]


def expected(index: int, spec: Any) -> tuple[str, Any]:
    if not isinstance(spec, JobSpec):
        return "ValidationError", f"jobs[{index}] is a dict, not a pgq.JobSpec"
    try:
        return "row", job_row(spec)
    except pgq.ValidationError as exc:
        return type(exc).__name__, f"jobs[{index}]: {exc}"


def got(jobs: list[Any]) -> tuple[str, Any]:
    try:
        return "row", checked_rows(jobs)[-1]
    except pgq.ValidationError as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("spec", TRICKY, ids=repr)
def test_a_job_after_lookalikes_gets_what_job_row_gives_it(registered: Task, spec: Any) -> None:
    jobs = [*GOOD, *GOOD, spec]
    kind, value = expected(len(jobs) - 1, spec)
    if kind == "ValidationError" and isinstance(spec, dict):
        assert got(jobs) == (kind, value + "; build jobs with task.spec(...) or pgq.JobSpec(...)")
    else:
        assert got(jobs) == (kind, value)


def test_every_row_of_a_batch_is_the_row_of_job_row(registered: Task) -> None:
    jobs = GOOD * 3
    assert checked_rows(jobs) == [job_row(spec) for spec in jobs]
    assert checked_rows(iter(jobs)) == checked_rows(jobs)


def test_registered_defaults_fill_the_row(registered: Task) -> None:
    rows = checked_rows([JobSpec("rows.registered"), JobSpec("t")])
    assert [(r[0], r[3], r[6]) for r in rows] == [("reg_queue", 7, 3), ("default", 0, 20)]


def test_the_first_bad_job_is_reported_with_its_position() -> None:
    jobs = [JobSpec("t", {"i": i}) for i in range(1000)]
    jobs[400] = JobSpec("t", priority=True)
    jobs[700] = JobSpec("t", queue="bad queue")
    with pytest.raises(pgq.OptionError, match=r"^jobs\[400\]: priority must be an integer"):
        checked_rows(jobs)


def test_the_insert_document_holds_every_column() -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    document = insert_document(
        checked_rows([JobSpec("t\t✓", {"a": "\\"}, run_at=at, unique_key="k"), JobSpec("u")])
    )
    assert json.loads(document) == [
        {
            "queue": "default",
            "task": "t\t✓",
            "args": {"a": "\\"},
            "priority": 0,
            "run_at": at.isoformat(),
            "delay": 0.0,
            "max_attempts": 20,
            "unique_key": "k",
        },
        {
            "queue": "default",
            "task": "u",
            "args": {},
            "priority": 0,
            "run_at": None,
            "delay": 0.0,
            "max_attempts": 20,
            "unique_key": None,
        },
    ]
