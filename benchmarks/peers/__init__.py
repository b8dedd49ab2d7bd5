"""Scenario 9: Procrastinate and PgQueuer on scenarios 1-4, through their own public APIs.

``make bench-peers`` installs them into a separate venv (.venv-peers, with pgq too) and
runs pgq's scenarios 1-4 and then this, in one run on the same server, so the figures can
be compared. Each peer's figures are measured the way pgq's are (see each scenario's
module); what differs, because the peer's API works that way, is said in
benchmarks/peers/<peer>_peer.py. A peer that is not installed, or fails, gets an error
line of its own; the other peer still runs.
"""

from __future__ import annotations

import importlib
import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import create_engine

from benchmarks.db import BenchError, connect, empty_database, one
from benchmarks.harness import Context, Result, ratio
from benchmarks.scenarios import drain, enqueue_many, enqueue_single, latency
from benchmarks.workers import WorkerProcess
from pgq.db import to_sqlalchemy_url

PEERS = ("procrastinate", "pgqueuer")
# Procrastinate's default worker runs one job at a time; 20,000 would take minutes.
DRAIN_N = {"procrastinate": 5_000, "pgqueuer": drain.N}
DRAIN_N_QUICK = 500
DRAIN_RATE_FLOOR = 20  # jobs/s assumed when bounding a peer's drain
Peer = Any  # benchmarks.peers.<name>_peer.Peer


def run(ctx: Context) -> Iterator[Result]:
    for name in PEERS:
        try:
            module = importlib.import_module(f"benchmarks.peers.{name}_peer")
        except ImportError as exc:
            yield failed(
                "peers",
                name,
                f"{name} is not installed here ({exc}); "
                "run `make bench-peers`, which installs it into .venv-peers",
            )
            continue
        ctx.log(f"peers: {name} {module.version()}")
        for scenario, measure in SCENARIOS.items():
            try:
                yield measure(ctx, module.Peer)
            except Exception as exc:  # one peer's failure must not hide the other's figures
                traceback.print_exc()
                yield failed(scenario, name, " ".join(str(exc).split()) or type(exc).__name__)


def failed(scenario: str, variant: str, message: str) -> Result:
    return Result(scenario, variant, 0, 0.0, {"error": message})


def installed(ctx: Context, peer_class: Callable[[str], Peer], url: str) -> Peer:
    peer = peer_class(url)
    peer.install()
    return peer


def peer_enqueue_single(ctx: Context, peer_class: Callable[[str], Peer]) -> Result:
    n = ctx.size(enqueue_single.N, enqueue_single.N_QUICK) // enqueue_single.ROUNDS
    n *= enqueue_single.ROUNDS
    with empty_database(ctx.server) as url:
        peer = installed(ctx, peer_class, url)
        engine = create_engine(to_sqlalchemy_url(url))
        try:
            with peer.opened():
                loops = {"floor": enqueue_single.floor_loop(engine), peer.name: timed(peer)}
                totals = enqueue_single.alternate(loops, n)
        finally:
            engine.dispose()
    result = Result(enqueue_single.NAME, peer.name, n, totals[peer.name])
    floor_per_s = n / totals["floor"]
    result.extra = {"ratio": ratio(result.per_s, floor_per_s), "floor_per_s": floor_per_s}
    return result


def timed(peer: Peer) -> Callable[[int], float]:
    def loop(count: int) -> float:
        start = time.perf_counter()
        for i in range(count):
            peer.enqueue_one(i)
        return time.perf_counter() - start

    return loop


def peer_enqueue_many(ctx: Context, peer_class: Callable[[str], Peer]) -> Result:
    n = ctx.size(enqueue_many.N, enqueue_many.N_QUICK)
    runs = []
    with empty_database(ctx.server) as url:
        peer = installed(ctx, peer_class, url)
        with peer.opened():
            for _ in range(enqueue_many.REPEATS):
                start = time.perf_counter()
                ids = peer.enqueue_many(n)
                runs.append(time.perf_counter() - start)
                if len(ids) != n:
                    raise BenchError(f"{peer.name} returned {len(ids)} ids for {n} jobs")
    return Result(enqueue_many.NAME, peer.name, n, statistics.median(runs), {"runs_s": runs})


def peer_drain(ctx: Context, peer_class: Callable[[str], Peer]) -> Result:
    with empty_database(ctx.server) as url:
        peer = installed(ctx, peer_class, url)
        n = ctx.size(DRAIN_N[peer.name], DRAIN_N_QUICK)
        with peer.opened():
            ids = [
                i
                for start in range(0, n, drain.ENQUEUE_BATCH)
                for i in peer.enqueue_many(min(drain.ENQUEUE_BATCH, n - start), start)
            ]
        ctx.log(f"peers: {peer.name} drains {n:,} jobs (one worker, default settings)")
        command = peer.worker_command(drain=True)
        with WorkerProcess(url, command=command, env={peer.url_env: url}) as worker:
            worker.wait(drain.DRAIN_TIMEOUT_BASE + n / DRAIN_RATE_FLOOR)
        span = peer.span(ids[0], ids[-1])
    if span.done != n:
        raise BenchError(f"only {span.done:,} of {n:,} {peer.name} jobs succeeded")
    return Result(drain.NAME, peer.name, n, span.seconds)


def peer_latency(ctx: Context, peer_class: Callable[[str], Peer]) -> Result:
    n = ctx.size(latency.N, latency.N_QUICK)
    with empty_database(ctx.server) as url, connect(url) as conn:
        peer = installed(ctx, peer_class, url)
        command = peer.worker_command(drain=False)
        with (
            peer.opened(),
            WorkerProcess(url, command=command, env={peer.url_env: url}) as worker,
        ):

            def enqueue() -> tuple[int, Any]:
                # The peer commits on its own connection; the clock is read right after.
                return peer.enqueue_ledger(), one(conn, "clock_now")[0]

            result = latency.measure(ctx, conn, worker, enqueue, n, peer.name)
    result.target = result.met = None
    return result


SCENARIOS = {
    enqueue_single.NAME: peer_enqueue_single,
    enqueue_many.NAME: peer_enqueue_many,
    drain.NAME: peer_drain,
    latency.NAME: peer_latency,
}
