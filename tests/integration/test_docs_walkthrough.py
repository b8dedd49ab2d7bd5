"""What a newcomer following README.md sees is what pgq does: the schema version the docs
print, `pgq enqueue`'s queue default, and `pgq check`'s import errors."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from pgq import checks, migrate
from pgq.cli import _register_commands, app

ROOT = Path(__file__).resolve().parents[2]
PRINTED_VERSION = re.compile(r"pgq schema (?:created|is up to date) \(version (\d+)\)")

_register_commands()


def test_the_docs_print_the_version_pgq_migrate_prints(empty_db_url: str) -> None:
    done = CliRunner().invoke(app, ["migrate", "--database-url", empty_db_url])
    assert done.exit_code == 0, done.output
    printed = PRINTED_VERSION.search(done.output)
    assert printed is not None, done.output
    assert int(printed.group(1)) == migrate.SCHEMA_VERSION
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    shown = {
        (page.name, int(m.group(1)))
        for page in pages
        for m in PRINTED_VERSION.finditer(page.read_text())
    }
    assert {"README.md", "getting-started.md", "host-apps.md"} <= {name for name, _ in shown}
    assert {name for name, version in shown if version != int(printed.group(1))} == set()


def test_enqueue_without_queue_uses_default_as_its_help_says(db_url: str) -> None:
    help_text = CliRunner().invoke(app, ["enqueue", "--help"], terminal_width=200).output
    queue_line = next(line for line in help_text.splitlines() if "--queue" in line)
    assert "Default: default" in queue_line and "the task's," not in queue_line
    done = CliRunner().invoke(app, ["enqueue", "walk.task", "--database-url", db_url, "--json"])
    assert done.exit_code == 0, done.output
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT queue FROM pgq.jobs WHERE task = 'walk.task'").fetchone()
    assert row == ("default",)


def test_check_names_the_users_line_never_importlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "walk_broken_app.py").write_text("import os\n\nraise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    missing = checks.check_app(["walk_no_such_module"]).problems
    broken = checks.check_app(["walk_broken_app"]).problems
    sys.modules.pop("walk_broken_app", None)
    assert len(missing) == 1 and "No module named 'walk_no_such_module'" in missing[0]
    assert "<frozen" not in missing[0] and "checks.py" not in missing[0]
    assert len(broken) == 1 and "walk_broken_app.py, line 3)" in broken[0], broken


def test_the_readme_names_every_command_and_stays_short() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}  # type: ignore[union-attr]
    assert {c for c in commands if not re.search(rf"\bpgq {c}\b", readme)} == set()
    assert len(readme.encode()) <= 20 * 1024
