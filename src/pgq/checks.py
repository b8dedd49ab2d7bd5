"""``pgq check``: load an app the way ``pgq work`` does and find what would break at run time.

For CI: importing the app defines its tasks and schedules (a bad cron expression, an
unknown time zone or a bad option already fails there, and the message names the
schedule); then every schedule's fixed arguments are bound to its task's function, and a
schedule whose task is not registered is reported. With a database URL, the schema
version is compared with this pgq and host revisions misplaced in pgq's migrations
folder are reported. Nothing is enqueued or written.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field

from pgq import migrate
from pgq.db import connect
from pgq.errors import PgqError
from pgq.periodic import SCHEDULES, Schedule, ScheduleRegistry, check_schedule
from pgq.registry import REGISTRY, Registry


@dataclass(frozen=True)
class CheckReport:
    """What [`check_app`][pgq.checks.check_app] found: ``problems`` is empty when all is well."""

    apps: list[str]
    tasks: int = 0
    schedules: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "apps": self.apps,
            "tasks": self.tasks,
            "schedules": self.schedules,
            "problems": self.problems,
        }


def check_app(
    apps: Iterable[str],
    database_url: str | None = None,
    *,
    registry: Registry = REGISTRY,
    schedules: ScheduleRegistry = SCHEDULES,
) -> CheckReport:
    """Import the modules in ``apps`` and check every task and schedule they define.

    Each problem is one sentence that names the module, task or schedule. In a host app's
    test suite: ``assert pgq.checks.check_app(["myapp.jobs"]).problems == []``.
    """
    names = [name.strip() for entry in apps for name in entry.split(",") if name.strip()]
    problems = [p for name in names if (p := _import(name)) is not None]
    if not names:
        problems.append("no app given: pass the module that defines your tasks")
    for definition in schedules:
        problems.extend(_schedule_problems(definition, registry))
    if database_url is not None:
        problems.extend(_database_problems(database_url))
    return CheckReport(names, len(registry), len(schedules), problems)


def _import(name: str) -> str | None:
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m` and `pgq work`
    try:
        importlib.import_module(name)
    except PgqError as exc:  # a bad task or schedule definition: its message names it
        return f"cannot import {name!r}: {exc}"
    except Exception as exc:
        # The innermost frame of the user's code: importlib's own frozen frames say nothing
        # (a module that is not found has none of the user's).
        # ([1:]: the first frame is this function's own.)
        frames = traceback.extract_tb(exc.__traceback__)[1:]
        frames = [f for f in frames if not f.filename.startswith("<")]
        where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
        return f"cannot import {name!r}: {type(exc).__name__}: {exc}{where}"
    return None


def _schedule_problems(definition: Schedule, registry: Registry) -> list[str]:
    label = f"schedule {definition.name!r}"
    found = []
    try:
        check_schedule(definition)  # again (args included): it may have been built by hand
    except PgqError as exc:
        found.append(str(exc))
    task = definition.task
    if registry.get(task.name) is not task:
        found.append(
            f"{label}: its task {task.name!r} is not registered in this app, so no worker "
            "of it would run the jobs"
        )
    return found


def _database_problems(url: str) -> list[str]:
    found = []
    message = migrate.foreign_revisions_message()
    if message is not None:
        found.append(message)
    try:
        with connect(url) as conn:
            migrate.check_schema(conn)
    except PgqError as exc:
        found.append(str(exc))
    return found
