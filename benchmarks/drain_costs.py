"""What one drained job costs the database: WAL records and bytes, and the CPU time of
each of the worker's backends, per job; and what it costs the worker process itself.

Queues ``n`` no-op jobs in a fresh database, drains them with one ``pgq work`` (as
scenario 3 does), and prints one JSON line. WAL is read from pg_stat_wal before and after
the drain, so nothing else may write to the server meanwhile. The backends' CPU comes from
/proc (Linux, same machine as the server), read every POLL seconds while they live: a
backend's last POLL seconds go uncounted, and one that lives less than that may be missed
altogether, so drain enough jobs to keep the worker busy for seconds. The worker's own
CPU (``worker_cpu_us_per_job``) is its whole life's user + system time (from
``getrusage`` of the children this process waited for), start-up and imports included:
compare it between checkouts at the same ``n``, not as an absolute.

    .venv/bin/python -m benchmarks.drain_costs [-n 100000]

Unlike the throughput figures, these counts barely move with the machine's noise, so
they show what a change to a statement saves even where the drain rate cannot.
"""

from __future__ import annotations

import argparse
import json
import resource
import threading
from typing import Any

from benchmarks.db import connect, fetch, fresh_database, one
from benchmarks.scenarios.drain import burst_drain, enqueue_noops
from benchmarks.workers import backend_cpu_seconds
from pgq import devdb

N_DEFAULT = 100_000
POLL = 0.1  # seconds between readings of the backends' CPU time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=N_DEFAULT, help="jobs to drain")
    n = parser.parse_args().n
    with devdb.find_server() as server, fresh_database(server) as url:
        print(json.dumps(measure(url, n)))


def measure(url: str, n: int) -> dict[str, Any]:
    first, last = enqueue_noops(url, n)
    with connect(url) as conn:
        records, size = one(conn, "wal_totals")
        cpu: dict[int, tuple[str, float]] = {}  # pid: (name, CPU seconds so far)
        stop = threading.Event()
        watcher = threading.Thread(target=watch_backends, args=(url, cpu, stop), daemon=True)
        watcher.start()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            span = burst_drain(url, first, last)
        finally:
            stop.set()
            watcher.join()
        records_after, size_after = one(conn, "wal_totals")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    per_backend: dict[str, float] = {}
    for _pid, (name, seconds) in sorted(cpu.items()):
        per_backend[name] = per_backend.get(name, 0.0) + seconds / n * 1e6
    return {
        "n": n,
        "per_s": round(n / span.seconds),
        "wal_records_per_job": round((records_after - records) / n, 2),
        "wal_bytes_per_job": round((size_after - size) / n),
        "backend_cpu_us_per_job": {name: round(us, 1) for name, us in per_backend.items()},
        "worker_cpu_us_per_job": round((_cpu(after) - _cpu(children)) * 1e6 / n, 1),
    }


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def watch_backends(url: str, cpu: dict[int, tuple[str, float]], stop: threading.Event) -> None:
    """Keep the latest CPU time of every pgq backend until ``stop`` is set."""
    with connect(url) as conn:
        while not stop.is_set():
            cpu.update(backend_cpu_seconds(fetch(conn, "pgq_backends")))
            stop.wait(POLL)


if __name__ == "__main__":
    main()
