"""The dashboard over HTTP, served by a real uvicorn against a real PostgreSQL.

Every page answers; bad input gets a page with its status and no traceback; read-only mode
refuses every POST with 403; actions need authentication and a CSRF token that matches
the browser's cookie; private arguments stay hidden; secrets reach no page and no log;
links follow the prefix the app is mounted under.
"""

from __future__ import annotations

import base64
import logging
import re
import socket
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from tests.web_support import (
    Reply,
    Seeded,
    add_job,
    add_worker,
    request,
    seed_every_state,
    serve,
    wait_until,
)
from typer.testing import CliRunner

import pgq
import pgq.web
from pgq import cli, devdb, limits, migrate, scheduler
from pgq.errors import PgqError
from pgq.periodic import ScheduleRegistry
from pgq.registry import Registry
from pgq.web.auth import CSRF_COOKIE, CSRF_FIELD

Conn = psycopg.Connection[Any]


@pgq.task(registry=Registry(), queue="reports")
def hourly_report() -> None:
    """A task for the schedules page (never run here)."""


TOKEN = "test-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
CSRF_INPUT = re.compile(rf'name="{CSRF_FIELD}" value="([0-9a-f]+)"')


@pytest.fixture
def seeded(conn: Conn) -> Seeded:
    return seed_every_state(conn)


@pytest.fixture
def read_only(db_url: str) -> Iterator[str]:
    with serve(pgq.web.create_app(db_url, hide_args_for=["private.*"])) as base:
        yield base


@pytest.fixture
def with_actions(db_url: str) -> Iterator[str]:
    app = pgq.web.create_app(db_url, allow_actions=True, auth=pgq.web.token_auth(TOKEN))
    with serve(app) as base:
        yield base


def csrf_pair(base: str, path: str) -> tuple[dict[str, str], str]:
    """The CSRF cookie a page sets and the token its forms carry."""
    page = request("GET", base + path, headers=BEARER)
    assert page.status == 200, page.body
    match = CSRF_INPUT.search(page.body)
    assert match, "the page has no form with a CSRF token"
    return {CSRF_COOKIE: page.cookies[CSRF_COOKIE]}, match[1]


def state_of(conn: Conn, job_id: int) -> str:
    row = conn.execute("SELECT state::text FROM pgq.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


def assert_clean_error(reply: Reply, status: int) -> None:
    assert reply.status == status
    assert reply.headers["content-type"].startswith("text/html")
    assert f"<h1>{status}</h1>" in reply.body
    assert "Traceback" not in reply.body


def test_every_page_answers_with_its_content(read_only: str, seeded: Seeded) -> None:
    overview = request("GET", read_only + "/")
    assert overview.status == 200
    assert 'id="queues"' in overview.body and "<svg" in overview.body
    assert "read-only" in overview.body
    jobs = request("GET", read_only + "/jobs?state=failed")
    assert jobs.status == 200 and f'href="/jobs/{seeded.failed}"' in jobs.body
    detail = request("GET", read_only + f"/jobs/{seeded.failed}")
    assert detail.status == 200
    assert "card declined" in detail.body and "Traceback (most recent call last)" in detail.body
    assert "&#34;order&#34;: 3" in detail.body  # the args, escaped JSON
    failures = request("GET", read_only + "/failures")
    assert failures.status == 200 and "tests.web.charge" in failures.body
    assert 'hx-trigger="every 5s"' in overview.body  # the live part refreshes itself
    assert request("GET", read_only + "/static/htmx.min.js").status == 200


def test_pages_forbid_framing_inline_scripts_and_sniffing(read_only: str) -> None:
    reply = request("GET", read_only + "/")
    assert "script-src 'self'" in reply.headers["content-security-policy"]
    assert reply.headers["x-frame-options"] == "DENY"
    assert reply.headers["x-content-type-options"] == "nosniff"


def test_lookup_by_id_redirects_to_the_job(read_only: str, seeded: Seeded) -> None:
    reply = request("GET", read_only + f"/jobs?id={seeded.running}")
    assert reply.status == 303 and reply.headers["location"] == f"/jobs/{seeded.running}"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/jobs/123456789", 404),
        ("/jobs/abc", 400),
        ("/jobs/99999999999999999999", 400),
        ("/jobs?state=done", 400),
        ("/jobs?queue=no%20spaces", 400),
        ("/jobs?id=12x", 400),
        ("/failures?queue=%00", 400),
        ("/runs/7", 404),
        ("/nowhere", 404),
    ],
)
def test_bad_input_gets_a_clear_page(read_only: str, path: str, status: int) -> None:
    assert_clean_error(request("GET", read_only + path), status)


