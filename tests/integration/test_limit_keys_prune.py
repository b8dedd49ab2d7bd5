"""The pruning of idle flow-control rows (reaper.prune_limit_keys) against a real PostgreSQL:
idle rows of pgq.concurrency_keys and pgq.rate_limits go, rows in use stay, and a prune
racing a finish, a promotion pass, a rated claim or an enqueue on the same key (another
connection holding its transaction open) never breaks a slot count or a rate window.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from test_claim import claim, run_burst
from test_concurrency_limits import held_slots, run_limited, slots, unblock
from test_rate_limits import most_starts_in_a_window, rated_claim, starts

import pgq
from pgq import admin, limits, reaper, store
from pgq.registry import Registry, Task

Conn = psycopg.Connection[Any]


@pytest.fixture
def registry() -> Registry:
    reg = Registry()

    @pgq.task(name="lim.per_customer", registry=reg, concurrency_limit=2,
              concurrency_key=lambda args: f"customer:{args['customer']}")  # fmt: skip
    def per_customer(customer: int) -> None:
        pass

    @pgq.task(name="rate.t", registry=reg, rate_limit="5/s",
              rate_key=lambda args: f"tenant:{args['tenant']}")  # fmt: skip
    def t(tenant: int) -> None:
        pass

    return reg


def task_of(registry: Registry, name: str) -> Task:
    found = registry.get(name)
    assert found is not None
    return found


def prune(conn: Conn, **config: Any) -> reaper.KeyPruneResult:
    result = reaper.prune_limit_keys(conn, reaper.ReaperConfig(**config))
    assert result.complete
    return result


def rate_rows(conn: Conn) -> dict[str, tuple[int, float, bool]]:
    rows = conn.execute("SELECT key, max_starts, period, synced FROM pgq.rate_limits")
    return {key: (n, period, synced) for key, n, period, synced in rows.fetchall()}


def age_starts(conn: Conn, seconds: float = 2.0) -> None:
    """Move every recorded start `seconds` into the past, as if that much time had gone by."""
    conn.execute(
        "UPDATE pgq.rate_limits SET starts = ARRAY("
        " SELECT s - make_interval(secs => %s) FROM unnest(starts) AS s)",
        [seconds],
    )


@contextmanager
def open_transaction(db_url: str) -> Iterator[Conn]:
    """Another connection with a transaction left open until the block ends (then committed)."""
    with psycopg.connect(db_url) as other:
        yield other
        other.commit()


# --- concurrency keys ---------------------------------------------------------------------------


def test_idle_concurrency_keys_are_pruned(db_url: str, conn: Conn, registry: Registry) -> None:
    task = task_of(registry, "lim.per_customer")
    pgq.enqueue_many(conn, [task.spec(customer=c) for c in range(5) for _ in range(3)])
    assert run_burst(db_url, registry).succeeded == 15
    assert len(slots(conn)) == 5

    result = prune(conn)

    assert dict(result.deleted) == {"concurrency": 5, "rate": 0}
    assert slots(conn) == {}


def test_concurrency_keys_in_use_are_kept(conn: Conn, registry: Registry) -> None:
    task = task_of(registry, "lim.per_customer")
    pgq.enqueue_many(conn, [task.spec(customer=c) for c in (1, 1, 1, 2, 3)])
    unblock(conn)  # customer:1 holds 2 slots with 1 blocked; customers 2, 3 hold one each
    (held,) = [i for i in claim(conn, 10, tasks=("lim.per_customer",))
               if conn.execute("SELECT concurrency_key FROM pgq.jobs WHERE id = %s",
                               [i]).fetchone() == ("customer:3",)]  # fmt: skip
    run_limited(conn, [held], outcome="failed")  # customer:3: nothing held, one failed job
    conn.execute("INSERT INTO pgq.concurrency_keys (key, max_active) VALUES ('woken', 1)")
    conn.execute("INSERT INTO pgq.concurrency_wakeups (key, max_active) VALUES ('woken', 1)")
    conn.execute("INSERT INTO pgq.concurrency_keys (key, max_active) VALUES ('idle', 1)")
    conn.execute(
        "INSERT INTO pgq.jobs (queue, task, state, concurrency_key) "
        "VALUES ('default', 'lim.per_customer', 'blocked', 'blocked-only')"
    )
    conn.execute("INSERT INTO pgq.concurrency_keys (key, max_active) VALUES ('blocked-only', 1)")

    result = prune(conn)

    assert dict(result.deleted) == {"concurrency": 1, "rate": 0}
    assert set(slots(conn)) == {"customer:1", "customer:2", "customer:3", "woken", "blocked-only"}
    assert slots(conn)["customer:1"] == (2, 2, 1)


def test_a_retried_job_of_a_key_keeps_its_limit(conn: Conn, registry: Registry) -> None:
    # A failed job keeps its key's row: `pgq retry` then wakes the key with the row's limit
    # (2), where a pruned row would have given it 1.
    task = task_of(registry, "lim.per_customer")
    ids = [task.enqueue(conn, customer=7) for _ in range(3)]
    unblock(conn)
    run_limited(conn, claim(conn, 10, tasks=("lim.per_customer",)), outcome="failed")
    unblock(conn)
    run_limited(conn, claim(conn, 10, tasks=("lim.per_customer",)), outcome="failed")
    assert slots(conn)["customer:7"] == (2, 0, 0)

    assert dict(prune(conn).deleted)["concurrency"] == 0  # idle, but its jobs failed
    assert admin.retry_jobs(conn, ids).retried == ids
    unblock(conn)

    assert slots(conn)["customer:7"] == (2, 2, 1)


def test_batches_walk_the_keys_and_carry_on_where_they_stopped(conn: Conn) -> None:
    # Keys the prune must keep (a blocked job each) fill whole batches without stalling it.
    conn.execute(
        "INSERT INTO pgq.concurrency_keys (key, max_active) "
        "SELECT 'k' || lpad(i::text, 2, '0'), 1 FROM generate_series(1, 9) AS i"
    )
    conn.execute(
        "INSERT INTO pgq.jobs (queue, task, state, concurrency_key) "
        "SELECT 'default', 't', 'blocked', 'k0' || i FROM generate_series(1, 4) AS i"
    )
    config = reaper.ReaperConfig(prune_batch_size=2)

    first = reaper.prune_limit_keys(conn, config, max_batches=3)
    assert (first.batches, first.resume, first.complete) == (3, ("concurrency", "k06"), False)
    assert first.deleted["concurrency"] == 2  # k05, k06
    rest = reaper.prune_limit_keys(conn, config, after=first.resume)

    assert rest.complete and rest.deleted["concurrency"] == 3
    assert sorted(slots(conn)) == ["k01", "k02", "k03", "k04"]


def test_a_prune_skips_a_key_a_finish_holds_and_the_counts_stay_right(
    db_url: str, conn: Conn, registry: Registry
) -> None:
    task = task_of(registry, "lim.per_customer")
    job_id = task.enqueue(conn, customer=1)
    unblock(conn)
    assert claim(conn, 1, tasks=("lim.per_customer",)) == [job_id]

    with open_transaction(db_url) as other:
        run_limited(other, [job_id])  # active 1 -> 0, the key's row locked until commit
        assert dict(prune(conn).deleted) == {"concurrency": 0, "rate": 0}
        late = task.enqueue(conn, customer=1)  # waits for a slot the open finish has freed
    unblock(conn)

    assert claim(conn, 5, tasks=("lim.per_customer",)) == [late]
    assert slots(conn) == {"customer:1": (2, 1, 0)} and held_slots(conn) == {"customer:1": 1}


def test_a_prune_skips_a_key_a_promotion_pass_holds(
    db_url: str, conn: Conn, registry: Registry
) -> None:
    task = task_of(registry, "lim.per_customer")
    first = task.enqueue(conn, customer=1)
    unblock(conn)
    run_limited(conn, claim(conn, 1, tasks=("lim.per_customer",)))
    assert slots(conn) == {"customer:1": (2, 0, 0)}  # idle: the prune would take it
    second = task.enqueue(conn, customer=1)

    with open_transaction(db_url) as other:
        store.fetch(other, store.unblock_jobs(limit=1000))  # promotes `second`, uncommitted
        assert dict(prune(conn).deleted) == {"concurrency": 0, "rate": 0}

    assert slots(conn) == {"customer:1": (2, 1, 0)}
    assert claim(conn, 5, tasks=("lim.per_customer",)) == [second] and first != second
    assert dict(prune(conn).deleted)["concurrency"] == 0  # a running job holds its slot


def test_an_enqueue_the_prune_cannot_see_still_gets_its_slot(
    db_url: str, conn: Conn, registry: Registry
) -> None:
    # A limited enqueue never touches the key's row: the prune deletes the idle row while
    # the enqueue's transaction is open, and its wakeup makes the passes create it again.
    task = task_of(registry, "lim.per_customer")
    conn.execute("INSERT INTO pgq.concurrency_keys (key, max_active) VALUES ('customer:1', 2)")

    with open_transaction(db_url) as other:
        job_id = task.enqueue(other, customer=1)
        assert dict(prune(conn).deleted)["concurrency"] == 1
    unblock(conn)

    assert claim(conn, 5, tasks=("lim.per_customer",)) == [job_id]
    assert slots(conn) == {"customer:1": (2, 1, 0)} and held_slots(conn) == {"customer:1": 1}


def test_racing_prunes_and_finishes_never_lose_a_slot(
    db_url: str, conn: Conn, registry: Registry
) -> None:
    task = task_of(registry, "lim.per_customer")
    for _ in range(5):
        pgq.enqueue_many(conn, [task.spec(customer=c) for c in range(20) for _ in range(3)])
        stop = threading.Event()

        def prune_until_stopped(stop: threading.Event) -> None:
            with psycopg.connect(db_url, autocommit=True) as own:
                while not stop.is_set():
                    reaper.prune_limit_keys(own, reaper.ReaperConfig(prune_batch_size=7))

        pruner = threading.Thread(target=prune_until_stopped, args=(stop,))
        pruner.start()
        try:
            stats = run_burst(db_url, registry, concurrency=8)
        finally:
            stop.set()
            pruner.join(30)
        assert stats.succeeded == 60
        left = slots(conn)
        assert all(active == 0 for _, active, _ in left.values())
        assert held_slots(conn) == {}
        conn.execute("DELETE FROM pgq.jobs")


# --- rate keys ----------------------------------------------------------------------------------


def test_idle_rate_keys_are_pruned_once_their_starts_leave_the_window(
    db_url: str, conn: Conn, registry: Registry
) -> None:
    task = task_of(registry, "rate.t")
    pgq.enqueue_many(conn, [task.spec(tenant=n) for n in range(4)])
    assert run_burst(db_url, registry).succeeded == 4
    assert set(rate_rows(conn)) == {f"tenant:{n}" for n in range(4)}

    assert dict(prune(conn).deleted) == {"concurrency": 0, "rate": 0}  # starts in the window
    age_starts(conn)

    assert dict(prune(conn).deleted) == {"concurrency": 0, "rate": 4}
    assert rate_rows(conn) == {}


def test_rate_keys_in_use_or_synced_are_kept(conn: Conn, registry: Registry) -> None:
    task = task_of(registry, "rate.t")
    task.enqueue(conn, tenant=1)  # blocked: kept
    conn.execute("INSERT INTO pgq.rate_limits (key, max_starts, period, starts) "
                 "VALUES ('recent', 5, 60, ARRAY[now() - interval '30 s']), "
                 "('old', 5, 60, ARRAY[now() - interval '61 s'])")  # fmt: skip
    store.fetch(conn, store.sync_rate_limits(keys=["synced"], max_starts=[3], periods=[1.0]))

    assert dict(prune(conn).deleted) == {"concurrency": 0, "rate": 1}
    assert rate_rows(conn) == {
        "tenant:1": (5, 1.0, False), "recent": (5, 60.0, False), "synced": (3, 1.0, True),
    }  # fmt: skip


def test_a_prune_skips_a_key_a_rated_claim_holds(
    db_url: str, conn: Conn, registry: Registry
) -> None:
    task = task_of(registry, "rate.t")
    task.enqueue(conn, tenant=1)
    conn.execute("UPDATE pgq.rate_limits SET starts = ARRAY[now() - interval '2 s']")

    with open_transaction(db_url) as other:
        assert len(rated_claim(other)) == 1  # the key's row locked, a start recorded
        assert dict(prune(conn).deleted)["rate"] == 0

    assert dict(prune(conn).deleted)["rate"] == 0  # its newest start is in the window
    assert len(rate_rows(conn)) == 1


def test_a_rated_job_whose_row_was_pruned_is_admitted_under_its_task_limit(
    db_url: str, conn: Conn, registry: Registry
) -> None:
    # A rated enqueue that found the row locks nothing: the prune deletes the idle row
    # while the enqueue's transaction is open, and the job commits without a row. The next
    # rated claim makes the row from the task's limit, the one after admits the job.
    task = task_of(registry, "rate.t")
    conn.execute("INSERT INTO pgq.rate_limits (key, max_starts, period) VALUES ('tenant:1', 5, 1)")

    with open_transaction(db_url) as other:
        ids = [task.enqueue(other, tenant=1) for _ in range(7)]
        assert dict(prune(conn).deleted)["rate"] == 1
    assert rate_rows(conn) == {}

    assert rated_claim(conn) == []
    assert rate_rows(conn) == {"tenant:1": (5, 1.0, False)}
    ((seconds,),) = store.fetch(conn, store.next_rate_slot(queues=["default"], tasks=["rate.t"]))
    assert seconds == 0
    assert rated_claim(conn) == ids[:5]
    assert most_starts_in_a_window(starts(conn), 1.0) == 5


def test_a_running_job_retried_after_its_row_went_is_admitted_again(
    db_url: str, conn: Conn, registry: Registry
) -> None:
    task = task_of(registry, "rate.t")
    job_id = task.enqueue(conn, tenant=1)
    assert rated_claim(conn) == [job_id]
    age_starts(conn)  # the job has run longer than its key's period
    assert dict(prune(conn).deleted)["rate"] == 1

    run_limited(conn, [job_id], outcome="retry")  # back to blocked, no row to wait on

    assert rated_claim(conn) == []  # makes the row
    assert rated_claim(conn) == [job_id]


def test_flow_limits_lists_only_the_keys_in_use(conn: Conn, registry: Registry) -> None:
    task = task_of(registry, "rate.t")
    task.enqueue(conn, tenant=1)
    store.fetch(conn, store.sync_rate_limits(keys=["synced"], max_starts=[3], periods=[1.0]))
    conn.execute("INSERT INTO pgq.rate_limits (key, max_starts, period, starts) "
                 "VALUES ('used', 5, 60, ARRAY[now()])")  # fmt: skip
    conn.execute("INSERT INTO pgq.concurrency_keys (key, max_active) VALUES ('idle', 1)")

    shown = {(row.kind, row.key, row.in_use, row.waiting) for row in limits.flow_limits(conn)}

    assert shown == {("rate", "tenant:1", 0, 1), ("rate", "used", 1, 0)}


def test_the_reaper_loop_prunes_idle_keys(db_url: str, conn: Conn) -> None:
    conn.execute("INSERT INTO pgq.concurrency_keys (key, max_active) VALUES ('idle', 1)")
    conn.execute("INSERT INTO pgq.rate_limits (key, max_starts, period) VALUES ('idle', 1, 1)")
    stop = threading.Event()
    passes: list[reaper.PruneResult | None] = []

    def on_pass(_: reaper.ReapResult, pruned: reaper.PruneResult | None) -> None:
        passes.append(pruned)
        stop.set()

    reaper.run(db_url, reaper.ReaperConfig(interval=0.01), stop, on_pass=on_pass)

    assert passes and passes[0] is not None
    assert slots(conn) == {} and rate_rows(conn) == {}
