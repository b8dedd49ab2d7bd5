-- Clean dead rows out of pgq.jobs and its indexes. SKIP_LOCKED: when autovacuum (or
-- another pgq process) is already vacuuming the table, this does nothing instead of
-- waiting. Runs outside a transaction block (the reaper's connection is autocommit).
VACUUM (SKIP_LOCKED) pgq.jobs
