-- Operator cancel in one statement: a queued job (or one waiting for its parents in a
-- workflow) is cancelled now; a running job is asked
-- to stop (cancel_requested; the worker holding it reads the flag at its next heartbeat and
-- writes the outcome). Jobs in any other state are left alone.
--
-- Concurrency: one UPDATE, not one per state. If a worker claims a queued job between our
-- snapshot and our row lock, READ COMMITTED re-evaluates the WHERE and the SET on the newest
-- version, so the job takes the running branch instead of being missed; a job finished by
-- then no longer matches and is not touched. Returns each job's state after the statement:
-- 'cancelled', or 'running' for a cancel request. The caller then runs
-- job_release_dependents.sql in the same transaction for the jobs cancelled here.
UPDATE pgq.jobs
SET state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END::pgq.job_state,
    finished_at = CASE WHEN state = 'running' THEN finished_at
                       ELSE coalesce(%(now)s::timestamptz, now()) END,
    parents_pending = CASE WHEN state = 'waiting' THEN NULL ELSE parents_pending END,
    cancel_requested = (state = 'running')
WHERE id = ANY(%(ids)s::bigint[]) AND state IN ('queued', 'waiting', 'running')
RETURNING id,
          CASE WHEN waited AND state = 'cancelled'  -- pgq.wait's; see job_finish_many.sql
               THEN state::text || pg_notify('pgq_finished', id::text)::text
               ELSE state::text END
