-- One soak sample: the server's clock, the jobs table's dead and live tuples (as the
-- statistics system last heard), its size and its indexes' sizes, the claim index's size
-- (NULL if it was renamed), the due backlog, and autovacuum's visits to the table so far.
SELECT clock_timestamp(),
       s.n_dead_tup,
       s.n_live_tup,
       pg_table_size('pgq.jobs'::regclass),
       pg_indexes_size('pgq.jobs'::regclass),
       pg_relation_size(to_regclass('pgq.jobs_claim_idx')),
       (SELECT count(*) FROM pgq.jobs WHERE state = 'queued' AND run_at <= now()),
       s.autovacuum_count
FROM pg_stat_user_tables AS s
WHERE s.relid = 'pgq.jobs'::regclass
