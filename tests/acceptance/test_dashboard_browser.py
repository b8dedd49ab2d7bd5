"""The dashboard in a real headless Chromium, served by real `pgq dashboard` processes.

Two servers on one database with jobs in every state: one read-only, one started with
--allow-actions and a token from its environment. The browser loads every page (saving a
screenshot of each), goes from the failed-jobs list to a failed job, retries it through
the form (and so its CSRF token), sees the read-only server refuse the same POST with 403,
and watches the overview refresh itself when a new queue appears.

Debian's chromium and chromium-driver are driven through Selenium with explicit paths, so
Selenium Manager never downloads a browser or a driver. Without them the tests skip.
Screenshots go to tests/artifacts/screenshots (gitignored), or $PGQ_SCREENSHOTS_DIR.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.web_support import Seeded, add_job, add_worker, request, seed_every_state, wait_until

import pgq
from pgq import limits, scheduler
from pgq.periodic import ScheduleRegistry
from pgq.registry import Registry

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TOKEN = "browser-test-token-0123456789"
ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("PGQ_SCREENSHOTS_DIR") or ROOT / "tests" / "artifacts" / "screenshots")

pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason="the browser tests need Chromium and its driver: apt-get install chromium "
    "chromium-driver (.ci/run installs them)",
)

Conn = psycopg.Connection[Any]


@pgq.task(registry=Registry(), queue="reports")
def nightly_report() -> None:
    """A task for the schedules page (never run here)."""


@dataclass
class Dashboard:
    base: str
    proc: subprocess.Popen[str]

    def output(self) -> str:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_dashboard(url: str, *flags: str, env: dict[str, str] | None = None) -> Dashboard:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pgq",
            "dashboard",
            "--database-url",
            url,
            "--port",
            str(port),
            *flags,
        ],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            return request("GET", base + "/static/pgq.css").status == 200
        except OSError:
            return False

    wait_until(answers, timeout=30)
    return Dashboard(base, proc)


@pytest.fixture
def seeded(conn: Conn) -> Seeded:
    return seed_every_state(conn)


@pytest.fixture
def read_only(db_url: str, seeded: Seeded) -> Iterator[Dashboard]:
    dash = start_dashboard(db_url)
    yield dash
    dash.output()


@pytest.fixture
def with_actions(db_url: str, seeded: Seeded) -> Iterator[Dashboard]:
    dash = start_dashboard(db_url, "--allow-actions", env={"PGQ_DASHBOARD_TOKEN": TOKEN})
    yield dash
    assert TOKEN not in dash.output()  # never printed or logged


@pytest.fixture
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def authorize(driver: Any) -> None:
    """Send the token with every request of this browser (a header, as a proxy would)."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {TOKEN}"}}
    )


def screenshot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def state_of(conn: Conn, job_id: int) -> str:
    row = conn.execute("SELECT state::text FROM pgq.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_every_page_loads_in_the_browser(
    browser: Any, with_actions: Dashboard, conn: Conn, seeded: Seeded
) -> None:
    authorize(browser)
    states = ("queued", "scheduled", "running", "succeeded", "failed", "cancelled", "retrying")
    flow = pgq.chain(
        pgq.JobSpec("tests.web.encode", queue="flows"),
        pgq.group([pgq.JobSpec("tests.web.thumb", {"n": n}, queue="flows") for n in (1, 2)]),
    ).enqueue(conn)
    limits.pause_queue(conn, "mail", reason="provider down")
    conn.execute("TRUNCATE pgq.schedules, pgq.workers")
    add_worker(conn, "worker-1")  # holds the running job
    nightly = pgq.schedule("nightly", task=nightly_report, cron="0 3 * * *",
                           registry=ScheduleRegistry())  # fmt: skip
    scheduler.sync(conn, [nightly])
    pages = {
        "overview": "/",
        "jobs": "/jobs",
        "jobs-failed": "/jobs?state=failed",
        "failures": "/failures",
        **{f"job-{state}": f"/jobs/{getattr(seeded, state)}" for state in states},
        "workers": "/workers",
        "limits": "/limits",
        "schedules": "/schedules",
        "workflows": "/workflows",
        "workflow": f"/workflows/{flow.id}",
        "job-waiting": f"/jobs/{flow.job_ids[-1]}",
        "not-found": "/jobs/987654321",
    }
    for name, path in pages.items():
        browser.get(with_actions.base + path)
        heading = browser.find_element(By.TAG_NAME, "h1").text
        assert heading, f"{path} has no heading"
        if not name.startswith("job-"):  # a job's traceback is content; elsewhere, a bug
            assert "Traceback" not in browser.page_source
        screenshot(browser, name)
    assert browser.find_element(By.TAG_NAME, "h1").text == "404"


