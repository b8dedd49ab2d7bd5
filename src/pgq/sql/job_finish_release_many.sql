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
), children AS MATERIALIZED (
    -- The direct dependents, locked in id order before any of them is written: workers
    -- finishing members of the same groups at once then take the callbacks' row locks in
    -- one order, and never deadlock on them. FOR UPDATE also reads each one's newest state.
    SELECT c.id, c.state
    FROM pgq.jobs AS c
    WHERE c.id IN (
        SELECT d.child_id FROM pgq.job_dependencies AS d
        WHERE d.parent_id IN (SELECT id FROM ended)
    )
    ORDER BY c.id
    FOR UPDATE
), doomed(id, cause_id, cause_task, cause_state) AS (
    SELECT d.child_id, e.id, e.task::text, e.state::text
    FROM ended AS e
    JOIN pgq.job_dependencies AS d ON d.parent_id = e.id AND NOT d.always
    JOIN children AS c ON c.id = d.child_id AND c.state = 'waiting'
    WHERE e.state <> 'succeeded'
    UNION
    SELECT d.child_id, x.cause_id, x.cause_task, x.cause_state
    FROM doomed AS x
    JOIN pgq.job_dependencies AS d ON d.parent_id = x.id AND NOT d.always
    JOIN pgq.jobs AS c ON c.id = d.child_id AND c.state = 'waiting'
), cancelled AS (
    UPDATE pgq.jobs AS j
    SET state = 'cancelled',
        finished_at = now(),
        parents_pending = NULL,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempts, 'at', now(), 'kind', 'parent_' || x.cause_state,
            'message', 'cancelled because job ' || x.cause_id || ' (' || x.cause_task
                       || ') ' || x.cause_state,
            'traceback', NULL, 'parent_id', x.cause_id))
    FROM (SELECT DISTINCT ON (id) * FROM doomed ORDER BY id, cause_id) AS x
    WHERE j.id = x.id AND j.state = 'waiting'
    RETURNING j.id, j.waited
), waiters AS (
    -- A pgq.wait on a cancelled dependent hears it at once (see job_finish_many.sql).
    SELECT pg_notify('pgq_finished', id::text) FROM cancelled WHERE waited
), resolved AS (
    -- Every job that became final in this statement, and whether it satisfies an edge.
    SELECT id, state = 'succeeded' AS ok FROM ended
    UNION ALL
    SELECT id, false FROM cancelled
), counted AS (
    SELECT d.child_id, count(*)::int AS n
    FROM resolved AS r
    JOIN pgq.job_dependencies AS d ON d.parent_id = r.id AND (r.ok OR d.always)
    WHERE d.child_id NOT IN (SELECT id FROM doomed)
      -- Evaluated once, before the first row: every child is locked, in id order, before
      -- `released` writes any (a success alone never reads `children` otherwise).
      AND (SELECT count(*) FROM children) >= 0
    GROUP BY d.child_id
), released AS (
    UPDATE pgq.jobs AS j
    SET parents_pending = j.parents_pending - c.n,
        state = CASE WHEN j.parents_pending - c.n <= 0 THEN 'queued'
                     ELSE 'waiting' END::pgq.job_state,
        run_at = CASE WHEN j.parents_pending - c.n <= 0 THEN greatest(j.run_at, now())
                      ELSE j.run_at END
    FROM counted AS c
    WHERE j.id = c.child_id AND j.state = 'waiting'
    RETURNING j.id, j.queue, j.state, j.run_at
), notified AS (
    SELECT pg_notify('pgq', queue)
    FROM (SELECT DISTINCT queue FROM released WHERE state = 'queued' AND run_at <= now()) AS due
)
SELECT f.id,
       CASE WHEN f.waited AND f.state <> 'queued'  -- pgq.wait's; see job_finish_many.sql
            THEN f.state::text || pg_notify('pgq_finished', f.id::text)::text
            ELSE f.state::text END,
       (SELECT count(*) FROM notified) + (SELECT count(*) FROM waiters) AS notified
FROM finished AS f
