-- The reaper's lock: one reaping batch at a time across every process on this database.
-- Transaction-scoped, so it is released at COMMIT or ROLLBACK (or when the connection
-- dies) and works behind PgBouncer in transaction mode, unlike a session lock.
-- Never waits: a process that does not get it skips this pass.
--
-- The same statement bounds how long this transaction may sit idle: a process frozen
-- between its statements (SIGSTOP, a VM pause, a network partition) would otherwise hold
-- the lock, and lock every other process out, until its session died, which for a
-- partition means TCP keepalive: hours. is_local => the setting ends with the transaction.
SELECT pg_try_advisory_xact_lock(%(key)s::bigint),
       set_config('idle_in_transaction_session_timeout', %(idle_timeout)s, true)
