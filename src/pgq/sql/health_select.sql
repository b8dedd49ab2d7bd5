-- pgq doctor and the metrics scrape: the one row of pgq.health, every column.
SELECT jobs_live_rows, jobs_dead_rows, jobs_changed_since_analyze, jobs_table_bytes,
       last_vacuum_at, last_autovacuum_at, last_analyze_at, last_autoanalyze_at,
       autovacuum_enabled, claim_index_bytes, queued_rows,
       oldest_xact_pid, oldest_xact_application_name, oldest_xact_state,
       oldest_xact_backend_type, oldest_xact_seconds, oldest_xact_xmin_age,
       oldest_slot_name, oldest_slot_active, oldest_slot_xmin_age,
       oldest_prepared_gid, oldest_prepared_owner, oldest_prepared_seconds,
       oldest_prepared_xmin_age,
       extract(epoch FROM now() - last_vacuum_at)::float8 AS vacuum_seconds_ago,
       extract(epoch FROM now() - last_analyze_at)::float8 AS analyze_seconds_ago
FROM pgq.health
