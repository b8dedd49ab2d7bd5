"""``python -m benchmarks``: run the scenarios, JSON lines on stdout, a summary on stderr."""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from benchmarks import harness
from benchmarks.db import BenchError, server_setting, server_version
from pgq import devdb

# `make bench` runs these, in this order.
DEFAULT_SCENARIOS = (
    "enqueue_single",
    "enqueue_many",
    "drain",
    "latency",
    "wait",
    "backlog",
    "scale_out",
    "enqueue_concurrent",
    "memory",
    "workflows",
    "pgbouncer",  # skipped (with the reason) where the pgbouncer binary is missing
    "dashboard",  # skipped (with the reason) without the web extra
    "process_pool",
    "schedules",
    "limits",
    "limits_rate",  # about a minute: eight workers at 100 starts a second for 60 s
)
# Run only when asked by name: the soak takes 20 minutes, the peers need their own venv.
EXTRA_SCENARIOS = ("soak", "peers")
ALL_SCENARIOS = DEFAULT_SCENARIOS + EXTRA_SCENARIOS


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="pgq's benchmark suite (issue 6): one JSON line per result on stdout, "
        "progress and a summary table on stderr.",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="SCENARIO",
        help="run only this scenario (repeatable, or comma-separated); one of: "
        + ", ".join(ALL_SCENARIOS),
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke run in seconds, not figures"
    )
    parser.add_argument(
        "--throwaway-cluster",
        action="store_true",
        help="run on a cluster started here from the local initdb (PostgreSQL's defaults, "
        "so autovacuum on; fsync off) instead of the server pgq.devdb finds",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser.parse_args(argv)


def chosen_scenarios(only: list[str] | None) -> list[str]:
    """The scenarios ``--only`` names (in the order given), or the default set."""
    if not only:
        return list(DEFAULT_SCENARIOS)
    names = [name.strip() for entry in only for name in entry.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALL_SCENARIOS]
    if unknown:
        raise SystemExit(
            f"benchmarks: error: unknown scenario {', '.join(unknown)}; "
            f"choose from {', '.join(ALL_SCENARIOS)}"
        )
    return names


def load(name: str) -> ModuleType:
    if name == "peers":
        return importlib.import_module("benchmarks.peers")
    return importlib.import_module(f"benchmarks.scenarios.{name}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        print("\n".join(ALL_SCENARIOS))
        return 0
    names = chosen_scenarios(args.only)
    # SIGTERM unwinds like Ctrl-C, so scratch databases, workers and clusters are cleaned up.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    log = harness.Progress()
    servers = devdb.throwaway_cluster() if args.throwaway_cluster else devdb.find_server(log=log)
    with servers as server:
        ctx = harness.Context(server, quick=args.quick, log=log)
        describe_environment(ctx, server)
        lines, failed = run_scenarios(ctx, names)
    print("\n" + harness.format_table(harness.summary_rows(lines)), file=sys.stderr)
    return 1 if failed else 0


def run_scenarios(ctx: harness.Context, names: list[str]) -> tuple[list[dict[str, Any]], int]:
    """Run each scenario, printing its lines as they come; a failure does not stop the rest."""
    lines: list[dict[str, Any]] = []
    failed = 0
    for name in names:
        ctx.log(f"{name}: starting{' (quick)' if ctx.quick else ''}")
        try:
            for result in load(name).run(ctx):
                emit(result.to_dict(), lines)
        except harness.Skipped as exc:
            ctx.log(f"{name}: skipped: {exc}")
            emit(json.loads(harness.skipped_line(name, str(exc))), lines)
        except Exception as exc:  # report it and go on with the next scenario
            failed += 1
            if not isinstance(exc, BenchError):
                traceback.print_exc(file=sys.stderr)
            message = " ".join(str(exc).split()) or type(exc).__name__
            emit(json.loads(harness.error_line(name, message)), lines)
    return lines, failed


def emit(line: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    print(json.dumps(line, ensure_ascii=False), flush=True)
    lines.append(line)


def describe_environment(ctx: harness.Context, server: devdb.Server) -> None:
    """One progress line saying where the figures come from (for benchmarks/README.md)."""
    facts = environment(server)
    ctx.log("environment: " + ", ".join(f"{key}={value}" for key, value in facts.items()))


def environment(server: devdb.Server) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "ram_gib": round(_mem_total_kib() / 1024 / 1024, 1),
        "postgresql": server_version(server.url),
        "autovacuum": server_setting(server.url, "autovacuum"),
        "fsync": server_setting(server.url, "fsync"),
        "server": server.source,
        "python": platform.python_version(),
        "pgq_commit": _git_commit(),
    }


def _mem_total_kib() -> int:
    from benchmarks.workers import parse_status_kib

    with open("/proc/meminfo") as meminfo:
        return parse_status_kib(meminfo.read(), "MemTotal")


def _git_commit() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown"
