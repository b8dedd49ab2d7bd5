"""Workflows against a real PostgreSQL and a real in-process worker: chains and groups run
in order, a callback runs once, a failure cancels what waits for it (naming it), and plain
jobs never touch the dependency table."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

import pgq
from pgq import admin, reaper
from pgq.registry import Registry
from pgq.worker import Worker, WorkerConfig

Conn = psycopg.Connection[Any]


@pytest.fixture
def reg() -> Registry:
    return Registry()


def run_burst(url: str, registry: Registry, **config: Any) -> None:
    config = {"burst": True, "run_reaper": False, "concurrency": 4, **config}
    asyncio.run(Worker(WorkerConfig(url, **config), registry=registry).run_async())


def states(conn: Conn, ids: list[int]) -> list[str]:
    rows = dict(
        conn.execute("SELECT id, state::text FROM pgq.jobs WHERE id = ANY(%s)", (ids,)).fetchall()
    )
    return [rows[i] for i in ids]


def ledger_tasks(reg: Registry, log: list[tuple[str, Any]]) -> dict[str, pgq.Task]:
    def record(name: str) -> pgq.Task:
        def body(**kwargs: Any) -> None:
            log.append((name, kwargs.get("n")))

        return pgq.task(body, name=f"wf.{name}", registry=reg)  # type: ignore[no-any-return]

    def fails(**kwargs: Any) -> None:
        log.append(("fails", kwargs.get("n")))
        raise pgq.Fail("boom")

    tasks = {name: record(name) for name in ("a", "b", "c", "member", "callback")}
    tasks["fails"] = pgq.task(fails, name="wf.fails", registry=reg)
    return tasks


def test_a_chain_runs_its_steps_in_order(db_url: str, conn: Conn, reg: Registry) -> None:
    log: list[tuple[str, Any]] = []
    t = ledger_tasks(reg, log)
    flow = pgq.chain(t["a"].spec(n=1), t["b"].spec(n=2), t["c"].spec(n=3)).enqueue(conn)

    assert states(conn, flow.job_ids) == ["queued", "waiting", "waiting"]
    assert flow.id == flow.job_ids[0]
    run_burst(db_url, reg)

    assert log == [("a", 1), ("b", 2), ("c", 3)]
    assert states(conn, flow.job_ids) == ["succeeded"] * 3


def test_a_group_callback_runs_once_after_every_member(
    db_url: str, conn: Conn, reg: Registry
) -> None:
    log: list[tuple[str, Any]] = []
    t = ledger_tasks(reg, log)
    flow = (
        pgq.group([t["member"].spec(n=i) for i in range(50)])
        .then(t["callback"].spec(n=-1))
        .enqueue(conn)
    )
    callback_id = flow.last_id
    row = conn.execute(
        "SELECT state::text, parents_pending FROM pgq.jobs WHERE id = %s", (callback_id,)
    ).fetchone()
    assert row == ("waiting", 50)

    run_burst(db_url, reg)

    assert log[-1] == ("callback", -1)
    assert sorted(n for name, n in log if name == "member") == list(range(50))
    assert [name for name, _ in log].count("callback") == 1
    assert states(conn, [callback_id]) == ["succeeded"]


def test_groups_nest_in_chains(db_url: str, conn: Conn, reg: Registry) -> None:
    log: list[tuple[str, Any]] = []
    t = ledger_tasks(reg, log)
    flow = pgq.chain(
        t["a"].spec(n=0),
        pgq.group([t["member"].spec(n=1), pgq.chain(t["b"].spec(n=2), t["c"].spec(n=3))]),
        t["callback"].spec(n=4),
    ).enqueue(conn)
    edges = conn.execute(
        "SELECT parent_id - %s, child_id - %s FROM pgq.job_dependencies ORDER BY 1, 2",
        (flow.id, flow.id),
    ).fetchall()
    # a -> member, a -> b, b -> c; member -> callback, c -> callback
    assert edges == [(0, 1), (0, 2), (1, 4), (2, 3), (3, 4)]

    run_burst(db_url, reg)

    order = [name for name, _ in log]
    assert order[0] == "a" and order[-1] == "callback"
    assert order.index("b") < order.index("c")
    assert states(conn, flow.job_ids) == ["succeeded"] * 5


def test_a_failed_member_cancels_what_waits_for_it_and_names_it(
    db_url: str, conn: Conn, reg: Registry
) -> None:
    log: list[tuple[str, Any]] = []
    t = ledger_tasks(reg, log)
    flow = pgq.chain(
        pgq.group([t["member"].spec(n=1), t["fails"].spec(n=2)]),
        t["b"].spec(n=3),
        t["c"].spec(n=4),
    ).enqueue(conn)
    failing = flow.job_ids[1]

    run_burst(db_url, reg)

    assert states(conn, flow.job_ids) == ["succeeded", "failed", "cancelled", "cancelled"]
    assert ("b", 3) not in log and ("c", 4) not in log
    for job_id in flow.job_ids[2:]:
        error = conn.execute("SELECT errors->-1 FROM pgq.jobs WHERE id = %s", (job_id,)).fetchone()
        assert error is not None
        assert error[0]["parent_id"] == failing
        assert error[0]["kind"] == "parent_failed"
        assert f"job {failing} (wf.fails) failed" in error[0]["message"]


def test_a_callback_asked_to_run_on_failure_runs_once_all_finished(
    db_url: str, conn: Conn, reg: Registry
) -> None:
    log: list[tuple[str, Any]] = []
    t = ledger_tasks(reg, log)
    flow = (
        pgq.group([t["member"].spec(n=1), t["fails"].spec(n=2), t["member"].spec(n=3)])
        .then(t["callback"].spec(n=9), on_failure="run")
        .enqueue(conn)
    )

    run_burst(db_url, reg)

    assert states(conn, flow.job_ids) == ["succeeded", "failed", "succeeded", "succeeded"]
    assert [name for name, _ in log].count("callback") == 1


def test_retries_and_snoozes_do_not_release_dependents(
    db_url: str, conn: Conn, reg: Registry
) -> None:
    attempts: list[int] = []

    @pgq.task(name="wf.flaky", registry=reg, backoff=pgq.Backoff(base=0.01, jitter=0.0))
    def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise pgq.Snooze(0)
        if len(attempts) == 2:
            raise RuntimeError("try again")

    log: list[tuple[str, Any]] = []
    t = ledger_tasks(reg, log)
    flow = pgq.chain(flaky.spec(), t["b"].spec(n=1)).enqueue(conn)

    for _ in range(50):
        run_burst(db_url, reg)
        if states(conn, [flow.last_id]) == ["succeeded"]:
            break
        # Until the parent succeeded, the child never left waiting.
        assert states(conn, [flow.last_id]) == ["waiting"]
    assert len(attempts) == 3
    assert log == [("b", 1)]


def test_cancelling_a_waiting_parent_cancels_its_dependents(db_url: str, conn: Conn) -> None:
    flow = pgq.chain(pgq.JobSpec("wf.x"), pgq.JobSpec("wf.y"), pgq.JobSpec("wf.z")).enqueue(conn)

    result = admin.cancel_jobs(conn, [flow.job_ids[1]])

    assert result.cancelled == [flow.job_ids[1]]
    assert states(conn, flow.job_ids) == ["queued", "cancelled", "cancelled"]


def test_the_reaper_failing_a_lapsed_parent_cancels_its_dependents(db_url: str, conn: Conn) -> None:
    flow = pgq.chain(pgq.JobSpec("wf.x", max_attempts=1), pgq.JobSpec("wf.y")).enqueue(conn)
    conn.execute(
        "UPDATE pgq.jobs SET state = 'running', attempts = 1, lease_token = 1, "
        "lease_expires_at = now() - interval '1 minute' WHERE id = %s",
        (flow.id,),
    )

    reaper.reap_once(conn)

    assert states(conn, flow.job_ids) == ["failed", "cancelled"]


def test_a_workflow_enqueue_rolls_back_with_its_transaction(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        pgq.group([pgq.JobSpec("wf.x")]).then(pgq.JobSpec("wf.y")).enqueue(conn)
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM pgq.jobs").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pgq.job_dependencies").fetchone() == (0,)


def test_workflow_jobs_cannot_have_a_unique_key(conn: Conn) -> None:
    with pytest.raises(pgq.OptionError, match=r"jobs\[1\].*unique_key"):
        pgq.chain(pgq.JobSpec("wf.x"), pgq.JobSpec("wf.y", unique_key="k")).enqueue(conn)
    assert conn.execute("SELECT count(*) FROM pgq.jobs").fetchone() == (0,)


def test_a_plain_job_has_no_dependents_and_writes_no_edges(
    db_url: str, conn: Conn, reg: Registry
) -> None:
    log: list[tuple[str, Any]] = []
    t = ledger_tasks(reg, log)
    job_id = t["a"].enqueue(conn, n=1)

    run_burst(db_url, reg)

    row = conn.execute(
        "SELECT state::text, has_dependents, workflow_id, parents_pending FROM pgq.jobs "
        "WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row == ("succeeded", False, None, None)
    assert conn.execute("SELECT count(*) FROM pgq.job_dependencies").fetchone() == (0,)


def test_a_callback_reads_how_its_members_ended(db_url: str, conn: Conn, reg: Registry) -> None:
    seen: list[list[tuple[str, str]]] = []

    @pgq.task(name="wf.report", registry=reg, pass_context=True)
    def report(ctx: pgq.JobContext) -> None:
        with psycopg.connect(db_url) as own:
            seen.append([(p.task, p.state) for p in pgq.parents(own, ctx.id)])

    log: list[tuple[str, Any]] = []
    t = ledger_tasks(reg, log)
    flow = (
        pgq.group([t["member"].spec(n=1), t["fails"].spec(n=2)])
        .then(report.spec(), on_failure="run")
        .enqueue(conn)
    )

    run_burst(db_url, reg)

    assert seen == [[("wf.member", "succeeded"), ("wf.fails", "failed")]]
    assert pgq.parents(conn, flow.job_ids[0]) == []


def test_a_running_task_fans_out_a_whole_workflow(db_url: str, conn: Conn, reg: Registry) -> None:
    log: list[tuple[str, Any]] = []
    t = ledger_tasks(reg, log)
    attempts: list[int] = []

    fast = pgq.Backoff(base=0.01, jitter=0.0)

    @pgq.task(name="wf.delete_account", registry=reg, pass_context=True, backoff=fast)
    def delete_account(ctx: pgq.JobContext, user_id: int) -> None:
        attempts.append(ctx.attempt)
        # The fan-out commits with this job's success; the first attempt raises after
        # enqueueing it, so nothing of that attempt may remain.
        pgq.group([t["member"].spec(n=i) for i in range(20)]).then(
            t["callback"].spec(n=user_id)
        ).enqueue(ctx.transaction())
        if ctx.attempt == 1:
            raise RuntimeError("crash after the fan-out")

    delete_account.configure(max_attempts=2).enqueue(conn, user_id=3)
    for _ in range(20):
        run_burst(db_url, reg)
        if log and log[-1][0] == "callback":
            break

    assert attempts[:2] == [1, 2]
    names = [name for name, _ in log]
    assert names.count("member") == 20 and names.count("callback") == 1
    assert log[-1] == ("callback", 3)
    assert conn.execute("SELECT count(*) FROM pgq.jobs WHERE task = 'wf.member'").fetchone() == (
        20,
    )


def test_a_workflow_enqueues_through_sqlalchemy_and_async_psycopg(
    db_url: str, sa_url: str, conn: Conn
) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    engine = create_engine(sa_url)
    with Session(engine) as session, session.begin():
        flow = pgq.chain(pgq.JobSpec("wf.x"), pgq.JobSpec("wf.y")).enqueue(session)
    engine.dispose()

    async def enqueue_async() -> pgq.Workflow:
        async with await psycopg.AsyncConnection.connect(db_url) as aconn:
            handle = await pgq.group([pgq.JobSpec("wf.x")]).then(pgq.JobSpec("wf.y")).enqueue(aconn)
            await aconn.commit()
            return handle  # type: ignore[no-any-return]

    async_flow = asyncio.run(enqueue_async())

    assert states(conn, flow.job_ids) == ["queued", "waiting"]
    assert states(conn, async_flow.job_ids) == ["queued", "waiting"]
    assert async_flow.id > flow.last_id


def test_pruning_a_workflow_job_takes_its_edges_with_it(conn: Conn) -> None:
    flow = pgq.chain(pgq.JobSpec("wf.x"), pgq.JobSpec("wf.y")).enqueue(conn)
    plain = pgq.enqueue(conn, "wf.plain")
    conn.execute(
        "UPDATE pgq.jobs SET state = 'succeeded', finished_at = now() - interval '30 days'"
    )
    assert conn.execute("SELECT parent_id, child_id FROM pgq.job_dependencies").fetchall() == [
        tuple(flow.job_ids)
    ]

    result = reaper.prune_once(conn)

    assert result.deleted["succeeded"] == 3 and plain is not None
    assert conn.execute("SELECT count(*) FROM pgq.job_dependencies").fetchone() == (0,)


def test_a_dependent_reads_its_parents_results(db_url: str, conn: Conn, reg: Registry) -> None:
    seen: list[Any] = []

    @pgq.task(name="wf.count", registry=reg)
    def count(n: int) -> dict[str, int]:
        return {"rows": n}

    @pgq.task(name="wf.total", registry=reg, pass_context=True)
    def total(ctx: pgq.JobContext) -> int:
        parents = pgq.parents(ctx.transaction(), ctx.id)
        seen.append([p.result for p in parents])
        return sum(p.result["rows"] for p in parents)

    flow = pgq.group([count.spec(n=n) for n in (1, 2, 3)]).then(total.spec()).enqueue(conn)

    run_burst(db_url, reg)

    assert seen == [[{"rows": 1}, {"rows": 2}, {"rows": 3}]]
    assert pgq.result(conn, flow.last_id) == 6


def test_a_wait_on_a_callback_hears_its_cancellation(
    db_url: str, conn: Conn, reg: Registry
) -> None:
    log: list[tuple[str, Any]] = []
    t = ledger_tasks(reg, log)
    flow = pgq.group([t["fails"].spec(n=1)]).then(t["callback"].spec(n=2)).enqueue(conn)
    conn.execute("UPDATE pgq.jobs SET waited = true WHERE id = %s", (flow.last_id,))
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN pgq_finished")

        run_burst(db_url, reg)

        heard = [n.payload for n in listener.notifies(timeout=10, stop_after=1)]
    assert str(flow.last_id) in heard
    with pytest.raises(pgq.JobCancelled):
        pgq.result(conn, flow.last_id)


def test_a_concurrency_limited_task_is_refused_in_a_workflow(conn: Conn, reg: Registry) -> None:
    @pgq.task(name="wf.limited", registry=reg, concurrency_limit=1)
    def limited() -> None: ...

    with pytest.raises(pgq.OptionError, match=r"jobs\[1\] \(wf.limited\): a task with a con"):
        pgq.chain(pgq.JobSpec("wf.x"), limited.spec()).enqueue(conn)
    assert conn.execute("SELECT count(*) FROM pgq.jobs").fetchone() == (0,)


def test_a_rate_limited_task_is_refused_in_a_workflow(conn: Conn, reg: Registry) -> None:
    @pgq.task(name="wf.rated", registry=reg, rate_limit="2/m")
    def rated() -> None: ...

    with pytest.raises(pgq.OptionError, match=r"jobs\[2\] \(wf.rated\): .* or rate limit"):
        pgq.chain(pgq.JobSpec("wf.x"), pgq.group([pgq.JobSpec("wf.y"), rated.spec()])).enqueue(conn)
    assert conn.execute("SELECT count(*) FROM pgq.jobs").fetchone() == (0,)
