"""`make demo`: a real host app (examples/shop) enqueues real jobs in its own transactions.

Steps, each a function below so more can be added (running a worker, for one):

1. find a PostgreSQL server: $PGQ_DATABASE_URL or $DATABASE_URL when set, else the way the
   test suite does (testcontainers, localhost:5432, or a throwaway cluster);
2. drop and recreate the database ``pgq_demo`` (or $PGQ_DEMO_DATABASE) on it, so every
   run starts the same;
3. migrate it with the shop's alembic (``upgrade heads``), which installs the shop's
   tables and pgq's schema, included as the ``pgq`` branch of the shop's migrations;
4. place orders in SQLAlchemy transactions: committed ones leave their jobs, a rolled-back
   one leaves nothing;
5. print the jobs table and a one-line summary;
6. place a hundred more orders, each in its own transaction, and schedule a sale
   announcement a few seconds ahead;
7. run ``pgq work --burst`` until every job that is due within the demo is done (the
   flaky warehouse task fails and retries; a few run out of attempts), then print how many
   jobs succeeded and failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, Table, select
from sqlalchemy.orm import Session

from pgq import devdb, migrate
from pgq.db import redact, to_libpq_url
from pgq.errors import PgqError

# $PGQ_DEMO_DATABASE names another database (the test suite runs the demo in its own).
DEMO_DATABASE = os.environ.get("PGQ_DEMO_DATABASE") or "pgq_demo"
SHOP_ALEMBIC_INI = Path(__file__).resolve().parent / "shop" / "alembic.ini"
URL_ENV_VARS = ("PGQ_DATABASE_URL", "DATABASE_URL")
MORE_ORDERS = 100
SALE_DELAY_SECONDS = 4
EXAMPLES_DIR = Path(__file__).resolve().parent
# Jobs due within this horizon are waited for; the review requests (days ahead) are not.
WAIT_HORIZON_SECONDS = 60


class PaymentDeclinedError(Exception):
    """Raised inside a transaction to show that its order and jobs vanish with it."""


def main() -> int:
    try:
        with find_server() as server:
            url = create_database(server)
            migrate_database(url)
            rolled_back = place_orders()
            show_jobs(url, rolled_back)
            place_many_orders(MORE_ORDERS)
            run_worker(url)
            show_outcomes(url)
    except (PgqError, psycopg.OperationalError) as exc:
        print(f"demo: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


@contextlib.contextmanager
def find_server() -> Iterator[devdb.Server]:
    """The server named by $PGQ_DATABASE_URL/$DATABASE_URL, else the test suite's choice."""
    name = next((v for v in URL_ENV_VARS if os.environ.get(v)), None)
    if name is not None:
        server = devdb.Server(to_libpq_url(os.environ[name]), f"${name}")
        if server.url.rpartition("/")[2].partition("?")[0] == DEMO_DATABASE:
            # The demo database is about to be dropped: administer it from another one.
            server.url = server.database_url("postgres")
        yield _announce(server)
        return
    with devdb.find_server(log=lambda line: print(f"  {line}")) as server:
        yield _announce(server)
    if server.data_dir is not None:
        print(f"\nThe throwaway cluster was stopped and {server.data_dir} removed.")


def _announce(server: devdb.Server) -> devdb.Server:
    print(f"Database server: {server.source} ({redact(server.url)})")
    return server


def create_database(server: devdb.Server) -> str:
    """Drop and recreate the demo database; point this process (and any child) at it."""
    url = devdb.recreate_database(server, DEMO_DATABASE)
    print(f"Created database {DEMO_DATABASE}: {redact(url)}")
    # The shop (its alembic env, its tasks) and pgq's CLI read their database from here.
    os.environ["DATABASE_URL"] = os.environ["PGQ_DATABASE_URL"] = url
    return url


def migrate_database(url: str) -> None:
    """The shop's `alembic upgrade heads`: its own tables plus pgq's branch."""
    print(f"\n$ alembic -c {os.path.relpath(SHOP_ALEMBIC_INI)} upgrade heads")
    command.upgrade(Config(str(SHOP_ALEMBIC_INI)), "heads")
    with psycopg.connect(url) as conn:
        migrate.check_schema(conn)  # what `pgq work` checks before it starts
        print(f"pgq schema version {migrate.schema_version(conn)} is in place")


def place_orders() -> int:
    """Two committed orders (three jobs each) and one rolled back; returns the latter's id."""
    from shop.jobs import place_order
    from shop.models import User, engine

    print("\nPlacing orders:")
    with Session(engine()) as session, session.begin():
        alice = User(email="alice@example.com", name="Alice")
        bob = User(email="bob@example.com", name="Bob")
        for user, cents in ((alice, 4200), (bob, 1999)):
            order = place_order(session, user, cents)
            print(f"  order #{order.id} for {user.name}: {cents / 100:.2f} EUR, committed")
    try:
        with Session(engine()) as session, session.begin():
            carol = User(email="carol@example.com", name="Carol")
            order = place_order(session, carol, 99900)
            raise PaymentDeclinedError(f"card declined for order #{order.id}")
    except PaymentDeclinedError as exc:
        print(f"  order #{order.id} for Carol: {exc}; the transaction rolled back")
    return order.id