def test_from_a_failed_job_to_its_detail_and_retry_it(
    browser: Any, with_actions: Dashboard, conn: Conn, seeded: Seeded
) -> None:
    authorize(browser)
    browser.get(with_actions.base + "/jobs?state=failed")
    click(browser, f"//table[@id='jobs']//a[text()='{seeded.failed}']")  # the list refreshes
    wait_until(
        lambda: browser.find_element(By.TAG_NAME, "h1").text.startswith(f"Job {seeded.failed}")
    )
    errors = browser.find_element(By.ID, "errors").text
    assert "card declined" in errors and "attempt 3" in errors
    screenshot(browser, "job-failed-detail")
    browser.find_element(By.ID, "retry").click()
    wait_until(lambda: bool(browser.find_elements(By.ID, "notice")))
    assert "queued again" in browser.find_element(By.ID, "notice").text
    assert state_of(conn, seeded.failed) == "queued"
    screenshot(browser, "job-retried")


def test_read_only_refuses_the_same_post(
    browser: Any, read_only: Dashboard, conn: Conn, seeded: Seeded
) -> None:
    browser.get(read_only.base + f"/jobs/{seeded.failed}")
    assert not browser.find_elements(By.ID, "retry")  # no button to press
    status = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch(arguments[0], {method: "POST", body: new URLSearchParams({csrf_token: "x"})})
            .then(r => done(r.status), e => done(String(e)));
        """,
        f"{read_only.base}/jobs/{seeded.failed}/retry",
    )
    assert status == 403
    assert state_of(conn, seeded.failed) == "failed"


def test_the_overview_refreshes_itself(browser: Any, read_only: Dashboard, conn: Conn) -> None:
    browser.get(read_only.base + "/")
    queues = "return document.getElementById('queues').textContent"
    assert "reports" not in browser.execute_script(queues)
    browser.execute_script("window.pgqSameDocument = true")
    add_job(conn, "queued", queue="reports")
    wait_until(lambda: "reports" in browser.execute_script(queues), timeout=20)
    # The same document: htmx swapped the live part, the page was not reloaded.
    assert browser.execute_script("return window.pgqSameDocument") is True


def click(browser: Any, xpath: str) -> None:
    """Click the element at ``xpath``, again if a refresh swapped it out meanwhile."""

    def clicked() -> bool:
        try:
            browser.find_element(By.XPATH, xpath).click()
        except StaleElementReferenceException:
            return False
        return True

    wait_until(clicked)


def test_pause_a_queue_from_the_overview_and_resume_it(
    browser: Any, with_actions: Dashboard, conn: Conn
) -> None:
    authorize(browser)
    browser.get(with_actions.base + "/")
    mail_row = "//table[@id='queues']//tr[td/a[text()='mail']]"
    browser.find_element(By.ID, "reason-mail").send_keys("provider down")
    # The overview refreshes itself while the reason is typed: what was typed stays.
    browser.execute_script("document.getElementById('live').dataset.before = 'refresh'")
    wait_until(
        lambda: browser.execute_script("return !document.getElementById('live').dataset.before")
    )
    assert browser.find_element(By.ID, "reason-mail").get_attribute("value") == "provider down"
    click(browser, mail_row + "//button[@class='pause']")
    wait_until(lambda: "?notice=paused" in browser.current_url)
    assert [(q.queue, q.reason) for q in limits.paused_queues(conn)] == [
        ("mail", "provider down (by token, dashboard)")
    ]
    screenshot(browser, "overview-paused")
    click(browser, mail_row + "//button[@class='resume']")
    wait_until(lambda: "?notice=resumed" in browser.current_url)
    assert limits.paused_queues(conn) == []
