"""examples/fastapi_app end to end, with real processes and pgq installed from a wheel:

its own `alembic upgrade heads` (pgq as a branch) builds the database; the app runs under
uvicorn; httpx places orders concurrently, a third of them rolled back after their enqueue;
two `pgq work --burst` processes drain the queue side by side. Then every committed order's
job ran exactly once (one confirmation, written in the job's completing transaction), no
rolled-back order or job exists or ran, and the mounted dashboard shows the queue.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from tests import installed
from tests.web_support import wait_until

from pgq import devdb

EXAMPLE = installed.EXAMPLES / "fastapi_app"
ORDERS = 60
ROLLED_BACK_EVERY = 3  # every third request raises after its enqueue
START_TIMEOUT = 60.0
WORKER_TIMEOUT = 120.0

pytestmark = pytest.mark.slow


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A copy of the example, so its processes write nothing into the checkout."""
    copy = tmp_path / "fastapi_app"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.fixture
def app_env(empty_db_url: str) -> dict[str, str]:
    return installed.clean_env(DATABASE_URL=empty_db_url)


@pytest.fixture
def api(
    pgq_venv: installed.Venv, app_dir: Path, app_env: dict[str, str], tmp_path: Path
) -> Iterator[httpx.Client]:
    """The app migrated by its own alembic, then served by a real uvicorn process."""
    alembic = [str(pgq_venv.python), "-m", "alembic", "upgrade", "heads"]
    installed.checked(installed.run(alembic, app_env, cwd=app_dir))
    port = devdb.free_port()
    command = [str(pgq_venv.python), "-m", "uvicorn", "orderapp.main:app", "--port", str(port)]
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, env=app_env, cwd=app_dir, stdout=out, stderr=subprocess.STDOUT
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        wait_until(lambda: _answers(client) or _exited(server, log), timeout=START_TIMEOUT)
        yield client
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=30)


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/health").status_code == 200
    except httpx.TransportError:
        return False


def _exited(server: subprocess.Popen[bytes], log: Path) -> bool:
    if server.poll() is not None:
        raise AssertionError(f"uvicorn exited with {server.returncode}:\n{log.read_text()}")
    return False


def place(client: httpx.Client, n: int) -> httpx.Response:
    body = {"item": f"cake {n}", "cents": 100 + n, "fail_after_enqueue": n % ROLLED_BACK_EVERY == 0}
    return client.post("/orders", json=body)


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_committed_orders_run_once_and_rolled_back_ones_never(
    api: httpx.Client,
    pgq_venv: installed.Venv,
    app_dir: Path,
    app_env: dict[str, str],
    empty_db_url: str,
) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda n: place(api, n), range(1, ORDERS + 1)))
    committed = {r.json()["order_id"]: r.json()["job_id"] for r in replies if r.status_code == 201}
    rolled_back = [r.json()["detail"] for r in replies if r.status_code == 409]
    assert len(committed) + len(rolled_back) == ORDERS, [r.text for r in replies]
    assert len(rolled_back) == ORDERS // ROLLED_BACK_EVERY
    assert all(reply["rolled_back"] for reply in rolled_back)

    # Two real workers drain the queue side by side, then exit (burst).
    worker = [str(pgq_venv.bin("pgq")), "work", "--app", "orderapp.jobs", "--burst"]
    workers = [
        subprocess.Popen(
            worker, env=app_env, cwd=app_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=WORKER_TIMEOUT)[0].decode() for proc in workers]
    assert [proc.returncode for proc in workers] == [0, 0], outputs

    orders = {row[0] for row in rows(empty_db_url, "SELECT id FROM orders")}
    jobs = rows(empty_db_url, "SELECT id, (args->>'order_id')::bigint, state::text FROM pgq.jobs")
    confirmations = rows(empty_db_url, "SELECT order_id, job_id FROM order_confirmations")
    assert orders == set(committed)
    assert {(job_id, order_id) for job_id, order_id, _ in jobs} == {
        (job_id, order_id) for order_id, job_id in committed.items()
    }
    assert {state for _, _, state in jobs} == {"succeeded"}
    # Exactly once: one confirmation per committed order, by that order's job.
    assert sorted(confirmations) == sorted(committed.items())
    never = {reply["order_id"] for reply in rolled_back}
    assert never.isdisjoint(orders) and never.isdisjoint(order for order, _ in confirmations)
    assert {reply["job_id"] for reply in rolled_back}.isdisjoint(job for job, _, _ in jobs)
    some_order = min(committed)
    assert api.get(f"/orders/{some_order}").json()["confirmed"] == 1


def test_the_dashboard_is_mounted_and_shows_the_queue(api: httpx.Client, empty_db_url: str) -> None:
    assert place(api, 1).status_code == 201

    page = api.get("/pgq/")

    assert page.status_code == 200, page.text
    assert "orders" in page.text  # the queue the job waits on
    assert api.get("/pgq/jobs/1").status_code == 200


def test_the_apps_own_tests_pass_with_pgq_from_the_wheel(
    pgq_venv: installed.Venv, app_dir: Path, pg_server: devdb.Server
) -> None:
    # Its conftest overrides the plugin's pgq_session_database_url to migrate with the
    # app's own alembic, as docs/testing.md shows.
    env = installed.clean_env(PGQ_TEST_DATABASE_URL=pg_server.url)
    command = [str(pgq_venv.python), "-m", "pytest", "-p", "no:cacheprovider", "-q"]

    done = installed.run(command, env, cwd=app_dir)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
