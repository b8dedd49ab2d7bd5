-- The reaper's lock: one reaping batch at a time across every process on this database.
-- Transaction-scoped, so it is released at COMMIT or ROLLBACK (or when the connection
-- dies) and works behind PgBouncer in transaction mode, unlike a session lock.
-- Never waits: a process that does not get it skips this pass.
SELECT pg_try_advisory_xact_lock(%(key)s::bigint)
