"""Job rows: the checked column values of the jobs enqueue and enqueue_many insert.

A row is a plain tuple ``(queue, task, args, priority, run_at, delay, max_attempts,
unique_key)``: args is JSON text, already checked; run_at is the given datetime or None;
delay is in seconds (0.0 when none). 50,000 named tuples cost 50 ms more than plain ones.
Nothing here touches the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pgq import options
from pgq.args import encode_args
from pgq.errors import ValidationError
from pgq.registry import REGISTRY, JobSpec, Task

Row = tuple[str, str, str, int, datetime | None, float, int, str | None]
UNIQUE_KEY = 7  # a Row's unique_key position

_OptionsKey = tuple[Any, ...]
_Options = tuple[str, str, int, int]  # queue, task, priority, max_attempts


def job_row(spec: JobSpec) -> Row:
    """The validated column values of one job, defaults filled from its registered task.

    Raises the ValidationError of the first problem, checking in the column order below.
    """
    registered = REGISTRY.get(spec.task) if isinstance(spec.task, str) else None
    run_at, delay = options.check_schedule(spec.run_at, spec.delay)
    return (
        options.check_queue(_pick(spec.queue, registered, "queue")),
        options.check_task_name(spec.task),
        encode_args(spec.args),
        options.check_priority(_pick(spec.priority, registered, "priority")),
        run_at,
        delay,
        options.check_max_attempts(_pick(spec.max_attempts, registered, "max_attempts")),
        options.check_unique_key(spec.unique_key),
    )


def checked_rows(jobs: Iterable[JobSpec]) -> list[Row]:
    """Every job's row; raises the first bad job's error, prefixed with its position.

    The options of a batch repeat (one task, one queue, one priority for thousands of jobs),
    so their checks run once per distinct combination. A job this shortcut is unsure of goes
    through ``job_row``, the same checks in the same order as a single enqueue, so the
    error raised is exactly the one enqueue() would raise for that job.
    """
    checked: dict[_OptionsKey, _Options] = {}
    rows = []
    for index, spec in enumerate(jobs):
        row = _known_row(spec, checked) if type(spec) is JobSpec else None
        rows.append(row if row is not None else numbered_row(index, spec))
    return rows


def _known_row(spec: JobSpec, checked: dict[_OptionsKey, _Options]) -> Row | None:
    """``spec``'s row when every check passes, with options checked earlier; else None."""
    task, queue, priority, max_attempts = spec.task, spec.queue, spec.priority, spec.max_attempts
    # The types are part of the key: True == 1 and 1.0 == 1, but neither is a priority.
    key = (task, queue, priority, max_attempts, type(task), type(queue), type(priority),
           type(max_attempts))  # fmt: skip
    try:
        known = checked.get(key)
    except TypeError:  # an unhashable option is wrong; job_row says how
        return None
    try:
        if known is None:
            known = checked[key] = _checked_options(spec)
        run_at, delay = (
            (None, 0.0)
            if spec.run_at is None and spec.delay is None
            else options.check_schedule(spec.run_at, spec.delay)
        )
        args = encode_args(spec.args)
        unique_key = options.check_unique_key(spec.unique_key)
    except ValidationError:
        return None  # job_row finds the first problem in enqueue()'s order
    queue_, task_, priority_, max_attempts_ = known
    return (queue_, task_, args, priority_, run_at, delay, max_attempts_, unique_key)


def _checked_options(spec: JobSpec) -> _Options:
    registered = REGISTRY.get(spec.task) if isinstance(spec.task, str) else None
    return (
        options.check_queue(_pick(spec.queue, registered, "queue")),
        options.check_task_name(spec.task),
        options.check_priority(_pick(spec.priority, registered, "priority")),
        options.check_max_attempts(_pick(spec.max_attempts, registered, "max_attempts")),
    )


def numbered_row(index: int, spec: JobSpec) -> Row:
    if not isinstance(spec, JobSpec):
        raise ValidationError(
            f"jobs[{index}] is a {type(spec).__name__}, not a pgq.JobSpec; "
            "build jobs with task.spec(...) or pgq.JobSpec(...)"
        )
    try:
        return job_row(spec)
    except ValidationError as exc:
        # Same type, so callers catch what enqueue() raises; the position finds the culprit.
        raise type(exc)(f"jobs[{index}]: {exc}") from None


_DEFAULTS = {
    "queue": options.QUEUE_DEFAULT,
    "priority": options.PRIORITY_DEFAULT,
    "max_attempts": options.MAX_ATTEMPTS_DEFAULT,
}


def _pick(value: Any, registered: Task | None, option: str) -> Any:
    if value is not None:
        return value
    return getattr(registered, option) if registered else _DEFAULTS[option]


# --- concurrency limits ------------------------------------------------------------------------

Concurrency = tuple[str, int]  # (key, limit)


def concurrency_of(spec: JobSpec) -> Concurrency | None:
    """The (key, limit) of a checked job: the spec's own (Task.spec() sets it), else the one
    its task, registered here by name, gives its arguments."""
    if spec.concurrency is not None:
        return spec.concurrency
    registered = REGISTRY.get(spec.task)
    if registered is None or registered.concurrency_limit is None:
        return None
    return registered.concurrency_for(spec.args)


Rate = tuple[str, int, float]  # (key, starts, period seconds)


def rate_of(spec: JobSpec) -> Rate | None:
    """The (key, starts, period) of a checked job, found as ``concurrency_of`` finds its own."""
    if spec.rate is not None:
        return spec.rate
    registered = REGISTRY.get(spec.task)
    if registered is None or registered.rate_limit is None:
        return None
    return registered.rate_for(spec.args)


