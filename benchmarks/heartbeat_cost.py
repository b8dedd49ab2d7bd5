"""What the worker registry adds to a heartbeat: the lease extension alone, and with the
upsert of the worker's row in pgq.workers (what ``pgq work`` sends), taking turns.

Claims ``--held`` jobs on a fresh database, then runs ``--beats`` heartbeats of each
kind, alternating in blocks of 50, on one connection (prepared, as the worker's writer
is), and prints one JSON line: the median round trip of each, in microseconds, and their
ratio. A worker beats at most every 10 s, so this is the cost per 10 s of a worker, not
per job; the drain does not run it (see benchmarks.compare for that).

    .venv/bin/python -m benchmarks.heartbeat_cost [--beats 2000] [--held 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import psycopg

from benchmarks.db import connect, fetch, fresh_database
from pgq import devdb, store
from pgq.worker_registry import Presence

BLOCK = 50  # beats of one kind before switching to the other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beats", type=int, default=2000)
    parser.add_argument("--held", type=int, default=10)
    args = parser.parse_args()
    with devdb.find_server() as server, fresh_database(server) as url, connect(url) as conn:
        print(json.dumps(measure(conn, args.beats, args.held)))


def measure(conn: psycopg.Connection[Any], beats: int, held: int) -> dict[str, Any]:
    fetch(conn, "job_insert_series", {"task": "bench.noop", "n": held})
    claimed = store.fetch(
        conn,
        store.claim_jobs(
            queues=["default"], tasks=["bench.noop"], leases=[30.0], limit=held, worker_id="b"
        ),
    )
    ids, tokens = [r[0] for r in claimed], [r[6] for r in claimed]
    presence = Presence("bench:1:abcd", ("default",), {"bench.noop": "default"}, 10, "h", 1)
    kinds = {"leases_only": None, "with_registry": presence}
    times: dict[str, list[float]] = {name: [] for name in kinds}
    for block in range(2 * beats // BLOCK):
        name = list(kinds)[block % 2]
        worker = kinds[name]
        for _ in range(BLOCK):
            row = None if worker is None else worker.row(running=held)
            statement = store.extend_leases(
                ids=ids, tokens=tokens, leases=[30.0] * held, worker=row
            )
            started = time.perf_counter()
            store.fetch(conn, statement)
            times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) * 1e6 for name, values in times.items()}
    return {
        "benchmark": "heartbeat_cost",
        "beats": beats,
        "held": held,
        "leases_only_us": round(medians["leases_only"], 1),
        "with_registry_us": round(medians["with_registry"], 1),
        "ratio": round(medians["with_registry"] / medians["leases_only"], 3),
    }


if __name__ == "__main__":
    main()
