-- Dead and live row counts of pgq.jobs from the statistics collector: cheap, no scan.
SELECT coalesce(n_dead_tup, 0), coalesce(n_live_tup, 0)
FROM pg_stat_user_tables
WHERE relid = 'pgq.jobs'::regclass
