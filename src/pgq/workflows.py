"""Workflows: chains, groups with a callback, and jobs that wait for other jobs.

A workflow is built from [`JobSpec`][pgq.JobSpec]s (``task.spec(...)``) with
[`chain`][pgq.chain] (one step after the other) and [`group`][pgq.group] (side by side,
optionally followed by a callback with ``.then``). ``.enqueue(session)`` inserts all of it in
one statement in the caller's transaction, like any enqueue, and returns a
[`Workflow`][pgq.Workflow] handle with the ids.

A job with parents starts ``waiting``, outside the claim index, and is queued when its last
parent succeeds (sql/job_finish_release_many.sql says how, and why exactly once). A parent
that fails for good, or is cancelled, cancels its waiting dependents with an error naming
it, unless the dependent was added with ``on_failure="run"``: such a callback runs once every
parent finished, whatever their outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

import psycopg

from pgq import store
from pgq.admin import CancelResult, cancel_jobs, check_job_id
from pgq.errors import OptionError
from pgq.registry import JobSpec, TaskCall
from pgq.rows import (
    UNIQUE_KEY,
    Row,
    checked_rows,
    concurrency_all,
    concurrency_of,
    json_text,
    rate_of,
)

Step: TypeAlias = "JobSpec | Chain | Group"
OnFailure = Literal["cancel", "run"]
ON_FAILURE_CHOICES = ("cancel", "run")


@dataclass(frozen=True, slots=True)
class Workflow:
    """What ``.enqueue`` returns: the workflow's id (its first job's) and every job's id in
    the order the workflow lists them (a group's members, then its callback)."""

    id: int
    job_ids: list[int]

    @property
    def last_id(self) -> int:
        """The id of the workflow's last job (a chain's last step, a group's callback)."""
        return self.job_ids[-1]


@dataclass(frozen=True, slots=True)
class ParentJob:
    """One job another job waits (or waited) for, as [`pgq.parents`][pgq.parents] reads it."""

    id: int
    task: str
    state: str  # queued | waiting | running | succeeded | failed | cancelled
    finished_at: datetime | None
    result: Any = None  # what its task returned (JSON), once it succeeded


def parents(session: Any, job_id: int) -> Any:
    """The jobs ``job_id`` waits for in its workflow (a chain's previous step, a group's
    members for its callback), oldest first, as a list of [`ParentJob`][pgq.ParentJob]
    with their states and results (awaitable for async sessions). Empty for a job without
    parents.

    ``session`` is anything [`pgq.enqueue`][pgq.enqueue.enqueue] takes; in a task,
    ``ctx.transaction()`` is one. A dependent reads what its parents returned, and a
    callback added with ``on_failure="run"`` how its members ended::

        @pgq.task(pass_context=True)
        def report(ctx):
            done = pgq.parents(ctx.transaction(), ctx.id)
            total = sum(p.result["rows"] for p in done if p.state == "succeeded")
            failed = [p.id for p in done if p.state != "succeeded"]
    """
    from pgq.enqueue import run_statement

    statement = store.select_parents(job_id=check_job_id(job_id))
    return run_statement(session, statement, lambda rows: [ParentJob(*row) for row in rows])


@dataclass(frozen=True, slots=True)
class WorkflowJob:
    """One job of a workflow as [`get_workflow`][pgq.workflows.get_workflow] reads it."""

    id: int
    task: str
    queue: str
    state: str
    attempts: int
    max_attempts: int
    parents_pending: int | None
    created_at: datetime
    finished_at: datetime | None
    parents: list[int]
    last_error: str | None


@dataclass(frozen=True, slots=True)
class WorkflowTree:
    """A workflow's jobs, oldest first, and how many are in each state."""

    id: int
    jobs: list[WorkflowJob]

    @property
    def counts(self) -> dict[str, int]:
        """Jobs per state, every state listed (0 for none)."""
        found = dict.fromkeys(("waiting", "queued", "running", "succeeded", "failed"), 0)
        found["cancelled"] = 0
        for job in self.jobs:
            found[job.state] = found.get(job.state, 0) + 1
        return found

    def steps(self) -> list[list[WorkflowJob]]:
        """The jobs by depth: step 0 has no parents, step n waits for a job of step n - 1
        (and maybe earlier ones)."""
        depth: dict[int, int] = {}
        for job in self.jobs:  # parents always have smaller ids than their children
            depth[job.id] = 1 + max((depth.get(p, -1) for p in job.parents), default=-1)
        levels: list[list[WorkflowJob]] = [[] for _ in range(max(depth.values()) + 1)]
        for job in self.jobs:
            levels[depth[job.id]].append(job)
        return levels


def get_workflow(conn: psycopg.Connection[Any], job_id: int) -> WorkflowTree | None:
    """The workflow ``job_id`` belongs to (its id or any member's), or None when the job is
    unknown or in no workflow."""
    rows = store.fetch(conn, store.get_workflow(job_id=check_job_id(job_id)))
    if not rows:
        return None
    jobs = [WorkflowJob(*row) for row in rows]
    return WorkflowTree(id=jobs[0].id, jobs=jobs)


def cancel_workflow(conn: psycopg.Connection[Any], job_id: int) -> CancelResult | None:
    """Cancel every job of ``job_id``'s workflow not yet final: queued and waiting ones now,
    running ones at their worker's next heartbeat (their dependents follow then). Returns
    what [`cancel_jobs`][pgq.admin.cancel_jobs] returns, or None when the job is unknown
    or in no workflow."""
    tree = get_workflow(conn, job_id)
    if tree is None:
        return None
    live = store.fetch(conn, store.list_live_workflow_jobs(workflow_id=tree.id))
    return cancel_jobs(conn, [row[0] for row in live])


@dataclass(frozen=True, slots=True)
class _Node:
    spec: JobSpec
    parents: tuple[int, ...]
    always: bool


class _Buildable:
    """What chains and groups share: enqueueing and the graph they turn into."""

    def enqueue(self, session: Any) -> Any:
        """Insert the whole workflow in ``session``'s transaction (one statement) and return
        a [`Workflow`][pgq.Workflow] (awaitable for async sessions).

        ``session`` is anything [`pgq.enqueue`][pgq.enqueue.enqueue] takes. Every job is
        validated first; a bad one raises its ValidationError, prefixed with its position,
        and nothing is sent.
        """
        from pgq.enqueue import run_statement

        nodes = _nodes(self)  # type: ignore[arg-type]
        if not nodes:
            raise OptionError("this workflow has no jobs: give the group or chain a task.spec()")
        document = _document(nodes, _checked_rows(nodes))
        return run_statement(session, store.insert_workflow(jobs=document), _handle)


@dataclass(frozen=True, slots=True)
class Chain(_Buildable):
    """Steps run one after the other: each starts when every job of the step before it
    succeeded. Make one with [`pgq.chain`][pgq.chain]."""

    steps: tuple[Step, ...]
    # For each step, whether its incoming edges count whatever the parents' outcome.
    always: tuple[bool, ...] = field(default=())

    def then(self, spec: JobSpec | TaskCall, *, on_failure: OnFailure = "cancel") -> Chain:
        """This chain, then ``spec`` (see [`Group.then`][pgq.Group.then])."""
        return Chain((*self.steps, _spec(spec)), (*self._always(), _check_on_failure(on_failure)))

    def _always(self) -> tuple[bool, ...]:
        return self.always or (False,) * len(self.steps)


@dataclass(frozen=True, slots=True)
class Group(_Buildable):
    """Steps that run side by side. Make one with [`pgq.group`][pgq.group]."""

    members: tuple[Step, ...]

    def then(self, spec: JobSpec | TaskCall, *, on_failure: OnFailure = "cancel") -> Chain:
        """The group, then the callback ``spec``, once: when every member succeeded.

        ``on_failure="cancel"`` (the default): a member that fails for good (or is cancelled)
        cancels the callback, its error naming that member. ``on_failure="run"``: the
        callback runs anyway once every member finished, whatever the outcomes; it can read
        them with [`pgq.parents`][pgq.parents].
        """
        return Chain((self, _spec(spec)), (False, _check_on_failure(on_failure)))


def chain(*steps: Step | TaskCall) -> Chain:
    """Steps that run one after another: ``pgq.chain(encode.spec(v=7), notify.spec(u=3))``.

    A step is a [`JobSpec`][pgq.JobSpec], a [`group`][pgq.group] or another chain; a step
    starts when every job of the step before succeeded. A step that fails for good cancels
    the steps after it. Raises OptionError for an empty chain or a step of another type.
    """
    if not steps:
        raise OptionError("pgq.chain() needs at least one step")
    return Chain(tuple(_step(step) for step in steps))


def group(members: Iterable[Step | TaskCall]) -> Group:
    """Steps that run side by side: ``pgq.group([delete.spec(id=i) for i in ids])``.

    Follow it with ``.then(callback_spec)`` for a job that runs once, after every member, or
    put it in a [`chain`][pgq.chain]. An empty group is allowed: its callback runs at once.
    """
    if isinstance(members, JobSpec | Chain | Group | str | bytes):
        raise OptionError("pgq.group() takes a list of steps: pgq.group([a.spec(), b.spec()])")
    return Group(tuple(_step(member) for member in members))


# --- turning a workflow into rows -----------------------------------------------------------


def _nodes(root: Step) -> list[_Node]:
    nodes: list[_Node] = []
    _add(root, (), False, nodes)
    return nodes


def _add(step: Step, parents: tuple[int, ...], always: bool, nodes: list[_Node]) -> list[int]:
    """Append ``step``'s jobs to ``nodes``; return the positions of its last jobs (the ones
    a following step waits for)."""
    if isinstance(step, JobSpec):
        nodes.append(_Node(step, parents, always))
        return [len(nodes) - 1]
    if isinstance(step, Group):
        if not step.members:  # nothing to wait for: what follows waits for what came before
            return list(parents)
        sinks: list[int] = []
        for member in step.members:
            sinks += _add(member, parents, always, nodes)
        return sinks
    current = list(parents)
    kinds = step.always or (False,) * len(step.steps)
    for index, (inner, inner_always) in enumerate(zip(step.steps, kinds, strict=True)):
        current = _add(inner, tuple(current), always if index == 0 else inner_always, nodes)
    return current


def _checked_rows(nodes: Sequence[_Node]) -> list[Row]:
    # enqueue_many's checks (each distinct option set once), the same errors, prefixed
    # with the job's position in the workflow's order.
    specs = [node.spec for node in nodes]
    rows = checked_rows(specs)
    if concurrency_all(specs) is not None:  # some job has a limit of either kind
        position, spec = next(
            (i, spec)
            for i, spec in enumerate(specs)
            if concurrency_of(spec) is not None or rate_of(spec) is not None
        )
        raise OptionError(
            f"jobs[{position}] ({spec.task}): a task with a concurrency or rate limit cannot "
            "be part of a workflow yet (a waiting job would not wait for its key when "
            "released); enqueue it on its own, e.g. from a workflow job's task"
        )
    for position, row in enumerate(rows):
        if row[UNIQUE_KEY] is not None:
            raise OptionError(
                f"jobs[{position}] ({row[1]}): a workflow's jobs cannot have a unique_key (a "
                "waiting job would take its key only when released); leave it out"
            )
    return rows


def _document(nodes: Sequence[_Node], rows: Sequence[Row]) -> str:
    """The JSON array workflow_insert.sql reads; args are JSON text already, spliced in."""
    has_children = {parent for node in nodes for parent in node.parents}
    items = []
    for index, (node, row) in enumerate(zip(nodes, rows, strict=True)):
        queue, task, args, priority, run_at, delay, max_attempts, _key = row
        parents = ",".join(str(p + 1) for p in node.parents)
        items.append(
            f'{{"queue":{json_text(queue)},"task":{json_text(task)},"args":{args},'
            f'"priority":{priority},'
            f'"run_at":{"null" if run_at is None else json_text(run_at.isoformat())},'
            f'"delay":{delay!r},"max_attempts":{max_attempts},"parents":[{parents}],'
            f'"always":{"true" if node.always else "false"},'
            f'"dependents":{"true" if index in has_children else "false"}}}'
        )
    return "[" + ",".join(items) + "]"


def _handle(rows: list[store.Row]) -> Workflow:
    ids = [row[0] for row in rows]
    return Workflow(id=ids[0], job_ids=ids)


def _step(step: Any) -> Step:
    if isinstance(step, TaskCall):
        return step.spec()
    if isinstance(step, JobSpec | Chain | Group):
        return step
    raise OptionError(
        f"a workflow step must be a JobSpec (task.spec(...)), pgq.group(...) or "
        f"pgq.chain(...), not {type(step).__name__}"
    )


def _spec(spec: Any) -> JobSpec:
    step = _step(spec)
    if not isinstance(step, JobSpec):
        raise OptionError("a callback is one job: pass task.spec(...)")
    return step


def _check_on_failure(value: str) -> bool:
    if value not in ON_FAILURE_CHOICES:
        raise OptionError(f"on_failure must be 'cancel' or 'run', not {value!r}")
    return value == "run"
