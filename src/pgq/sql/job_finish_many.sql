-- Write the outcomes of many attempts in one statement. Each row is fenced by the lease
-- token it was claimed with and by state = 'running': a worker whose lease lapsed (and
-- whose job the reaper requeued, or another worker re-claimed) changes nothing, and sees
-- its id missing from RETURNING.
--   succeeded / failed / cancelled  final now
--   retry    queued again after delay, counted; failed when attempts are used up
--   snooze   queued again after delay, not counted
--   release  queued again now, not counted (graceful shutdown)
-- An error, when given, is appended with the attempt number and database time.
UPDATE pgq.jobs AS j
SET state = CASE
        WHEN d.outcome IN ('succeeded', 'failed', 'cancelled') THEN d.outcome
        WHEN d.outcome = 'retry' AND j.attempts >= j.max_attempts THEN 'failed'
        ELSE 'queued'
    END::pgq.job_state,
    attempts = CASE WHEN d.outcome IN ('snooze', 'release') THEN j.attempts - 1
                    ELSE j.attempts END,
    run_at = CASE WHEN d.outcome IN ('retry', 'snooze')
                  THEN now() + make_interval(secs => d.delay)
                  ELSE j.run_at END,
    finished_at = CASE
        WHEN d.outcome IN ('succeeded', 'failed', 'cancelled')
          OR (d.outcome = 'retry' AND j.attempts >= j.max_attempts) THEN now()
    END,
    errors = CASE WHEN d.error IS NULL THEN j.errors
                  ELSE j.errors || jsonb_build_array(
                      jsonb_build_object('attempt', j.attempts, 'at', now(),
                                         'worker_id', j.worker_id) || d.error)
             END,
    lease_expires_at = NULL,
    cancel_requested = false
FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(outcomes)s::text[],
            %(delays)s::float8[], %(errors)s::jsonb[]) AS d(id, token, outcome, delay, error)
WHERE j.id = d.id AND j.lease_token = d.token AND j.state = 'running'
RETURNING j.id, j.state::text
