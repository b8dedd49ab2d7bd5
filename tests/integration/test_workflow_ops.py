"""Operating workflows: `pgq retry` of a failed member resumes its workflow, cancelling a
workflow cancels what has not finished, `pgq workflow ID` shows the tree, and waiting jobs
show in `pgq stats` and `pgq jobs --state waiting`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

import pgq
from pgq import admin, workflows
from pgq.cli import _register_commands, app
from pgq.registry import Registry
from pgq.worker import Worker, WorkerConfig

Conn = psycopg.Connection[Any]
_register_commands()


def run_burst(url: str, registry: Registry) -> None:
    config = WorkerConfig(url, burst=True, run_reaper=False, concurrency=4)
    asyncio.run(Worker(config, registry=registry).run_async())


def states(conn: Conn, ids: list[int]) -> list[str]:
    found = dict(
        conn.execute("SELECT id, state::text FROM pgq.jobs WHERE id = ANY(%s)", (ids,)).fetchall()
    )
    return [found[i] for i in ids]


def cli(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [*args, "--database-url", url])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def reg() -> Registry:
    return Registry()


@pytest.fixture
def flaky(reg: Registry) -> dict[str, Any]:
    """Tasks whose failure a test switches off: ``broken["on"]``."""
    broken = {"on": True}
    ran: list[str] = []

    @pgq.task(name="ops.member", registry=reg)
    def member(n: int) -> None:
        if n == 0 and broken["on"]:
            raise pgq.Fail("disk full")
        ran.append(f"member{n}")

    @pgq.task(name="ops.after", registry=reg)
    def after(step: str) -> None:
        ran.append(step)

    return {"broken": broken, "ran": ran, "member": member, "after": after}


def test_retrying_the_failed_member_resumes_the_workflow(
    db_url: str, conn: Conn, reg: Registry, flaky: dict[str, Any]
) -> None:
    member, after = flaky["member"], flaky["after"]
    flow = pgq.chain(
        pgq.group([member.spec(n=0), member.spec(n=1)]),
        after.spec(step="callback"),
        after.spec(step="last"),
    ).enqueue(conn)
    run_burst(db_url, reg)
    assert states(conn, flow.job_ids) == ["failed", "succeeded", "cancelled", "cancelled"]

    flaky["broken"]["on"] = False
    result = admin.retry_jobs(conn, [flow.job_ids[0]])
    assert (result.retried, result.resumed, result.kept_cancelled) == ([flow.job_ids[0]], 2, 0)
    # The cancelled dependents wait again, each for the one job retried or restored before it.
    rows = conn.execute(
        "SELECT state::text, parents_pending, finished_at FROM pgq.jobs WHERE id = ANY(%s) "
        "ORDER BY id",
        (flow.job_ids[2:],),
    ).fetchall()
    assert rows == [("waiting", 1, None), ("waiting", 1, None)]

    run_burst(db_url, reg)

    assert states(conn, flow.job_ids) == ["succeeded"] * 4
    assert flaky["ran"][-2:] == ["callback", "last"]


def test_retry_failed_resumes_workflows_too(
    db_url: str, conn: Conn, reg: Registry, flaky: dict[str, Any]
) -> None:
    member, after = flaky["member"], flaky["after"]
    flow = pgq.group([member.spec(n=0)]).then(after.spec(step="callback")).enqueue(conn)
    run_burst(db_url, reg)
    flaky["broken"]["on"] = False

    code, out, _ = cli(db_url, "retry", "--failed")
    assert code == 0 and "resumed 1 workflow job: waiting for their parents again" in out
    run_burst(db_url, reg)

    assert states(conn, flow.job_ids) == ["succeeded", "succeeded"]


def test_a_dependent_held_by_another_failed_parent_stays_cancelled(
    db_url: str, conn: Conn, reg: Registry, flaky: dict[str, Any]
) -> None:
    member, after = flaky["member"], flaky["after"]
    flow = (
        pgq.group([member.spec(n=0), member.spec(n=0)])
        .then(after.spec(step="callback"))
        .enqueue(conn)
    )
    run_burst(db_url, reg)
    assert states(conn, flow.job_ids) == ["failed", "failed", "cancelled"]

    admin.retry_jobs(conn, [flow.job_ids[0]])
    # The other member is still failed: the callback stays cancelled.
    assert states(conn, flow.job_ids) == ["queued", "failed", "cancelled"]

    admin.retry_jobs(conn, [flow.job_ids[1]])
    assert states(conn, flow.job_ids) == ["queued", "queued", "waiting"]


def test_retrying_both_failed_members_at_once_waits_for_both(
    db_url: str, conn: Conn, reg: Registry, flaky: dict[str, Any]
) -> None:
    member, after = flaky["member"], flaky["after"]
    flow = (
        pgq.group([member.spec(n=0), member.spec(n=0)])
        .then(after.spec(step="callback"))
        .enqueue(conn)
    )
    run_burst(db_url, reg)

    admin.retry_jobs(conn, flow.job_ids[:2])

    row = conn.execute(
        "SELECT state::text, parents_pending FROM pgq.jobs WHERE id = %s", (flow.last_id,)
    ).fetchone()
    assert row == ("waiting", 2)
    flaky["broken"]["on"] = False
    run_burst(db_url, reg)
    assert states(conn, flow.job_ids) == ["succeeded"] * 3


def test_cancelling_a_workflow_cancels_every_unfinished_job(conn: Conn) -> None:
    flow = pgq.chain(
        pgq.JobSpec("ops.a"), pgq.group([pgq.JobSpec("ops.b"), pgq.JobSpec("ops.c")])
    ).enqueue(conn)
    conn.execute(
        "UPDATE pgq.jobs SET state = 'succeeded', finished_at = now() WHERE id = %s", (flow.id,)
    )

    result = workflows.cancel_workflow(conn, flow.last_id)

    assert result is not None and sorted(result.cancelled) == flow.job_ids[1:]
    assert states(conn, flow.job_ids) == ["succeeded", "cancelled", "cancelled"]
    assert workflows.cancel_workflow(conn, 999_999) is None


def test_pgq_workflow_shows_the_tree_and_json(db_url: str, conn: Conn) -> None:
    flow = (
        pgq.group([pgq.JobSpec("ops.member", {"n": i}) for i in range(3)])
        .then(pgq.JobSpec("ops.callback"))
        .enqueue(conn)
    )

    code, out, _ = cli(db_url, "workflow", str(flow.last_id))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"workflow {flow.id}: 4 jobs (1 waiting, 3 queued)"
    assert lines[1] == "step 1 (3 jobs)"
    assert lines[5] == "step 2"
    assert lines[6] == f"  {flow.last_id}  ops.callback  waiting (for 3 of 3 parents)"

    code, out, _ = cli(db_url, "workflow", str(flow.id), "--json")
    data = json.loads(out)
    assert data["id"] == flow.id
    assert data["counts"]["waiting"] == 1 and data["counts"]["queued"] == 3
    assert data["jobs"][-1]["parents"] == flow.job_ids[:3]


def test_pgq_workflow_of_a_plain_job_says_so(db_url: str, conn: Conn) -> None:
    job_id = pgq.enqueue(conn, "ops.plain")
    code, _, err = cli(db_url, "workflow", str(job_id))
    assert code == 1
    assert f"job {job_id}: not found, or not part of a workflow" in err


def test_pgq_cancel_workflow(db_url: str, conn: Conn) -> None:
    flow = pgq.chain(pgq.JobSpec("ops.a"), pgq.JobSpec("ops.b")).enqueue(conn)

    code, out, _ = cli(db_url, "cancel", "--workflow", str(flow.last_id), "--json")

    assert code == 0
    assert sorted(json.loads(out)["cancelled"]) == flow.job_ids
    assert states(conn, flow.job_ids) == ["cancelled", "cancelled"]


def test_waiting_jobs_show_in_stats_and_jobs(db_url: str, conn: Conn) -> None:
    flow = pgq.chain(pgq.JobSpec("ops.a"), pgq.JobSpec("ops.b")).enqueue(conn)

    code, out, _ = cli(db_url, "stats", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert (row["queue"], row["ready"], row["waiting"]) == ("default", 1, 1)

    code, out, _ = cli(db_url, "jobs", "--state", "waiting", "--json")
    assert [job["id"] for job in json.loads(out)] == [flow.last_id]


def test_a_dependent_of_a_still_running_member_stays_cancelled_on_retry(
    db_url: str, conn: Conn
) -> None:
    flow = (
        pgq.group([pgq.JobSpec("ops.fails"), pgq.JobSpec("ops.runs")])
        .then(pgq.JobSpec("ops.callback"))
        .enqueue(conn)
    )
    failed, running, _callback = flow.job_ids
    conn.execute("UPDATE pgq.jobs SET state = 'running' WHERE id = %s", (running,))
    assert admin.cancel_jobs(conn, [failed]).cancelled == [failed]
    assert states(conn, flow.job_ids) == ["cancelled", "running", "cancelled"]

    # Its finish may be in flight with a snapshot in which the callback is cancelled: the
    # callback is not restored while that member runs (docs/workflows.md, "Failure").
    code, out, _ = cli(db_url, "retry", str(failed))
    assert code == 0
    assert "left 1 workflow job cancelled: another of their parents is running" in out
    assert states(conn, flow.job_ids) == ["queued", "running", "cancelled"]


def test_pgq_show_names_the_workflow_and_what_a_job_waits_for(db_url: str, conn: Conn) -> None:
    flow = pgq.chain(pgq.JobSpec("ops.a"), pgq.JobSpec("ops.b")).enqueue(conn)

    code, out, _ = cli(db_url, "show", str(flow.last_id), "--json")

    assert code == 0
    shown = json.loads(out)
    assert (shown["state"], shown["workflow_id"], shown["parents_pending"]) == (
        "waiting",
        flow.id,
        1,
    )
    code, out, _ = cli(db_url, "show", str(flow.last_id))
    assert any(line.split()[:2] == ["workflow_id", str(flow.id)] for line in out.splitlines())
