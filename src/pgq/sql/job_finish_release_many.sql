-- job_finish_many.sql for jobs that have dependents (has_dependents, returned by the
-- claim), releasing them in the same statement: a crash can never leave a parent finished
-- with its dependents still waiting for it, nor release them twice. Plain jobs keep
-- job_finish_many.sql, which reads no dependency at all. The outcome part is that file's,
-- unchanged, plus the successes' results (job_finish_result_many.sql's, for jobs without
-- dependents) and the notification pgq.wait asked for; keep the three in step.
--
-- Release, for every parent that reached a final state here:
--   succeeded            each child's parents_pending drops by one (by the number of its
--                        parents finishing in this batch); the child that reaches 0 is
--                        queued, due at once (or at its own later run_at).
--   failed / cancelled   each waiting child is cancelled, with an error naming the parent,
--                        and so are their waiting descendants (recursively); a child on an
--                        `always` edge (a callback asked to run on failure too) is counted
--                        down as for a success instead.
-- Concurrency, under READ COMMITTED: two parents of one child finishing at the same instant
-- in two workers both UPDATE the child's row; the second waits for the first's row lock,
-- then re-reads the row (EvalPlanQual) and computes parents_pending - n and the CASE on
-- the new version, so exactly one of them sees 0 and queues it. A child cancelled, or
-- released, meanwhile no longer matches state = 'waiting' and is left alone. Parents are
-- fenced by (id, lease_token, state = 'running') like every finish, so a stale attempt,
-- a reaped lease or a duplicate outcome releases nothing. Edges never change once written.
WITH RECURSIVE held AS MATERIALIZED (
    SELECT d.id, d.outcome, d.delay, d.error, d.result
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(outcomes)s::text[],
                %(delays)s::float8[], %(errors)s::jsonb[], %(results)s::jsonb[])
         AS d(id, token, outcome, delay, error, result)
    CROSS JOIN LATERAL (
        SELECT 1 FROM pgq.jobs
        WHERE id = d.id AND lease_token = d.token AND state = 'running'
        FOR UPDATE
    ) AS fenced
), finished AS (
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
        result = CASE WHEN h.outcome = 'succeeded' THEN h.result ELSE j.result END,
        lease_expires_at = NULL,
        cancel_requested = false
    FROM held AS h
    WHERE j.id = h.id
    RETURNING j.id, j.task, j.state, j.waited
), ended AS (
    SELECT id, task, state FROM finished WHERE state IN ('succeeded', 'failed', 'cancelled')
-- pgq:include fragment_release_dependents
)
SELECT f.id,
       CASE WHEN f.waited AND f.state <> 'queued'  -- pgq.wait's; see job_finish_many.sql
            THEN f.state::text || pg_notify('pgq_finished', f.id::text)::text
            ELSE f.state::text END,
       (SELECT count(*) FROM notified) + (SELECT count(*) FROM waiters) AS notified
FROM finished AS f