def show_jobs(url: str, rolled_back_order: int) -> None:
    """Print pgq.jobs as the database has it, then a one-line summary."""
    from shop.models import engine

    with engine().connect() as conn:
        jobs = Table("jobs", MetaData(schema="pgq"), autoload_with=conn)
        columns = ("id", "queue", "task", "state", "run_at", "args", "created_at")
        rows = conn.execute(select(*(jobs.c[name] for name in columns)).order_by("id")).all()
    print(f"\nselect id, queue, task, state, run_at, args from pgq.jobs;  -- {redact(url)}")
    line = "  {:>3}  {:<11} {:<22} {:<7} {:<20} {}"
    print(line.format("id", "queue", "task", "state", "run_at", "args"))
    for row in rows:
        run_at = row.run_at.strftime("%Y-%m-%d %H:%M:%S")
        print(line.format(row.id, row.queue, row.task, row.state, run_at, json.dumps(row.args)))
    print(f"\n{summary(rows, rolled_back_order)}")


def summary(rows: list[Any], rolled_back_order: int) -> str:
    queues = sorted({row.queue for row in rows})
    # Both times come from the database's now(): no clock of this machine is involved.
    later = sum(1 for row in rows if row.run_at > row.created_at)
    leftovers = sum(1 for row in rows if row.args.get("order_id") == rolled_back_order)
    return (
        f"{len(rows)} jobs on {len(queues)} queues ({', '.join(queues)}): "
        f"{len(rows) - later} due now, {later} scheduled for later; "
        f"{leftovers} from the rolled-back order #{rolled_back_order}."
    )


def place_many_orders(count: int) -> None:
    """``count`` orders, one transaction each, as a web app's requests would; and a sale."""
    import pgq
    from shop.jobs import announce_sale, place_order
    from shop.models import User, engine

    with Session(engine()) as session, session.begin():
        user = User(email="dave@example.com", name="Dave")
        session.add(user)
    for i in range(count):
        with Session(engine()) as session, session.begin():
            place_order(session, session.merge(user), 1000 + i)
    with Session(engine()) as session, session.begin():
        announce_sale.configure(delay=SALE_DELAY_SECONDS).enqueue(
            session, starts_in_seconds=SALE_DELAY_SECONDS
        )
    with engine().connect() as conn:
        total = conn.exec_driver_sql("SELECT count(*) FROM pgq.jobs").scalar()
    print(
        f"\nPlaced {count} more orders (one transaction each) and scheduled a sale "
        f"announcement {SALE_DELAY_SECONDS}s ahead: {total} jobs in pgq.jobs "
        f"(pgq {pgq.__version__})."
    )


def run_worker(url: str) -> None:
    """`pgq work --burst` until nothing is due within the demo's horizon."""
    pgq_cli = Path(sys.executable).with_name("pgq")
    command = [str(pgq_cli), "work", "--app", "shop.jobs", "--burst", "--log-level", "ERROR"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(EXAMPLES_DIR), os.environ.get("PYTHONPATH")])
        ),
    }
    print(f"\n$ PYTHONPATH=examples pgq {' '.join(command[1:])}")
    while True:
        subprocess.run(command, env=env, check=True)
        wait = seconds_until_next_due(url)
        if wait is None:
            return
        print(f"  nothing due now; the next job is due in {wait:.1f}s: waiting, then again")
        time.sleep(wait + 0.1)


def seconds_until_next_due(url: str) -> float | None:
    """Seconds until the next queued job within the horizon is due (database time)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM min(run_at) - now()) FROM pgq.jobs "
            "WHERE state = 'queued' AND run_at < now() + make_interval(secs => %s)",
            (WAIT_HORIZON_SECONDS,),
        ).fetchone()
    return None if row is None or row[0] is None else max(0.0, float(row[0]))


def show_outcomes(url: str) -> None:
    """How many jobs succeeded, failed for good, or still wait (and what for)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT task, state::text, count(*), sum(attempts) FROM pgq.jobs "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
    print("\n  task                  state       jobs  attempts")
    for task, state, count, attempts in rows:
        print(f"  {task:<21} {state:<10} {count:>5} {attempts:>9}")
    by_state: dict[str, int] = {}
    for _, state, count, _ in rows:
        by_state[state] = by_state.get(state, 0) + count
    print(
        f"\n{by_state.get('succeeded', 0)} jobs succeeded, {by_state.get('failed', 0)} "
        f"failed after using all their attempts (see `pgq jobs --state failed`), "
        f"{by_state.get('queued', 0)} are scheduled for later (the review requests)."
    )


if __name__ == "__main__":
    sys.exit(main())
