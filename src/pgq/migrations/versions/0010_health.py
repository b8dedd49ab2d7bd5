"""Queue health: the pgq.health view `pgq doctor` and the metrics read.

Revision ID: pgq_0010
Revises: pgq_0009
Create Date: 2026-12-03
"""

from alembic import op

revision = "pgq_0010"
down_revision = "pgq_0009"
branch_labels = None
depends_on = None

# What ages a PostgreSQL queue: dead row versions in pgq.jobs and in its claim index, which
# every claim steps over until a vacuum removes them, and whatever holds back the xmin
# horizon (an old transaction or snapshot, a replication slot, a prepared transaction), so
# that vacuum may not remove them at all. The view states the facts, one row; pgq.doctor
# judges them against named thresholds and says what to do (docs/operations.md).
#
# The xmin holders are the ones that hold back vacuum of pgq.jobs: backends of this
# database and walsenders (hot_standby_feedback; datid NULL), physical replication slots'
# xmin (a logical slot's catalog_xmin holds back only the system catalogs), and prepared
# transactions of this database. Other roles' transactions show only to a superuser or a
# member of pg_read_all_stats (pg_stat_activity hides their xmin otherwise).
#
# The claim index is looked up by name when the view is read (to_regclass), not bound at
# creation: REINDEX INDEX CONCURRENTLY, which the doctor advises, gives it a new oid.
#
# queued_rows counts the claim index's entries of live queued rows (an index-only scan of
# jobs_claim_idx), so its cost follows the backlog and the index's size, like a claim's.
UPGRADE = """
CREATE VIEW pgq.health AS
WITH tbl AS (
    SELECT s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze,
           s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
           pg_table_size(s.relid) AS table_bytes,
           current_setting('autovacuum')::boolean
               AND coalesce(
                   (SELECT option_value::boolean
                    FROM pg_options_to_table(c.reloptions)
                    WHERE option_name = 'autovacuum_enabled'),
                   true) AS autovacuum_enabled
    FROM pg_stat_user_tables AS s
    JOIN pg_class AS c ON c.oid = s.relid
    WHERE s.relid = 'pgq.jobs'::regclass
), xact AS (
    SELECT pid, application_name, state, backend_type,
           extract(epoch FROM now() - coalesce(xact_start, backend_start))::float8 AS seconds,
           age(backend_xmin) AS xmin_age
    FROM pg_stat_activity
    WHERE backend_xmin IS NOT NULL
      AND pid <> pg_backend_pid()
      AND (datid IS NULL OR datname = current_database())
    ORDER BY age(backend_xmin) DESC, xact_start
    LIMIT 1
), slot AS (
    SELECT slot_name, active, age(xmin) AS xmin_age
    FROM pg_replication_slots
    WHERE xmin IS NOT NULL
    ORDER BY age(xmin) DESC
    LIMIT 1
), prepared AS (
    SELECT gid, owner, extract(epoch FROM now() - prepared)::float8 AS seconds,
           age(transaction) AS xmin_age
    FROM pg_prepared_xacts
    WHERE database = current_database()
    ORDER BY age(transaction) DESC
    LIMIT 1
)
SELECT tbl.n_live_tup AS jobs_live_rows,
       tbl.n_dead_tup AS jobs_dead_rows,
       tbl.n_mod_since_analyze AS jobs_changed_since_analyze,
       tbl.table_bytes AS jobs_table_bytes,
       greatest(tbl.last_vacuum, tbl.last_autovacuum) AS last_vacuum_at,
       tbl.last_autovacuum AS last_autovacuum_at,
       greatest(tbl.last_analyze, tbl.last_autoanalyze) AS last_analyze_at,
       tbl.last_autoanalyze AS last_autoanalyze_at,
       tbl.autovacuum_enabled,
       coalesce(pg_relation_size(to_regclass('pgq.jobs_claim_idx')), 0) AS claim_index_bytes,
       (SELECT count(*) FROM pgq.jobs WHERE state = 'queued') AS queued_rows,
       xact.pid AS oldest_xact_pid,
       xact.application_name AS oldest_xact_application_name,
       xact.state AS oldest_xact_state,
       xact.backend_type AS oldest_xact_backend_type,
       xact.seconds AS oldest_xact_seconds,
       xact.xmin_age AS oldest_xact_xmin_age,
       slot.slot_name AS oldest_slot_name,
       slot.active AS oldest_slot_active,
       slot.xmin_age AS oldest_slot_xmin_age,
       prepared.gid AS oldest_prepared_gid,
       prepared.owner AS oldest_prepared_owner,
       prepared.seconds AS oldest_prepared_seconds,
       prepared.xmin_age AS oldest_prepared_xmin_age
FROM tbl
LEFT JOIN xact ON true
LEFT JOIN slot ON true
LEFT JOIN prepared ON true;

COMMENT ON VIEW pgq.health IS
    'pgq: one row of facts about what ages the queue: dead rows and vacuums of pgq.jobs, '
    'the claim index against live queued rows, and the oldest transaction, replication '
    'slot and prepared transaction holding back the xmin horizon. pgq doctor judges them. '
    'Stable interface.';
COMMENT ON COLUMN pgq.health.jobs_dead_rows IS
    'dead row versions in pgq.jobs (statistics; a vacuum removes them unless xmin is held)';
COMMENT ON COLUMN pgq.health.queued_rows IS 'queued jobs now (entries of jobs_claim_idx)';
COMMENT ON COLUMN pgq.health.oldest_xact_seconds IS
    'seconds since the oldest xmin-holding backend began its transaction';
COMMENT ON COLUMN pgq.health.oldest_xact_xmin_age IS
    'transactions since its snapshot''s xmin: how far it holds back the horizon';

COMMENT ON SCHEMA pgq IS 'pgq schema 10';
"""

DOWNGRADE = """
DROP VIEW pgq.health;
COMMENT ON SCHEMA pgq IS 'pgq schema 9';
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
