-- Write the outcomes of many attempts in one statement. Each row is fenced by the lease
-- token it was claimed with and by state = 'running': a worker whose lease lapsed (and
-- whose job the reaper requeued, or another worker re-claimed) changes nothing, and sees
-- its id missing from RETURNING.
--   succeeded / failed / cancelled  final now
--   retry    queued again after delay, counted; failed when attempts are used up
--   snooze   queued again after delay, not counted
--   release  queued again now, not counted (graceful shutdown)
-- An error, when given, is appended with the attempt number and database time.
--
-- The fence is the UPDATE's own WHERE: when another session changed a row after this
-- statement's snapshot, READ COMMITTED re-checks the WHERE on the newest version before
-- writing, so a row re-claimed or requeued meanwhile is left alone. Rows are not locked
-- first (SELECT ... FOR UPDATE in a CTE, as before): that lock cost one more WAL record
-- and one more tuple write per job: an eighth of the writer backend's CPU in a drain.
--
-- Each outcome must find its row by an index lookup of its id (a nested loop over the
-- unnest): a hash join against the running set would read all of jobs_running_idx, whose
-- dead entries pile up between vacuums. The writer connection uses generic plans
-- (session_generic_plans.sql), in which the unnest counts as a few rows, so the lookup is
-- the plan whatever the batch size. Not `id = ANY(ids)`: the generic plan then
-- rescanned the unnest for every row, 44 ms for 400 outcomes instead of 4.
UPDATE pgq.jobs AS j
SET state = CASE
        WHEN h.outcome IN ('succeeded', 'failed', 'cancelled') THEN h.outcome
        WHEN h.outcome = 'retry' AND j.attempts >= j.max_attempts THEN 'failed'
        ELSE 'queued'
    END::pgq.job_state,
    attempts = CASE WHEN h.outcome IN ('snooze', 'release') THEN j.attempts - 1
                    ELSE j.attempts END,
    run_at = CASE WHEN h.outcome IN ('retry', 'snooze')
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
FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(outcomes)s::text[],
            %(delays)s::float8[], %(errors)s::jsonb[]) AS h(id, token, outcome, delay, error)
WHERE j.id = h.id
  AND j.lease_token = h.token
  AND j.state = 'running'
RETURNING j.id, j.state::text
