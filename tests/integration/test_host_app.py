"""The host-app path: examples/shop runs its own alembic with pgq as a branch, from the
source tree and from a built wheel; its autogenerate leaves pgq alone; the demo runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

import pgq
from pgq import devdb, migrate
from pgq.errors import SchemaError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SHOP_INI = EXAMPLES / "shop" / "alembic.ini"
PACKAGE = ROOT / "src" / "pgq"

sys.path.insert(0, str(EXAMPLES))  # the shop's models, for autogenerate comparisons

from shop.models import Base  # noqa: E402

# Run in a subprocess whose PYTHONPATH starts with the wheel's install directory: report
# where pgq and its migrations were loaded from, then run the shop's alembic.
ALEMBIC_FROM_WHEEL = """
import sys
import pgq
from alembic.config import Config, main
from alembic.script import ScriptDirectory
print("pgq", pgq.__file__)
for revision in ScriptDirectory.from_config(Config(sys.argv[1])).walk_revisions("base", "pgq@head"):
    print("revision", revision.path)
main(argv=["-c", sys.argv[1], "upgrade", "heads"])
"""

PGQ_CLI_FROM_WHEEL = """
import sys
import pgq
print("pgq", pgq.__file__, flush=True)
from pgq.cli import main
sys.argv[0] = "pgq"
main()
"""


def child_env(database_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PGQ_DATABASE_URL", "DATABASE_URL")}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return {**env, **extra}


def run(
    command: list[str], env: dict[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def shop_alembic(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "alembic", "-c", str(SHOP_INI), *args], child_env(url))


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables"
            " WHERE schemaname IN ('public', 'pgq')"
        ).fetchall()
    return {row[0] for row in rows}


def host_versions(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT version_num FROM public.alembic_version")}


def shop_heads() -> set[str]:
    return set(shop_scripts().get_heads())


def branch_head(label: str) -> str:
    head = shop_scripts().get_revision(f"{label}@head")
    assert head is not None
    return head.revision


def shop_scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(Config(str(SHOP_INI)))


@pytest.fixture(scope="module")
def shop_db(pg_server: devdb.Server) -> Iterator[tuple[str, subprocess.CompletedProcess[str]]]:
    """A fresh database migrated by the shop's `alembic upgrade heads`."""
    with devdb.scratch_database(pg_server, prefix="pgq_shop") as url:
        yield url, shop_alembic(url, "upgrade", "heads")


