-- Write the outcomes of many attempts in one statement. Each row is fenced by the lease
-- token it was claimed with and by state = 'running': a worker whose lease lapsed (and
-- whose job the reaper requeued, or another worker re-claimed) changes nothing, and sees
-- its id missing from RETURNING.
--   succeeded / failed / cancelled  final now
--   retry    queued again after delay, counted; failed when attempts are used up (its
--            run_at then stays: a failed job is never due after it finished)
--   snooze   queued again after delay, not counted
--   release  queued again now, not counted (graceful shutdown)
-- An error, when given, is appended with the attempt number and database time.
-- A job that pgq.wait flagged (waited) sends pg_notify('pgq_finished', id) when it ends for
-- good; no other job notifies, so a plain finish takes no NOTIFY lock at commit. The call
-- hides in the state column (pg_notify returns void, which is '' as text) so the rows
-- returned stay (id, state).
--
-- Rows are found by primary key, one LATERAL lookup per outcome, and locked there: a join
-- against the running set would let the planner scan all of jobs_running_idx, whose dead
-- entries pile up between vacuums, so every write would cost more as the queue ages.
WITH held AS MATERIALIZED (
    SELECT d.id, d.outcome, d.delay, d.error
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(outcomes)s::text[],
                %(delays)s::float8[], %(errors)s::jsonb[]) AS d(id, token, outcome, delay, error)
    CROSS JOIN LATERAL (
        SELECT 1 FROM pgq.jobs
        WHERE id = d.id AND lease_token = d.token AND state = 'running'
        FOR UPDATE
    ) AS fenced
)
UPDATE pgq.jobs AS j
SET state = CASE
        WHEN h.outcome IN ('succeeded', 'failed', 'cancelled') THEN h.outcome
        WHEN h.outcome = 'retry' AND j.attempts >= j.max_attempts THEN 'failed'
        ELSE 'queued'
    END::pgq.job_state,
    attempts = CASE WHEN h.outcome IN ('snooze', 'release') THEN j.attempts - 1
                    ELSE j.attempts END,
    run_at = CASE WHEN h.outcome = 'snooze'
                    OR (h.outcome = 'retry' AND j.attempts < j.max_attempts)
                  THEN now() + make_interval(secs => h.delay)
                  ELSE j.run_at END,
    finished_at = CASE
        WHEN h.outcome IN ('succeeded', 'failed', 'cancelled')
          OR (h.outcome = 'retry' AND j.attempts >= j.max_attempts) THEN now()
    END,
    errors = CASE WHEN h.error IS NULL THEN j.errors
                  ELSE j.errors || jsonb_build_array(
                      jsonb_build_object('attempt', j.attempts, 'at', now(),
                                         'worker_id', j.worker_id) || h.error)
             END,
    lease_expires_at = NULL,
    cancel_requested = false
FROM held AS h
WHERE j.id = h.id
RETURNING j.id,
          CASE WHEN j.waited AND j.state <> 'queued'
               THEN j.state::text || pg_notify('pgq_finished', j.id::text)::text
               ELSE j.state::text END
