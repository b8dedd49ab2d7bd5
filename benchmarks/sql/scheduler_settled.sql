-- True once a worker's scheduler connection has finished its first overdue check (the
-- last statement of its first pass): from then on it stands by, which is what the loaded
-- drain of benchmarks/scenarios/schedules.py measures.
SELECT EXISTS (
    SELECT 1 FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = 'pgq scheduler'
      AND state = 'idle' AND query LIKE '%overdue_since%'
)
