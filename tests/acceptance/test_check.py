"""`pgq check --app` in a real process, as CI runs it: exit 0 on a sound app, exit 1 with a
message naming the schedule on a broken cron expression, an unknown time zone and
arguments that do not bind; with --database-url, the schema is checked too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from worker_procs import run_pgq

from pgq import migrate


def test_a_sound_app_passes(tmp_path: Path, db_url: str) -> None:
    done = run_pgq(["check", "--app", "check_good"], db_url, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pgq check: check_good: 2 task(s), 2 schedule(s), no problems"
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        (
            "check_bad_cron",
            "schedule 'nightly-export': cron expression '61 * * * *' is not valid (Bad minute)",
        ),
        ("check_bad_timezone", "schedule 'morning-digest': unknown time zone 'Europe/Pariss'"),
        ("check_bad_args", "schedule 'hourly-report': its args do not fit check.hourly: "),
    ],
)
def test_a_broken_schedule_fails_naming_it(
    tmp_path: Path, db_url: str, app: str, expected: str
) -> None:
    done = run_pgq(["check", "--app", app], db_url, tmp_path)
    assert done.returncode == 1
    assert expected in done.stderr
    assert done.stderr.startswith("pgq: check: ")
    assert "Traceback" not in done.stderr


def test_bad_args_say_which_parameter(tmp_path: Path, db_url: str) -> None:
    done = run_pgq(["check", "--app", "check_bad_args", "--json"], db_url, tmp_path)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["schedules"] == 0  # it failed to define
    (problem,) = report["problems"]
    assert "'kind'" in problem and "report_kind" in problem


def test_with_a_database_url_the_schema_is_checked(
    tmp_path: Path, db_url: str, empty_db_url: str
) -> None:
    good = run_pgq(["check", "--app", "check_good", "--database-url", db_url], db_url, tmp_path)
    assert good.returncode == 0, good.stderr
    bare = run_pgq(
        ["check", "--app", "check_good", "--database-url", empty_db_url], db_url, tmp_path
    )
    assert bare.returncode == 1
    assert "the pgq schema is missing in this database; run `pgq migrate`" in bare.stderr
    assert migrate.SCHEMA_VERSION > 0


def test_an_app_that_cannot_be_imported_is_a_problem(tmp_path: Path, db_url: str) -> None:
    done = run_pgq(["check", "--app", "no_such_module_here"], db_url, tmp_path)
    assert done.returncode == 1
    assert "cannot import 'no_such_module_here': ModuleNotFoundError" in done.stderr
