"""pgq.testing from an installed package: examples/host_tests, a host application's own
project, runs its pytest suite in a virtualenv where pgq is only the wheel built from this
checkout, so its fixtures come from the plugin's pytest11 entry point, as they would for a
user. The same virtualenv answers `pgq --version` and `python -m pgq --version`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests import installed

import pgq
from pgq import devdb

EXAMPLE = installed.EXAMPLES / "host_tests"


@pytest.fixture
def example_project(tmp_path: Path) -> Path:
    """A copy of the example project, so its run writes nothing into the checkout."""
    copy = tmp_path / "host_tests"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return copy


def test_the_example_projects_tests_pass_with_the_installed_plugin(
    pgq_venv: installed.Venv, example_project: Path, pg_server: devdb.Server
) -> None:
    # The plugin's own order of choices, step 1: the run's server, through the variable.
    env = installed.clean_env(PGQ_TEST_DATABASE_URL=pg_server.url)
    command = [str(pgq_venv.python), "-m", "pytest", "-p", "no:cacheprovider", "-v"]

    done = installed.run(command, env, cwd=example_project)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout
    assert "pgq: test databases on the server of $PGQ_TEST_DATABASE_URL" in done.stdout
    where = installed.run(
        [str(pgq_venv.python), "-c", "import pgq, pgq.testing; print(pgq.testing.__file__)"],
        env,
        cwd=example_project,
    )
    assert Path(where.stdout.strip()).is_relative_to(pgq_venv.root)


def test_the_plugin_drops_its_database_after_the_run(
    pgq_venv: installed.Venv, example_project: Path, pg_server: devdb.Server
) -> None:
    import psycopg

    env = installed.clean_env(PGQ_TEST_DATABASE_URL=pg_server.url)
    test = example_project / "tests" / "test_orders.py"
    command = [str(pgq_venv.python), "-m", "pytest", "-p", "no:cacheprovider", "-q", str(test)]

    installed.checked(installed.run(command, env, cwd=example_project))

    with psycopg.connect(pg_server.url) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'pgq_app_test_%'"
        ).fetchall()
    assert left == []


@pytest.mark.parametrize("how", ["pgq", "python -m pgq"])
def test_the_installed_command_reports_its_version(pgq_venv: installed.Venv, how: str) -> None:
    command = [str(pgq_venv.bin("pgq"))] if how == "pgq" else [str(pgq_venv.python), "-m", "pgq"]

    done = installed.checked(installed.run([*command, "--version"], installed.clean_env()))

    package = pgq_venv.site_packages / "pgq"
    assert done.stdout.strip() == f"pgq {pgq.__version__} (pgq-jobs, {package})"
