-- Release the dependents of jobs that reached a final state earlier in the caller's
-- transaction, for the writes other than a worker's finish: the reaper failing or
-- cancelling a lapsed job (job_reap_expired.sql), an operator's cancel
-- (job_cancel_many.sql). Run in the same transaction as that write, right after it, so
-- the two commit together or not at all; %(ids)s are the jobs that write changed, and only
-- those (a job that was already final before it must not release anything twice).
--
-- The release itself, from `ended` on, is fragment_release_dependents.sql, which
-- job_finish_release_many.sql includes too: see that file for what each final state does
-- to the dependents, and why two parents finishing at once release a child exactly once.
WITH RECURSIVE ended AS (
    SELECT id, task, state
    FROM pgq.jobs
    WHERE id = ANY(%(ids)s::bigint[])
      AND has_dependents
      AND state IN ('succeeded', 'failed', 'cancelled')
-- pgq:include fragment_release_dependents
)
SELECT (SELECT count(*) FROM cancelled) AS cancelled,
       (SELECT count(*) FROM released WHERE state = 'queued') AS released,
       (SELECT count(*) FROM notified) + (SELECT count(*) FROM waiters) AS notified
