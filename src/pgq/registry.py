"""Tasks: the ``@pgq.task`` decorator and the registry a worker looks names up in.

A worker runs a job only if its task name is registered in that process (guarantee 5):
nothing is ever imported or evaluated from a name read from the database.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from pgq import limits, options
from pgq.args import args_problem, bind_args, signature_of
from pgq.errors import OptionError, TaskRegistrationError
from pgq.retry import DEFAULT_BACKOFF, Backoff

# The per-job options Task.configure() and JobSpec accept besides task and args.
JOB_OPTIONS = frozenset({"queue", "priority", "run_at", "delay", "max_attempts", "unique_key"})
LEASE_DEFAULT = 30.0  # seconds; the worker may override the default, a task may override both


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to enqueue: what [`enqueue_many`][pgq.enqueue_many] takes, ``Task.spec()`` makes."""

    task: str
    args: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    run_at: datetime | None = None
    delay: float | timedelta | None = None
    max_attempts: int | None = None
    unique_key: str | None = None
    # (key, limit) of a task with a concurrency limit; Task.spec() and enqueue() fill it in.
    concurrency: tuple[str, int] | None = None
    # (key, starts, period seconds) of a task with a rate limit; filled in the same way.
    rate: tuple[str, int, float] | None = None


@dataclass(frozen=True)
class Task:
    """A registered task: call it like the function, enqueue it with ``.enqueue(session, ...)``."""

    func: Callable[..., Any]
    name: str
    queue: str = options.QUEUE_DEFAULT
    priority: int = options.PRIORITY_DEFAULT
    max_attempts: int = options.MAX_ATTEMPTS_DEFAULT
    lease: float | None = None
    timeout: float | None = None
    backoff: Backoff = DEFAULT_BACKOFF
    pass_context: bool = False
    on_failure: Callable[[Any, BaseException | None], None] | None = None
    concurrency_limit: int | None = None
    concurrency_key: limits.ConcurrencyKey | None = None
    rate_limit: tuple[int, float] | None = None  # (starts, period seconds)
    rate_key: limits.ConcurrencyKey | None = None

    @functools.cached_property
    def is_async(self) -> bool:
        # Cached: the worker asks for every job, and inspect takes 4 us each time.
        return inspect.iscoroutinefunction(self.func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def bind_args(self, args: Mapping[str, Any]) -> None:
        """Raise [`ArgsError`][pgq.ArgsError] naming the parameter unless the task's function
        takes ``args`` as its keyword arguments (see [`pgq.args.bind_args`][pgq.args.bind_args])."""
        bind_args(self.func, args, pass_context=self.pass_context)

    def args_problem(self, args: Mapping[str, Any]) -> str | None:
        """Why ``args`` do not bind to the function, or None: what a worker checks."""
        sig = self._signature
        return args_problem(self.func, args) if sig is None else sig.check(args)

    @functools.cached_property
    def _signature(self) -> Any:
        # Cached: the worker checks every job it starts, and the lookup by function took
        # half of the check's 0.6 us.
        return signature_of(self.func, self.pass_context)

    def concurrency_for(self, args: Mapping[str, Any]) -> tuple[str, int] | None:
        """``(key, limit)`` a job of this task with ``args`` runs under, or None."""
        if self.concurrency_limit is None:
            return None
        key = limits.concurrency_key_of(self.name, self.concurrency_key, args)
        return key, self.concurrency_limit

    def rate_for(self, args: Mapping[str, Any]) -> tuple[str, int, float] | None:
        """``(key, starts, period)`` a job of this task with ``args`` is admitted under, or None."""
        if self.rate_limit is None:
            return None
        key = limits.concurrency_key_of(self.name, self.rate_key, args, "rate_key")
        return key, *self.rate_limit

    def spec(self, **kwargs: Any) -> JobSpec:
        """A [`JobSpec`][pgq.JobSpec] for this task: ``kwargs`` as its arguments, its defaults."""
        return self.configure().spec(**kwargs)

    def configure(self, **job_options: Any) -> TaskCall:
        """Override job options for one enqueue: ``task.configure(delay=60).enqueue(session, x=1)``.

        Accepts queue, priority, run_at, delay, max_attempts and unique_key; an option left
        out or None keeps the task's default. Raises OptionError for any other name.
        """
        unknown = sorted(set(job_options) - JOB_OPTIONS)
        if unknown:
            raise OptionError(
                f"{self.name}.configure() got unknown option(s) {', '.join(unknown)}; "
                f"it accepts {', '.join(sorted(JOB_OPTIONS))}"
            )
        # The task's own defaults go into the spec, so they hold whichever registry the
        # task lives in (enqueue only looks names up in the global one).
        defaults = JobSpec(
            task=self.name, queue=self.queue, priority=self.priority, max_attempts=self.max_attempts
        )
        chosen = {key: value for key, value in job_options.items() if value is not None}
        return TaskCall(self, replace(defaults, **chosen))

    def enqueue(self, session: Any, **kwargs: Any) -> Any:
        """Enqueue this task with ``kwargs`` as its arguments in ``session``'s transaction.

        Returns the job id (awaitable for async sessions). See [`pgq.enqueue`][pgq.enqueue.enqueue].
        """
        return self.configure().enqueue(session, **kwargs)


@dataclass(frozen=True, slots=True)
class TaskCall:
    """A task with per-call job options, from [`Task.configure`][pgq.Task.configure]."""

    task: Task
    options: JobSpec

    def spec(self, **kwargs: Any) -> JobSpec:
        self.task.bind_args(kwargs)
        return replace(
            self.options,
            args=kwargs,
            concurrency=self.task.concurrency_for(kwargs),
            rate=self.task.rate_for(kwargs),
        )

    def enqueue(self, session: Any, **kwargs: Any) -> Any:
        from pgq.enqueue import enqueue_spec

        return enqueue_spec(session, self.spec(**kwargs))


class Registry:
    """Task names → tasks, for one process."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def add(self, task: Task) -> Task:
        existing = self._tasks.get(task.name)
        if existing is not None and _origin(existing.func) != _origin(task.func):
            raise TaskRegistrationError(
                f"task name {task.name!r} is already registered by "
                f"{_origin(existing.func)}; give one of them another name"
            )
        self._tasks[task.name] = task
        return task

    def get(self, name: str) -> Task | None:
        return self._tasks.get(name)

    def remove(self, name: str) -> None:
        self._tasks.pop(name, None)

    def __iter__(self) -> Iterator[Task]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    def queues(self) -> list[str]:
        return sorted({task.queue for task in self._tasks.values()})


REGISTRY = Registry()


def task(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    queue: str = options.QUEUE_DEFAULT,
    priority: int = options.PRIORITY_DEFAULT,
    max_attempts: int = options.MAX_ATTEMPTS_DEFAULT,
    lease: float | None = None,
    timeout: float | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
    pass_context: bool = False,
    on_failure: Callable[[Any, BaseException | None], None] | None = None,
    concurrency_limit: int | None = None,
    concurrency_key: limits.ConcurrencyKey | None = None,
    rate_limit: str | None = None,
    rate_key: limits.ConcurrencyKey | None = None,
    registry: Registry | None = None,
) -> Any:
    """Register a function as a task. Use as ``@pgq.task`` or ``@pgq.task(queue="emails")``.

    ``name`` defaults to ``module.function``. ``lease`` (seconds) overrides the worker's lease
    for long jobs; ``timeout`` (seconds) bounds one attempt; ``backoff`` sets the retry delays;
    ``pass_context=True`` passes a [`pgq.JobContext`][pgq.JobContext] as the first argument;
    ``on_failure(job, exc)`` is called after each failed attempt (for error trackers).

    ``concurrency_limit=N``: at most N jobs of one key run at once, across every worker,
    in enqueue order with N = 1; the others wait ``blocked``. The key is the task's name
    (N for the whole task) unless ``concurrency_key`` is a string (shared by every task
    that gives it, e.g. one for a whole queue) or a function of the job's arguments, e.g.
    ``lambda args: f"customer:{args['customer_id']}"``.

    ``rate_limit="10/s"`` (or ``"600/m"``, ``"5/10s"``, ``"1000/h"``): at most that many jobs
    of one key start in any window of the period, across every worker; ``rate_key`` picks
    the key as ``concurrency_key`` does. A task takes one of the two limits. See
    docs/flow-control.md.

    Raises TaskRegistrationError or a ValidationError naming the bad option.
    """

    def register(fn: Callable[..., Any]) -> Task:
        if not callable(fn):
            raise TaskRegistrationError(f"@pgq.task needs a function, not {fn!r}")
        for label, value in (("lease", lease), ("timeout", timeout)):
            if value is not None and not value > 0:
                raise TaskRegistrationError(f"{label} must be a positive number of seconds")
        new = Task(
            func=fn,
            name=options.check_task_name(
                f"{fn.__module__}.{fn.__qualname__}" if name is None else name
            ),
            queue=options.check_queue(queue),
            priority=options.check_priority(priority),
            max_attempts=options.check_max_attempts(max_attempts),
            lease=lease,
            timeout=timeout,
            backoff=backoff,
            pass_context=pass_context,
            on_failure=on_failure,
            concurrency_limit=limits.check_concurrency(
                name or fn.__qualname__, concurrency_limit, concurrency_key
            ),
            concurrency_key=concurrency_key,
            rate_limit=limits.check_rate(
                name or fn.__qualname__, rate_limit, rate_key, concurrency_limit
            ),
            rate_key=rate_key,
        )
        # "is None", not "or": an empty Registry is falsy (it has __len__).
        return (REGISTRY if registry is None else registry).add(new)

    return register(func) if func is not None else register


def _origin(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
