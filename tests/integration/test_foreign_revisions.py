"""A host app's revision written into pgq's own migrations folder is found and explained.

With pgq's versions in a host's ``version_locations`` and no revision of its own yet, a
plain ``alembic revision -m orders`` chains after pgq's head and writes the file into
pgq's folder inside site-packages, where a reinstall deletes it. ``pgq migrate`` refuses
to run then (it would record the host's revision in pgq's version table) and ``pgq work``
warns; both say what to do.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pgq import migrate
from pgq.errors import SchemaError

HOST_REVISION = '''"""orders

Revision ID: 3f2a9c1d7b10
Revises: pgq_0004
"""

revision: str = "3f2a9c1d7b10"
down_revision = "pgq_0004"
'''


@pytest.fixture
def versions(tmp_path: Path) -> Path:
    """A copy of pgq's versions folder, as installed."""
    copy = tmp_path / "versions"
    shutil.copytree(migrate.migrations_path() / "versions", copy)
    return copy


def test_pgqs_own_folder_holds_only_pgq_revisions() -> None:
    assert migrate.foreign_revisions() == []
    assert migrate.foreign_revisions_message() is None


def test_a_host_revision_in_pgqs_folder_is_named_with_what_to_do(versions: Path) -> None:
    (versions / "3f2a9c1d7b10_orders.py").write_text(HOST_REVISION)

    assert migrate.foreign_revisions(versions) == [
        (versions / "3f2a9c1d7b10_orders.py", "3f2a9c1d7b10")
    ]
    message = migrate.foreign_revisions_message(versions)
    assert message is not None
    assert "3f2a9c1d7b10_orders.py (revision '3f2a9c1d7b10')" in message
    assert "--head base --branch-label app --version-path" in message


def test_pgq_migrate_refuses_while_a_host_revision_sits_in_its_folder(
    empty_db_url: str, versions: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (versions / "3f2a9c1d7b10_orders.py").write_text(HOST_REVISION)
    monkeypatch.setattr(migrate, "migrations_path", lambda: versions.parent)

    with pytest.raises(SchemaError, match="is not a pgq revision"):
        migrate.upgrade(empty_db_url)
    with pytest.raises(SchemaError, match="is not a pgq revision"):
        migrate.upgrade_sql()


def test_the_warning_alembic_shows_names_the_file(versions: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        migrate.warn_foreign_revisions(versions)  # pgq's own files only: silent
    (versions / "3f2a9c1d7b10_orders.py").write_text(HOST_REVISION)

    with pytest.warns(migrate.ForeignRevisionWarning, match="3f2a9c1d7b10_orders.py"):
        migrate.warn_foreign_revisions(versions)