def concurrency_all(specs: list[JobSpec]) -> list[Concurrency | None] | None:
    """Each job's ``concurrency_of``, or None when no job of the batch has a limit of either
    kind (the batch then takes the plain statements, and pays one registry lookup per task
    name)."""
    limited_names: dict[str, bool] = {}
    found = False
    for spec in specs:
        if spec.concurrency is not None or spec.rate is not None:
            found = True
            break
        name = spec.task
        limited = limited_names.get(name)
        if limited is None:
            task = REGISTRY.get(name)
            limited = limited_names[name] = task is not None and (
                task.concurrency_limit is not None or task.rate_limit is not None
            )
        if limited:
            found = True
            break
    return [concurrency_of(spec) for spec in specs] if found else None


# --- the INSERT's document ----------------------------------------------------------------------


def insert_document(rows: list[Row]) -> str:
    """The rows as the JSON array job_insert_many.sql reads with jsonb_to_recordset."""
    return "[" + ",".join(_row_json(row) for row in rows) + "]"


def insert_document_limited(
    rows: list[Row], limits: list[Concurrency | None], rates: list[Rate | None]
) -> str:
    """``insert_document`` with each job's concurrency and rate keys and limits
    (job_insert_many_blocked.sql)."""
    return (
        "["
        + ",".join(
            _row_json(row)[:-1] + _concurrency_json(limit) + _rate_json(rate)
            for row, limit, rate in zip(rows, limits, rates, strict=True)
        )
        + "]"
    )


def _concurrency_json(limit: Concurrency | None) -> str:
    if limit is None:
        return ',"concurrency_key":null,"concurrency_limit":null'
    return f',"concurrency_key":{json_text(limit[0])},"concurrency_limit":{limit[1]}'


def _rate_json(rate: Rate | None) -> str:
    if rate is None:
        return ',"rate_key":null,"max_starts":null,"period":null}'
    return f',"rate_key":{json_text(rate[0])},"max_starts":{rate[1]},"period":{rate[2]!r}}}'


def _row_json(row: Row) -> str:
    # args are JSON text already (checked and encoded once); splice them in, not re-encode.
    queue, task, args, priority, run_at, delay, max_attempts, unique_key = row
    return (
        f'{{"queue":{json_text(queue)},"task":{json_text(task)},"args":{args},'
        f'"priority":{priority},'
        f'"run_at":{"null" if run_at is None else json_text(run_at.isoformat())},'
        f'"delay":{delay!r},"max_attempts":{max_attempts},'
        f'"unique_key":{"null" if unique_key is None else json_text(unique_key)}}}'
    )


_TEXT_ENCODER = json.JSONEncoder(ensure_ascii=False)


def json_text(value: str) -> str:
    """``value`` as a JSON string literal (non-ASCII kept as is)."""
    return _TEXT_ENCODER.encode(value)


# --- the COPY's rows ----------------------------------------------------------------------------


def due_queues(rows: list[Row]) -> dict[str, datetime | None]:
    """Each queue that may get a due job: None when one is due now, else its earliest run_at.

    A delayed job is never due at once (now() + delay > now()), unless its delay rounds to
    0 µs; queues with only delayed jobs are left out. The server compares the run_ats with
    its now() (job_ids_next.sql), as the INSERT compares each row's.
    """
    earliest: dict[str, datetime | None] = {}
    for queue, _task, _args, _priority, run_at, delay, _attempts, _key in rows:
        if run_at is not None:
            known = earliest.get(queue, run_at)
            if known is not None:
                earliest[queue] = min(known, run_at)
        elif not delay or _microseconds(delay) == 0:
            earliest[queue] = None
    return earliest


def is_scheduled(rows: list[Row]) -> bool:
    """True when some job has a run_at or a delay, so the COPY must carry run_at."""
    return any(run_at is not None or delay for _q, _t, _a, _p, run_at, delay, _m, _k in rows)


def copy_values(rows: list[Row], ids: list[int]) -> Iterator[tuple[Any, ...]]:
    """The rows of job_copy.sql: ``(id, queue, task, args, priority, max_attempts)``."""
    for job_id, (queue, task, args, priority, _r, _d, max_attempts, _k) in zip(
        ids, rows, strict=True
    ):
        yield (job_id, queue, task, args, priority, max_attempts)


def copy_values_scheduled(
    rows: list[Row], ids: list[int], now: datetime
) -> Iterator[tuple[Any, ...]]:
    """The rows of job_copy_scheduled.sql: ``copy_values`` and run_at.

    run_at is what the INSERT computes on the server: the given run_at, else now() + delay,
    with ``now`` the transaction's now(). The sum is made in UTC, so the delay is added in
    absolute time as PostgreSQL adds an interval of seconds, not on the wall clock of the
    session's time zone (which differ across a DST change).
    """
    now = now.astimezone(UTC)
    for job_id, (queue, task, args, priority, run_at, delay, max_attempts, _k) in zip(
        ids, rows, strict=True
    ):
        if run_at is None:
            run_at = now + timedelta(microseconds=_microseconds(delay))
        yield (job_id, queue, task, args, priority, max_attempts, run_at)


def _microseconds(seconds: float) -> int:
    # make_interval(secs => s) stores rint(s * 1e6) µs; round() rounds half to even too.
    return round(seconds * 1_000_000)
