-- The pruner's lock: one pruning batch at a time across every process on this database.
-- Transaction-scoped (PgBouncer-safe) and never waits; a separate key from the reaper's
-- so a long prune never delays the recovery of dead workers' jobs.
SELECT pg_try_advisory_xact_lock(%(key)s::bigint)
