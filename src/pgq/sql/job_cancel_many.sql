-- Operator cancel in one statement: a queued job is cancelled now; a running job is asked
-- to stop (cancel_requested; the worker holding it reads the flag at its next heartbeat and
-- writes the outcome). Jobs in any other state are left alone.
--
-- Concurrency: one UPDATE, not one per state. If a worker claims a queued job between our
-- snapshot and our row lock, READ COMMITTED re-evaluates the WHERE and the SET on the newest
-- version, so the job takes the running branch instead of being missed; a job finished by
-- then no longer matches and is not touched. Returns each job's state after the statement:
-- 'cancelled', or 'running' for a cancel request.
UPDATE pgq.jobs
SET state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END::pgq.job_state,
    finished_at = CASE WHEN state = 'queued' THEN coalesce(%(now)s::timestamptz, now())
                       ELSE finished_at END,
    cancel_requested = (state = 'running')
WHERE id = ANY(%(ids)s::bigint[]) AND state IN ('queued', 'running')
RETURNING id, state::text
