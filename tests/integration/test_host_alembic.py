"""docs/host-apps.md's alembic setup, followed as written, from a fresh `alembic init`, with
pgq installed as a wheel in a virtualenv (so pgq's migrations really are in site-packages):

- the documented ini block replaces the generated `path_separator = os` line, and
  `alembic upgrade heads` builds the app's tables and pgq's;
- the documented first-revision command writes the app's file into the app's folder;
- the documented `--depends-on pgq@head` lets the app's branch alone be upgraded on a fresh
  database (and without it, that upgrade fails);
- the mistake the docs warn about (a plain `alembic revision`) lands in pgq's folder, and
  every later alembic command warns about it, naming the file.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tests import installed

from pgq import devdb, migrate

DOCS = installed.ROOT / "docs" / "host-apps.md"
PGQ_HEAD = f"pgq_{migrate.SCHEMA_VERSION:04d}"


def documented_block(marker: str) -> str:
    """The fenced block that follows the HTML comment containing ``marker`` in the docs."""
    text = DOCS.read_text()
    found = re.search(re.escape(marker) + r"[^\n]*-->\n```\w+\n(.*?)```", text, re.S)
    assert found, f"docs/host-apps.md has no block after {marker!r}"
    return found.group(1)


def documented_revision(containing: str) -> list[str]:
    """The arguments of the docs' ``$ alembic revision ...`` line containing ``containing``."""
    lines = [line for line in DOCS.read_text().splitlines() if line.startswith("$ alembic ")]
    (line,) = [line for line in lines if containing in line]
    words = shlex.split(line[2:])
    assert words[:2] == ["alembic", "revision"], line
    return words[2:]


class App:
    """A host project made by `alembic init migrations`, run with the venv's python."""

    def __init__(self, venv: installed.Venv, root: Path, database_url: str) -> None:
        self.venv, self.root = venv, root
        root.mkdir()
        self.alembic("init", "migrations")
        ini = root / "alembic.ini"
        generated = ini.read_text()
        assert generated.count("\npath_separator = os\n") == 1, "alembic init changed"
        # Exactly what the docs say: replace that line with the documented block; set the URL.
        configured = generated.replace(
            "\npath_separator = os\n", "\n" + documented_block("applies this block"), 1
        )
        sa_url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
        ini.write_text(
            re.sub(r"(?m)^sqlalchemy\.url = .*$", f"sqlalchemy.url = {sa_url}", configured)
        )

    def alembic(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.venv.python), "-m", "alembic", *args]
        done = installed.run(command, installed.clean_env(), cwd=self.root)
        return installed.checked(done) if check else done

    def revision(self, *args: str, upgrade_sql: str) -> Path:
        """Run `alembic revision ARGS`; fill in the new file's upgrade(); return its path."""
        done = self.alembic("revision", *args)
        path = Path(re.search(r"Generating (\S+\.py)", done.stdout + done.stderr).group(1))  # type: ignore[union-attr]
        source = path.read_text()
        body = f"    op.execute({upgrade_sql!r})\n"
        path.write_text(
            re.sub(
                r"(def upgrade\(\) -> None:\n(?:    \"\"\".*?\"\"\"\n)?)    pass\n",
                lambda m: m.group(1) + body,
                source,
                count=1,
                flags=re.S,
            )
        )
        return path


@pytest.fixture
def database(pg_server: devdb.Server) -> Iterator[str]:
    with devdb.scratch_database(pg_server, prefix="pgq_alembic") as url:
        yield url


def relations(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN ('public', 'pgq') AND c.relkind IN ('r', 'v')"
        ).fetchall()
    return {row[0] for row in rows}


def versions(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT version_num FROM public.alembic_version")}


def test_the_documented_setup_works_on_a_fresh_alembic_init(
    pgq_venv: installed.Venv, tmp_path: Path, database: str
) -> None:
    app = App(pgq_venv, tmp_path / "app", database)

    first = app.revision(
        *documented_revision("--head base"),
        upgrade_sql="CREATE TABLE orders (id bigserial PRIMARY KEY, cents int)",
    )
    upgraded = app.alembic("upgrade", "heads")

    assert first.parent == app.root / "migrations" / "versions"
    assert "branch_labels" in first.read_text() and "('app',)" in first.read_text()
    assert "ForeignRevisionWarning" not in upgraded.stderr
    assert {"public.orders", "pgq.jobs"} <= relations(database)
    assert versions(database) == {first.name.split("_")[0], PGQ_HEAD}
    with psycopg.connect(database) as conn:
        migrate.check_schema(conn)
    # The next revision goes next to the app's head, in the app's folder.
    second = app.revision("-m", "coupons", "--head", "app@head", upgrade_sql="SELECT 1")
    assert second.parent == first.parent


def test_depends_on_pgq_lets_the_apps_branch_be_upgraded_alone(
    pgq_venv: installed.Venv, tmp_path: Path, database: str, pg_server: devdb.Server
) -> None:
    app = App(pgq_venv, tmp_path / "app", database)
    app.revision(*documented_revision("--head base"), upgrade_sql="CREATE TABLE orders (id int)")
    backfill = (
        "INSERT INTO pgq.jobs (queue, task, args)"
        " SELECT 'default', 'app.backfill', jsonb_build_object('order_id', id) FROM orders"
    )
    needs_pgq = app.revision(*documented_revision("--depends-on"), upgrade_sql=backfill)

    assert re.search(rf"(?m)^depends_on\b.*= '{PGQ_HEAD}'$", needs_pgq.read_text())
    app.alembic("upgrade", "app@head")
    assert {"public.orders", "pgq.jobs"} <= relations(database)
    with psycopg.connect(database) as conn:
        migrate.check_schema(conn)  # pgq's branch went all the way to its head first

    # The same revision without depends_on: pgq.jobs is not there when it runs.
    needs_pgq.write_text(re.sub(r"(?m)^(depends_on\b.*= ).*$", r"\1None", needs_pgq.read_text()))
    with devdb.scratch_database(pg_server, prefix="pgq_alembic") as fresh:
        set_url(app, fresh)
        failed = app.alembic("upgrade", "app@head", check=False)
    assert failed.returncode != 0
    assert 'relation "pgq.jobs" does not exist' in failed.stderr


def set_url(app: App, url: str) -> None:
    ini = app.root / "alembic.ini"
    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    ini.write_text(
        re.sub(r"(?m)^sqlalchemy\.url = .*$", f"sqlalchemy.url = {sa_url}", ini.read_text())
    )


def test_a_plain_first_revision_lands_in_pgqs_folder_and_is_warned_about(
    wheel: Path, tmp_path: Path, database: str
) -> None:
    # A virtualenv of its own: this test writes into its pgq package, as the mistake does.
    venv = installed.make_venv(tmp_path / "venv", wheel)
    app = App(venv, tmp_path / "app", database)

    mistake = app.revision("-m", "orders", upgrade_sql="CREATE TABLE orders (id int)")
    heads = app.alembic("heads")
    refused = installed.run(
        [str(venv.bin("pgq")), "migrate", "--database-url", database], installed.clean_env()
    )

    assert mistake.parent == venv.site_packages / "pgq" / "migrations" / "versions"
    assert "ForeignRevisionWarning" in heads.stderr
    assert f"{mistake.name} (revision '{mistake.name.split('_')[0]}')" in heads.stderr
    assert "--head base --branch-label app --version-path" in heads.stderr
    assert refused.returncode == 2 and "is not a pgq revision" in refused.stderr