def test_private_arguments_and_results_are_hidden(
    read_only: str, conn: Conn, seeded: Seeded
) -> None:
    conn.execute('UPDATE pgq.jobs SET result = \'{"payslip": "SECRET-PAYSLIP"}\'')
    detail = request("GET", read_only + f"/jobs/{seeded.secret_job}")
    assert detail.status == 200
    assert "SECRET-SALARY-42" not in detail.body and "SECRET-PAYSLIP" not in detail.body
    assert "Hidden: this task's arguments are private" in detail.body
    assert "Hidden: this task's results are private" in detail.body
    public = request("GET", read_only + f"/jobs/{seeded.succeeded}").body
    assert 'id="result"' in public and "SECRET-PAYSLIP" in public  # other tasks: shown


def test_pgq_dashboard_refuses_actions_without_credentials(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PGQ_DASHBOARD_TOKEN", "PGQ_DASHBOARD_USER", "PGQ_DASHBOARD_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    cli._register_commands()
    result = CliRunner().invoke(cli.app, ["dashboard", "--database-url", db_url, "--allow-actions"])
    assert result.exit_code == 2
    assert "need authentication" in result.output and "PGQ_DASHBOARD_TOKEN" in result.output


def test_read_only_refuses_every_post(read_only: str, conn: Conn, seeded: Seeded) -> None:
    for path in (
        f"/jobs/{seeded.failed}/retry",
        f"/jobs/{seeded.queued}/cancel",
        "/failures/retry",
    ):
        assert_clean_error(request("POST", read_only + path, form={CSRF_FIELD: "x"}), 403)
    assert state_of(conn, seeded.failed) == "failed"
    assert state_of(conn, seeded.queued) == "queued"
    assert 'id="retry"' not in request("GET", read_only + f"/jobs/{seeded.failed}").body


def test_actions_without_authentication_are_refused_at_creation(db_url: str) -> None:
    with pytest.raises(PgqError, match="need authentication"):
        pgq.web.create_app(db_url, allow_actions=True)


def test_credentials_are_asked_for_and_checked(with_actions: str) -> None:
    anonymous = request("GET", with_actions + "/")
    assert_clean_error(anonymous, 401)
    assert anonymous.headers["www-authenticate"].startswith("Basic realm=")
    wrong = request("GET", with_actions + "/", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    basic = base64.b64encode(f"ops:{TOKEN}".encode()).decode()
    assert (
        request("GET", with_actions + "/", headers={"Authorization": f"Basic {basic}"}).status
        == 200
    )
    assert TOKEN not in request("GET", with_actions + "/", headers=BEARER).body


def test_retry_needs_the_csrf_token_of_this_browser(
    with_actions: str, conn: Conn, seeded: Seeded
) -> None:
    cookies, token = csrf_pair(with_actions, f"/jobs/{seeded.failed}")
    retry = with_actions + f"/jobs/{seeded.failed}/retry"
    no_token = request("POST", retry, form={}, headers=BEARER, cookies=cookies)
    assert_clean_error(no_token, 403)
    other_cookie = request(
        "POST", retry, form={CSRF_FIELD: token}, headers=BEARER, cookies={CSRF_COOKIE: "forged"}
    )
    assert_clean_error(other_cookie, 403)
    assert state_of(conn, seeded.failed) == "failed"
    done = request("POST", retry, form={CSRF_FIELD: token}, headers=BEARER, cookies=cookies)
    assert done.status == 303
    assert done.headers["location"] == f"/jobs/{seeded.failed}?notice=retried"
    assert state_of(conn, seeded.failed) == "queued"
    again = request("POST", retry, form={CSRF_FIELD: token}, headers=BEARER, cookies=cookies)
    assert again.headers["location"].endswith("notice=retry_skipped")


def test_cancel_a_queued_job_and_ask_a_running_one_to_stop(
    with_actions: str, conn: Conn, seeded: Seeded
) -> None:
    cookies, token = csrf_pair(with_actions, f"/jobs/{seeded.queued}")
    for job, notice, state in (
        (seeded.queued, "cancelled", "cancelled"),
        (seeded.running, "cancel_requested", "running"),
    ):
        reply = request(
            "POST",
            with_actions + f"/jobs/{job}/cancel",
            form={CSRF_FIELD: token},
            headers=BEARER,
            cookies=cookies,
        )
        assert reply.headers["location"] == f"/jobs/{job}?notice={notice}"
        assert state_of(conn, job) == state


def test_retry_all_failed_of_a_task_reports_progress(
    with_actions: str, conn: Conn, seeded: Seeded
) -> None:
    cookies, token = csrf_pair(with_actions, "/failures")
    reply = request(
        "POST",
        with_actions + "/failures/retry",
        form={CSRF_FIELD: token, "task": "tests.web.charge", "queue": ""},
        headers=BEARER,
        cookies=cookies,
    )
    assert reply.status == 303 and reply.headers["location"].startswith("/runs/")
    run_page = with_actions + reply.headers["location"]
    wait_until(lambda: "Done:" in request("GET", run_page, headers=BEARER).body)
    assert "1 retried" in request("GET", run_page, headers=BEARER).body
    assert state_of(conn, seeded.failed) == "queued"
    assert state_of(conn, seeded.secret_job) == "failed"  # another task: left alone


def test_links_follow_the_prefix_it_is_mounted_under(db_url: str, seeded: Seeded) -> None:
    host = Starlette(routes=[Mount("/ops/pgq", app=pgq.web.create_app(db_url))])
    with serve(host) as base:
        page = request("GET", base + "/ops/pgq/jobs?state=failed")
        assert page.status == 200
        assert f'href="/ops/pgq/jobs/{seeded.failed}"' in page.body
        assert 'src="/ops/pgq/static/htmx.min.js"' in page.body
        assert request("GET", base + "/ops/pgq/static/pgq.css").status == 200
        lookup = request("GET", base + f"/ops/pgq/jobs?id={seeded.failed}")
        assert lookup.headers["location"] == f"/ops/pgq/jobs/{seeded.failed}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_database_that_is_down_gets_a_503_page_without_its_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql://pgq:S3CRET-PASSWORD@127.0.0.1:{free_port()}/nowhere"
    caplog.set_level(logging.DEBUG)
    with serve(pgq.web.create_app(url)) as base:
        reply = request("GET", base + "/")
    assert_clean_error(reply, 503)
    assert "S3CRET-PASSWORD" not in reply.body
    assert "S3CRET-PASSWORD" not in caplog.text
    assert "cannot be reached" in caplog.text


def test_a_database_without_the_schema_says_to_migrate(empty_db_url: str) -> None:
    with serve(pgq.web.create_app(empty_db_url)) as base:
        reply = request("GET", base + "/")
    assert_clean_error(reply, 503)
    assert "pgq migrate" in reply.body


def test_pause_and_resume_a_queue(with_actions: str, conn: Conn, seeded: Seeded) -> None:
    cookies, token = csrf_pair(with_actions, "/")
    form = {CSRF_FIELD: token, "reason": "provider down"}
    pause = request("POST", with_actions + "/queues/mail/pause", form=form, headers=BEARER,
                    cookies=cookies)  # fmt: skip
    assert pause.status == 303 and pause.headers["location"] == "/?notice=paused"
    paused = [(q.queue, q.reason) for q in limits.paused_queues(conn)]
    assert paused == [("mail", "provider down (by token, dashboard)")]
    overview = request("GET", with_actions + "/", headers=BEARER).body
    assert 'class="badge paused"' in overview and "Resume</button>" in overview
    resume = request("POST", with_actions + "/queues/mail/resume", form={CSRF_FIELD: token},
                     headers=BEARER, cookies=cookies)  # fmt: skip
    assert resume.headers["location"] == "/?notice=resumed"
    assert limits.paused_queues(conn) == []
    forged = request("POST", with_actions + "/queues/mail/pause", form={CSRF_FIELD: "0" * 64},
                     headers=BEARER, cookies=cookies)  # fmt: skip
    assert_clean_error(forged, 403)
    bad = request("POST", with_actions + "/queues/no%20way/pause", form={CSRF_FIELD: token},
                  headers=BEARER, cookies=cookies)  # fmt: skip
    assert_clean_error(bad, 400)
    assert limits.paused_queues(conn) == []


def test_read_only_refuses_to_pause(read_only: str, conn: Conn) -> None:
    assert_clean_error(request("POST", read_only + "/queues/mail/pause", form={}), 403)
    assert limits.paused_queues(conn) == []


def test_workflow_pages_link_parents_children_and_the_tree(read_only: str, conn: Conn) -> None:
    flow = (
        pgq.group([pgq.JobSpec("tests.web.part", {"n": n}) for n in (1, 2)])
        .then(pgq.JobSpec("tests.web.done"))
        .enqueue(conn)
    )
    first, second, callback = flow.job_ids
    listing = request("GET", read_only + "/workflows")
    assert listing.status == 200 and f'href="/workflows/{flow.id}"' in listing.body
    tree = request("GET", read_only + f"/workflows/{flow.id}")
    assert tree.status == 200 and 'class="depth-1"' in tree.body
    assert all(f'href="/jobs/{job}"' in tree.body for job in flow.job_ids)
    job = request("GET", read_only + f"/jobs/{callback}").body
    assert 'id="parents"' in job and f'href="/jobs/{first}"' in job
    assert f'href="/jobs/{second}"' in job and f'href="/workflows/{flow.id}"' in job
    assert_clean_error(request("GET", read_only + f"/workflows/{callback + 100}"), 404)
    assert_clean_error(request("GET", read_only + "/workflows/x"), 400)
    lookup = request("GET", read_only + f"/workflows?id={flow.id}")
    assert lookup.headers["location"] == f"/workflows/{flow.id}"


def test_the_schedules_page_lists_each_schedule(read_only: str, conn: Conn) -> None:
    conn.execute("TRUNCATE pgq.schedules")
    assert "No schedule yet" in request("GET", read_only + "/schedules").body
    hourly = pgq.schedule(
        "hourly-report", task=hourly_report, cron="0 * * * *", registry=ScheduleRegistry()
    )
    scheduler.sync(conn, [hourly])
    page = request("GET", read_only + "/schedules")
    assert page.status == 200
    assert "hourly-report" in page.body and "<code>0 * * * *</code>" in page.body


def test_the_workers_page_shows_each_worker_and_what_it_runs(
    read_only: str, conn: Conn, seeded: Seeded
) -> None:
    conn.execute("TRUNCATE pgq.workers")
    assert "No worker is registered" in request("GET", read_only + "/workers").body
    add_worker(conn, "worker-1")
    page = request("GET", read_only + "/workers")
    assert page.status == 200
    assert 'id="worker-worker-1"' in page.body and "alive" in page.body
    assert f'href="/jobs/{seeded.running}"' in page.body
    assert 'id="orphaned"' in page.body  # the default queue has no worker
    job = request("GET", read_only + f"/jobs/{seeded.running}").body
    assert 'href="/workers#worker-worker-1"' in job


def test_behind_a_proxy_that_strips_the_prefix_links_keep_it(db_url: str, seeded: Seeded) -> None:
    # `pgq dashboard --root-path /pgq` behind a proxy serving it at /pgq/ and passing /jobs.
    with serve(pgq.web.create_app(db_url), root_path="/pgq") as base:
        page = request("GET", base + "/jobs?state=failed")
        assert page.status == 200
        assert f'href="/pgq/jobs/{seeded.failed}"' in page.body
        assert 'href="/pgq/static/pgq.css"' in page.body


def test_the_limits_page_shows_keys_and_pauses(read_only: str, conn: Conn) -> None:
    conn.execute("TRUNCATE pgq.concurrency_keys, pgq.rate_limits")
    assert "No queue is paused" in request("GET", read_only + "/limits").body
    limits.pause_queue(conn, "mail")
    conn.execute("INSERT INTO pgq.concurrency_keys (key, max_active, active) VALUES ('api', 5, 2)")
    conn.execute(
        "INSERT INTO pgq.rate_limits (key, max_starts, period, starts) "
        "VALUES ('sms', 10, 60, ARRAY[now()])"
    )  # in use: shown
    page = request("GET", read_only + "/limits")
    assert page.status == 200
    assert 'id="concurrency-api"' in page.body and "5 at once" in page.body
    assert 'id="rate-sms"' in page.body and "10 starts per 1 min" in page.body
    assert 'href="/jobs?queue=mail"' in page.body


def test_a_database_with_an_older_schema_says_to_migrate(pg_server: devdb.Server) -> None:
    with devdb.scratch_database(pg_server, prefix="pgq_webold") as url:
        migrate.upgrade(url, revision="pgq_0004")  # before pauses, workflows, results...
        with psycopg.connect(url, autocommit=True) as conn:
            add_job(conn, "failed")
        with serve(pgq.web.create_app(url)) as base:
            overview = request("GET", base + "/")
            job = request("GET", base + "/jobs/1")
    for reply in (overview, job):
        assert_clean_error(reply, 503)
        assert "pgq migrate" in reply.body
