-- The pruner's lock: one pruning batch at a time across every process on this database.
-- Transaction-scoped (PgBouncer-safe) and never waits; a separate key from the reaper's
-- so a long prune never delays the recovery of dead workers' jobs.
--
-- The same statement bounds how long this transaction may sit idle: a process frozen
-- between its statements (SIGSTOP, a VM pause, a network partition) would otherwise hold
-- the lock, and lock every other process out, until its session died, which for a
-- partition means TCP keepalive: hours. is_local => the setting ends with the transaction.
SELECT pg_try_advisory_xact_lock(%(key)s::bigint),
       set_config('idle_in_transaction_session_timeout', %(idle_timeout)s, true)
