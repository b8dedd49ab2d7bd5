"""Concurrency limits per key against a real PostgreSQL: enqueue blocked, promotion passes,
the finish that hands a slot on, the reaper, cancel and retry, and races between them.

Workers here run in-process; tests/acceptance/test_flow_control.py runs four real
processes with a ledger.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from test_claim import claim, run_burst

import pgq
from pgq import admin, reaper, store
from pgq.errors import OptionError, TaskRegistrationError
from pgq.registry import Registry, Task

Conn = psycopg.Connection[Any]


@pytest.fixture
def registry() -> Registry:
    reg = Registry()

    @pgq.task(
        name="lim.per_customer",
        registry=reg,
        concurrency_limit=2,
        concurrency_key=lambda args: f"customer:{args['customer']}",
    )
    def per_customer(customer: int, n: int = 0) -> None:
        pass

    @pgq.task(name="lim.one_at_a_time", registry=reg, concurrency_limit=1)
    def one_at_a_time(n: int = 0) -> None:
        pass

    @pgq.task(name="lim.plain", registry=reg)
    def plain() -> None:
        pass

    return reg


def task_of(registry: Registry, name: str) -> Task:
    found = registry.get(name)
    assert found is not None
    return found


def states(conn: Conn, key: str | None = None) -> Counter[str]:
    rows = conn.execute(
        "SELECT state::text FROM pgq.jobs WHERE %(key)s::text IS NULL OR concurrency_key = %(key)s",
        {"key": key},
    ).fetchall()
    return Counter(row[0] for row in rows)


def slots(conn: Conn) -> dict[str, tuple[int, int, int]]:
    rows = conn.execute("SELECT key, max_active, active, waiting FROM pgq.concurrency_keys")
    return {key: (limit, active, waiting) for key, limit, active, waiting in rows.fetchall()}


def unblock(conn: Conn) -> None:
    """Promotion passes until none has more to do (as the worker runs them)."""
    for _ in range(10):
        ((woken, created, *_),) = store.fetch(conn, store.unblock_jobs(limit=1000))
        if woken == 0 and created == 0:
            return
    pytest.fail("the promotion passes did not settle")


def held_slots(conn: Conn) -> dict[str, int]:
    """Jobs holding a slot per key, counted from the jobs themselves."""
    rows = conn.execute(
        "SELECT concurrency_key, count(*) FROM pgq.jobs "
        "WHERE concurrency_key IS NOT NULL AND state IN ('queued', 'running') GROUP BY 1"
    )
    return dict(rows.fetchall())


def assert_counts_match_jobs(conn: Conn) -> None:
    counted = {key: active for key, (_, active, _) in slots(conn).items() if active}
    assert counted == held_slots(conn)


# --- enqueue and the options ------------------------------------------------------------------


def test_a_limited_job_is_enqueued_blocked_with_its_key_and_a_wakeup(
    conn: Conn, registry: Registry
) -> None:
    task = task_of(registry, "lim.per_customer")
    job_id = task.enqueue(conn, customer=7)
    row = conn.execute(
        "SELECT state::text, concurrency_key FROM pgq.jobs WHERE id = %s", [job_id]
    ).fetchone()
    assert row == ("blocked", "customer:7")
    wakeups = conn.execute("SELECT key, max_active FROM pgq.concurrency_wakeups").fetchall()
    assert wakeups == [("customer:7", 2)]


def test_the_key_defaults_to_the_task_name_and_a_string_key_is_shared(conn: Conn) -> None:
    reg = Registry()

    @pgq.task(name="lim.a", registry=reg, concurrency_limit=3)
    def a() -> None: ...

    @pgq.task(name="lim.b", registry=reg, concurrency_limit=1, concurrency_key="stripe")
    def b() -> None: ...

    @pgq.task(name="lim.c", registry=reg, concurrency_limit=1, concurrency_key="stripe")
    def c() -> None: ...

    for task in (a, b, c):
        task.enqueue(conn)
    keys = conn.execute("SELECT task, concurrency_key FROM pgq.jobs ORDER BY id").fetchall()
    assert keys == [("lim.a", "lim.a"), ("lim.b", "stripe"), ("lim.c", "stripe")]


def test_enqueue_by_name_uses_the_limit_of_the_task_registered_under_it(conn: Conn) -> None:
    @pgq.task(name="lim.global", concurrency_limit=1, concurrency_key=lambda a: f"k{a['x']}")
    def by_name(x: int) -> None: ...

    try:
        pgq.enqueue(conn, "lim.global", {"x": 1})
        pgq.enqueue_many(conn, [pgq.JobSpec("lim.global", {"x": 2}), pgq.JobSpec("other")])
        rows = conn.execute("SELECT state::text, concurrency_key FROM pgq.jobs ORDER BY id")
        assert rows.fetchall() == [("blocked", "k1"), ("blocked", "k2"), ("queued", None)]
    finally:
        pgq.registry.REGISTRY.remove("lim.global")


def test_enqueue_many_mixes_limited_and_plain_jobs_in_order(conn: Conn, registry: Registry) -> None:
    per_customer = task_of(registry, "lim.per_customer")
    plain = task_of(registry, "lim.plain")
    specs = [per_customer.spec(customer=i % 2) if i % 3 else plain.spec() for i in range(9)]
    ids = pgq.enqueue_many(conn, specs)
    rows = conn.execute("SELECT id, state::text FROM pgq.jobs ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ids
    assert [r[1] for r in rows] == ["queued" if i % 3 == 0 else "blocked" for i in range(9)]
    # One wakeup per key of the batch, not one per job.
    assert conn.execute("SELECT count(*) FROM pgq.concurrency_wakeups").fetchone() == (2,)


def test_bad_limit_options_are_refused_when_the_task_is_defined() -> None:
    reg = Registry()
    with pytest.raises(TaskRegistrationError, match="between 1 and"):
        pgq.task(name="bad.zero", registry=reg, concurrency_limit=0)(lambda: None)
    with pytest.raises(TaskRegistrationError, match="whole number"):
        pgq.task(name="bad.float", registry=reg, concurrency_limit=1.5)(lambda: None)
    with pytest.raises(TaskRegistrationError, match="needs a concurrency_limit"):
        pgq.task(name="bad.key", registry=reg, concurrency_key="k")(lambda: None)
    with pytest.raises(OptionError, match="non-empty string"):
        pgq.task(name="bad.empty", registry=reg, concurrency_limit=1, concurrency_key="")(
            lambda: None
        )


def test_a_key_function_that_fails_is_reported_and_nothing_is_sent(
    conn: Conn, registry: Registry
) -> None:
    @pgq.task(name="lim.broken", registry=registry, concurrency_limit=1,
              concurrency_key=lambda args: args["missing"])  # fmt: skip
    def broken(x: int) -> None: ...

    with pytest.raises(OptionError, match=r"concurrency_key\(\{'x': 1\}\) raised KeyError"):
        broken.enqueue(conn, x=1)
    with pytest.raises(OptionError, match="not 5"):
        pgq.task(name="lim.int", registry=registry, concurrency_limit=1,
                 concurrency_key=lambda args: 5)(lambda: None).enqueue(conn)  # fmt: skip
    assert states(conn) == Counter()


# --- promotion and claiming ---------------------------------------------------------------


def test_a_pass_fills_each_key_up_to_its_limit_oldest_first(conn: Conn, registry: Registry) -> None:
    task = task_of(registry, "lim.per_customer")
    ids = {c: [task.enqueue(conn, customer=c) for _ in range(5)] for c in (1, 2)}

    unblock(conn)

    queued = conn.execute("SELECT id FROM pgq.jobs WHERE state = 'queued' ORDER BY id")
    assert [r[0] for r in queued.fetchall()] == sorted(ids[1][:2] + ids[2][:2])
    assert slots(conn) == {"customer:1": (2, 2, 3), "customer:2": (2, 2, 3)}
    assert conn.execute("SELECT count(*) FROM pgq.concurrency_wakeups").fetchone() == (0,)


def test_the_claim_never_returns_a_blocked_job(conn: Conn, registry: Registry) -> None:
    task = task_of(registry, "lim.one_at_a_time")
    for _ in range(5):
        task.enqueue(conn)
    assert claim(conn, 10, tasks=("lim.one_at_a_time",)) == []  # nothing promoted yet
    unblock(conn)
    assert len(claim(conn, 10, tasks=("lim.one_at_a_time",))) == 1
    assert claim(conn, 10, tasks=("lim.one_at_a_time",)) == []  # the rest wait blocked


def test_no_head_of_line_blocking_behind_a_big_key(conn: Conn, registry: Registry) -> None:
    task = task_of(registry, "lim.per_customer")
    pgq.enqueue_many(conn, [task.spec(customer=0, n=i) for i in range(10_000)])
    others = pgq.enqueue_many(conn, [task.spec(customer=c) for c in range(1, 101)])

    unblock(conn)
    claimed = claim(conn, 200, tasks=("lim.per_customer",))

    # Both of key 0's slots, and every job of the 100 other keys, in the first claim.
    assert set(others) <= set(claimed) and len(claimed) == 102
    assert states(conn, "customer:0") == Counter(blocked=9_998, running=2)


# --- finishing hands the slot on ---------------------------------------------------------------


def run_limited(conn: Conn, ids: list[int], outcome: str = "succeeded") -> list[Any]:
    """Finish claimed jobs through job_finish_limited.sql with their lease tokens."""
    tokens = dict(conn.execute(
        "SELECT id, lease_token FROM pgq.jobs WHERE id = ANY(%s)", [ids]
    ).fetchall())  # fmt: skip
    statement = store.finish_limited_jobs(
        ids=ids,
        tokens=[tokens[i] for i in ids],
        outcomes=[outcome] * len(ids),
        delays=[0.0] * len(ids),
        errors=[None] * len(ids),
    )
    return store.fetch(conn, statement)


def test_finishing_promotes_the_next_blocked_job_in_the_same_statement(
    conn: Conn, registry: Registry
) -> None:
    task = task_of(registry, "lim.one_at_a_time")
    ids = [task.enqueue(conn, n=i) for i in range(3)]
    unblock(conn)
    (first,) = claim(conn, 5, tasks=("lim.one_at_a_time",))
    assert first == ids[0]

    assert [r[:2] for r in run_limited(conn, [first])] == [(first, "succeeded")]

    assert conn.execute("SELECT state::text FROM pgq.jobs WHERE id = %s", [ids[1]]).fetchone() == (
        "queued",
    )
    assert slots(conn)["lim.one_at_a_time"][1] == 1
    assert_counts_match_jobs(conn)


def test_a_retry_keeps_the_slot_so_per_key_order_holds(conn: Conn, registry: Registry) -> None:
    task = task_of(registry, "lim.one_at_a_time")
    ids = [task.enqueue(conn, n=i) for i in range(2)]
    unblock(conn)
    (first,) = claim(conn, 5, tasks=("lim.one_at_a_time",))

    run_limited(conn, [first], "retry")

    assert states(conn) == Counter(queued=1, blocked=1)
    row = conn.execute("SELECT state::text FROM pgq.jobs WHERE id = %s", [ids[1]]).fetchone()
    assert row == ("blocked",)
    assert_counts_match_jobs(conn)


def test_a_worker_runs_limited_jobs_and_leaves_every_count_at_zero(
    db_url: str, conn: Conn, registry: Registry
) -> None:
    task = task_of(registry, "lim.per_customer")
    pgq.enqueue_many(conn, [task.spec(customer=i % 7, n=i) for i in range(300)])
    stats = run_burst(db_url, registry, concurrency=8)
    assert stats.succeeded == 300
    assert states(conn) == Counter(succeeded=300)
    assert {active for _, active, _ in slots(conn).values()} == {0}


def test_with_limit_one_a_key_runs_in_enqueue_order(
    db_url: str, conn: Conn, registry: Registry
) -> None:
    ran: list[tuple[int, int]] = []
    reg = Registry()

    @pgq.task(name="lim.ordered", registry=reg, concurrency_limit=1,
              concurrency_key=lambda args: f"k{args['key']}")  # fmt: skip
    def ordered(key: int, n: int) -> None:
        ran.append((key, n))

    pgq.enqueue_many(conn, [ordered.spec(key=i % 3, n=i) for i in range(60)])
    run_burst(db_url, reg, concurrency=8)

    for key in range(3):
        assert [n for k, n in ran if k == key] == list(range(key, 60, 3))


# --- reaper, cancel, retry ---------------------------------------------------------------------


def lapse(conn: Conn, ids: list[int]) -> None:
    conn.execute(
        "UPDATE pgq.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = ANY(%s)",
        [ids],
    )


def test_the_reaper_frees_the_slot_of_a_lapsed_job_it_fails(
    db_url: str, conn: Conn, registry: Registry
) -> None:
    task = task_of(registry, "lim.one_at_a_time")
    first = task.configure(max_attempts=1).enqueue(conn, n=0)
    second = task.enqueue(conn, n=1)
    unblock(conn)
    assert claim(conn, 5, tasks=("lim.one_at_a_time",)) == [first]
    lapse(conn, [first])

    reaper.reap_once(conn, reaper.ReaperConfig())

    assert states(conn) == Counter(failed=1, queued=1)
    assert conn.execute("SELECT state::text FROM pgq.jobs WHERE id = %s", [second]).fetchone() == (
        "queued",
    )
    assert_counts_match_jobs(conn)


def test_the_reaper_requeues_a_lapsed_job_with_its_slot(conn: Conn, registry: Registry) -> None:
    task = task_of(registry, "lim.one_at_a_time")
    first = task.enqueue(conn, n=0)
    task.enqueue(conn, n=1)
    unblock(conn)
    claim(conn, 5, tasks=("lim.one_at_a_time",))
    lapse(conn, [first])

    reaper.reap_once(conn, reaper.ReaperConfig())

    assert states(conn) == Counter(queued=1, blocked=1)
    assert conn.execute("SELECT state::text FROM pgq.jobs WHERE id = %s", [first]).fetchone() == (
        "queued",
    )
    assert_counts_match_jobs(conn)


def test_cancel_of_a_queued_job_hands_its_slot_on_and_of_a_blocked_one_does_not(
    conn: Conn, registry: Registry
) -> None:
    task = task_of(registry, "lim.one_at_a_time")
    ids = [task.enqueue(conn, n=i) for i in range(4)]
    unblock(conn)  # ids[0] queued, the rest blocked

    result = admin.cancel_jobs(conn, [ids[0], ids[2]])

    assert sorted(result.cancelled) == [ids[0], ids[2]]
    rows = conn.execute("SELECT id, state::text FROM pgq.jobs ORDER BY id").fetchall()
    assert rows == [(ids[0], "cancelled"), (ids[1], "queued"), (ids[2], "cancelled"),
                    (ids[3], "blocked")]  # fmt: skip
    assert_counts_match_jobs(conn)


def test_retry_of_a_failed_limited_job_sends_it_back_blocked(
    conn: Conn, registry: Registry
) -> None:
    task = task_of(registry, "lim.one_at_a_time")
    first = task.configure(max_attempts=1).enqueue(conn, n=0)
    unblock(conn)
    claim(conn, 5, tasks=("lim.one_at_a_time",))
    run_limited(conn, [first], "failed")
    second = task.enqueue(conn, n=1)
    unblock(conn)  # the key is free: second is queued

    assert admin.retry_jobs(conn, [first]).retried == [first]
    assert conn.execute("SELECT state::text FROM pgq.jobs WHERE id = %s", [first]).fetchone() == (
        "blocked",
    )
    unblock(conn)  # second holds the only slot: first waits
    assert states(conn) == Counter(queued=1, blocked=1)
    assert conn.execute("SELECT state::text FROM pgq.jobs WHERE id = %s", [second]).fetchone() == (
        "queued",
    )


def test_a_unique_key_counts_a_blocked_job_as_live(conn: Conn, registry: Registry) -> None:
    task = task_of(registry, "lim.one_at_a_time")
    assert task.configure(unique_key="u").enqueue(conn) is not None
    assert task.configure(unique_key="u").enqueue(conn) is None
    assert pgq.enqueue(conn, "lim.plain", unique_key="u") is None
    assert states(conn) == Counter(blocked=1)


# --- races ----------------------------------------------------------------------------------------


def race(url: str, actions: list[Callable[[Conn], Any]]) -> None:
    """Run each action on its own connection, released at the same instant."""
    barrier = threading.Barrier(len(actions))
    errors: list[BaseException] = []

    def run(action: Callable[[Conn], Any]) -> None:
        with psycopg.connect(url, autocommit=True) as own:
            barrier.wait()
            try:
                action(own)
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors


@pytest.mark.parametrize("limit", [1, 2])
def test_two_workers_finishing_one_key_at_once_never_overfill_it(
    db_url: str, conn: Conn, limit: int
) -> None:
    reg = Registry()

    @pgq.task(name="lim.race", registry=reg, concurrency_limit=limit, concurrency_key="race")
    def raced() -> None: ...

    for _ in range(20):  # repetitions: each races two finishes of the same key
        conn.execute("TRUNCATE pgq.jobs, pgq.concurrency_keys, pgq.concurrency_wakeups")
        pgq.enqueue_many(conn, [raced.spec() for _ in range(6)])
        unblock(conn)
        running = claim(conn, 10, tasks=("lim.race",))
        assert len(running) == limit
        actions: list[Callable[[Conn], Any]] = [
            lambda own, job_id=job_id: run_limited(own, [job_id]) for job_id in running
        ]
        actions.append(raced.enqueue)  # a new job of the key, committed mid-race
        actions.append(lambda own: store.fetch(own, store.unblock_jobs(limit=1000)))
        if limit == 1:
            actions.append(lambda own: claim(own, 10, tasks=("lim.race",)))
        race(db_url, actions)

        unblock(conn)
        held = held_slots(conn).get("race", 0)
        assert held == limit, "the key's slots are all used again"
        assert_counts_match_jobs(conn)


def test_promotion_passes_racing_on_one_key_fill_it_exactly(db_url: str, conn: Conn) -> None:
    reg = Registry()

    @pgq.task(name="lim.passes", registry=reg, concurrency_limit=3, concurrency_key="k")
    def passes() -> None: ...

    for _ in range(20):
        conn.execute("TRUNCATE pgq.jobs, pgq.concurrency_keys, pgq.concurrency_wakeups")
        passes.enqueue(conn)
        unblock(conn)  # the key's row exists, one slot taken
        run_limited(conn, claim(conn, 5, tasks=("lim.passes",)))
        for _ in range(8):
            passes.enqueue(conn)  # one wakeup each
        # Eight passes of one wakeup each: every one of them sees the same key with free
        # slots, and only its row lock keeps them from filling it eight times over.
        race(db_url, [lambda own: store.fetch(own, store.unblock_jobs(limit=1))] * 8)
        assert held_slots(conn) == {"k": 3}
        assert_counts_match_jobs(conn)


def test_completing_in_the_task_transaction_hands_the_slot_on(
    db_url: str, conn: Conn, registry: Registry
) -> None:
    task = task_of(registry, "lim.one_at_a_time")
    ids = [task.enqueue(conn, n=i) for i in range(2)]
    unblock(conn)
    (first,) = claim(conn, 5, tasks=("lim.one_at_a_time",))
    token = conn.execute("SELECT lease_token FROM pgq.jobs WHERE id = %s", [first]).fetchone()
    assert token is not None

    with psycopg.connect(db_url) as task_tx:
        done = store.complete_job_in_transaction(job_id=first, token=token[0], result=None)
        assert store.fetch(task_tx, done) == [(first, "succeeded")]
        task_tx.commit()

    row = conn.execute("SELECT state::text FROM pgq.jobs WHERE id = %s", [ids[1]]).fetchone()
    assert row == ("queued",)
    assert_counts_match_jobs(conn)
