-- How much pgq.jobs changed since it was last vacuumed and analyzed, from the statistics
-- collector (cheap, no scan): dead row versions, live rows, and rows inserted, updated or
-- deleted since the last ANALYZE.
SELECT coalesce(n_dead_tup, 0), coalesce(n_live_tup, 0), coalesce(n_mod_since_analyze, 0)
FROM pg_stat_user_tables
WHERE relid = 'pgq.jobs'::regclass