@pytest.fixture(scope="session")
def installed_wheel(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed into a directory of its own (to put first on PYTHONPATH)."""
    target = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet"]
    installed = run([*command, "--target", str(target), str(wheel)], child_env())
    assert installed.returncode == 0, installed.stderr
    return target


def test_upgrade_heads_builds_the_shop_and_pgq(
    shop_db: tuple[str, subprocess.CompletedProcess[str]],
) -> None:
    url, upgraded = shop_db

    assert upgraded.returncode == 0, upgraded.stderr
    assert {"public.users", "public.orders", "pgq.jobs"} <= tables(url)
    # pgq's revisions are recorded in the shop's own version table, next to the shop's.
    assert host_versions(url) == {branch_head("shop"), branch_head("pgq")}
    assert "pgq.alembic_version" not in tables(url)
    with psycopg.connect(url) as conn:
        migrate.check_schema(conn)


def test_autogenerate_with_the_filter_proposes_nothing(
    shop_db: tuple[str, subprocess.CompletedProcess[str]],
) -> None:
    url, _ = shop_db
    checked = shop_alembic(url, "check")  # autogenerate through the shop's real env.py

    assert checked.returncode == 0, checked.stderr
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr
    assert compare(url, include_name=migrate.include_name) == []


def test_autogenerate_without_the_filter_would_drop_pgq(
    shop_db: tuple[str, subprocess.CompletedProcess[str]],
) -> None:
    url, _ = shop_db

    removed = {
        f"{diff[1].schema}.{diff[1].name}"
        for diff in compare(url)
        if isinstance(diff, tuple) and diff[0] == "remove_table"
    }

    assert "pgq.jobs" in removed


def compare(url: str, **options: object) -> list[object]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_schemas": True, **options})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_pgq_migrate_refuses_a_schema_the_host_manages(
    shop_db: tuple[str, subprocess.CompletedProcess[str]],
) -> None:
    url, _ = shop_db
    before = host_versions(url), tables(url)

    with pytest.raises(SchemaError, match="alembic upgrade heads"):
        migrate.upgrade(url)

    assert (host_versions(url), tables(url)) == before


def test_wheel_contains_migrations_and_sql(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"pgq/{path.relative_to(PACKAGE).as_posix()}"
        for pattern in ("migrations/versions/*.py", "sql/*.sql", "web/templates/*", "web/static/*")
        for path in PACKAGE.glob(pattern)
    }

    assert len(expected) > 2
    assert expected <= names
    assert {"pgq/migrations/env.py", "pgq/migrations/script.py.mako", "pgq/py.typed"} <= names


# The distribution is pgq-jobs (`pgq` on PyPI is Skytools' PgQ client); the import package
# and the command stay pgq. Metadata lookups by the distribution's name find the wheel.
NAMES_FROM_WHEEL = """
import json
from importlib import metadata
import pgq
dist = metadata.distribution("pgq-jobs")
print(json.dumps({
    "version": metadata.version("pgq-jobs"),
    "package_version": pgq.__version__,
    "packages": metadata.packages_distributions().get("pgq"),
    "scripts": sorted(
        f"{e.name}={e.value}" for e in dist.entry_points if e.group == "console_scripts"
    ),
    "extras": sorted(dist.metadata.get_all("Provides-Extra") or []),
}))
"""


def test_wheel_is_pgq_jobs_with_the_pgq_package_and_command(installed_wheel: Path) -> None:
    env = child_env(PYTHONPATH=str(installed_wheel))

    done = run([sys.executable, "-c", NAMES_FROM_WHEEL], env, cwd=installed_wheel)

    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["version"] == found["package_version"]
    # Both the wheel and this checkout's editable install are on the path: both pgq-jobs.
    assert set(found["packages"]) == {"pgq-jobs"}
    assert found["scripts"] == ["pgq=pgq.cli:main"]
    assert {"asyncio", "metrics"} <= set(found["extras"])


def test_python_m_pgq_runs_the_cli_from_the_wheel(installed_wheel: Path) -> None:
    env = child_env(PYTHONPATH=str(installed_wheel))

    done = run([sys.executable, "-m", "pgq", "--help"], env, cwd=installed_wheel)

    assert done.returncode == 0, done.stderr
    assert "migrate" in done.stdout and "work" in done.stdout


def test_python_m_pgq_version_names_the_wheel(installed_wheel: Path) -> None:
    env = child_env(PYTHONPATH=str(installed_wheel))

    done = run([sys.executable, "-m", "pgq", "--version"], env, cwd=installed_wheel)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"pgq {pgq.__version__} (pgq-jobs, {installed_wheel / 'pgq'})"


def test_host_app_migrates_from_the_wheel(installed_wheel: Path, empty_db_url: str) -> None:
    env = child_env(empty_db_url, PYTHONPATH=str(installed_wheel))

    done = run([sys.executable, "-c", ALEMBIC_FROM_WHEEL, str(SHOP_INI)], env, cwd=installed_wheel)

    assert done.returncode == 0, done.stderr
    loaded = [line.split(" ", 1) for line in done.stdout.splitlines()]
    assert loaded[0][0] == "pgq" and Path(loaded[0][1]).is_relative_to(installed_wheel)
    revisions = [Path(path) for kind, path in loaded if kind == "revision"]
    assert revisions and all(path.is_relative_to(installed_wheel) for path in revisions)
    assert {"public.orders", "pgq.jobs"} <= tables(empty_db_url)
    assert host_versions(empty_db_url) == shop_heads()


def test_pgq_migrate_runs_from_the_wheel(installed_wheel: Path, empty_db_url: str) -> None:
    env = child_env(PYTHONPATH=str(installed_wheel))
    command = [sys.executable, "-c", PGQ_CLI_FROM_WHEEL, "migrate", "--database-url", empty_db_url]

    done = run(command, env, cwd=installed_wheel)

    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.split()[1]).is_relative_to(installed_wheel)
    assert "pgq schema created" in done.stdout
    with psycopg.connect(empty_db_url) as conn:
        migrate.check_schema(conn)


def test_demo_places_orders_and_rolls_one_back(pg_server: devdb.Server) -> None:
    name = f"pgq_demo_test_{os.getpid()}"
    env = child_env(PGQ_DATABASE_URL=pg_server.url, PGQ_DEMO_DATABASE=name)
    try:
        done = run([sys.executable, str(EXAMPLES / "demo.py")], env)

        assert done.returncode == 0, done.stderr
        assert "6 jobs on 2 queues" in done.stdout
        with psycopg.connect(pg_server.database_url(name)) as conn:
            orders = [row[0] for row in conn.execute("SELECT id FROM orders ORDER BY id")]
            jobs = conn.execute(
                "SELECT task, state::text, (args->>'order_id')::bigint,"
                " run_at > now() + interval '1 day' FROM pgq.jobs"
            ).fetchall()
        # Order 3 rolled back with its jobs; 2 + 100 orders committed, each with 3 jobs.
        assert 3 not in orders and len(orders) == 102
        assert not [job for job in jobs if job[2] == 3]
        assert len(jobs) == 3 * 102 + 1  # and the sale announcement
        # The worker ran everything due within the demo; only the review requests wait.
        unfinished = [job for job in jobs if job[1] not in ("succeeded", "failed")]
        assert {(task, state, later) for task, state, _, later in unfinished} == {
            ("shop.ask_for_review", "queued", True)
        }
        assert ("shop.announce_sale", "succeeded") in {(job[0], job[1]) for job in jobs}
        assert "jobs succeeded" in done.stdout
    finally:
        devdb.drop_database(pg_server, name)
