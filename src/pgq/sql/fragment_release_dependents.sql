-- Not a statement: the tail of the CTE list that releases or cancels the dependents of jobs
-- that reached a final state, included (store.load_sql, `-- pgq:include
-- fragment_release_dependents`) by job_finish_release_many.sql (a worker's finish) and
-- job_release_dependents.sql (the reaper's and an operator's writes). The including
-- statement defines `ended (id, task, state)`: the jobs that just became final.
-- job_finish_release_many.sql says what each final state does to the dependents, and why
-- two parents finishing at once release a child exactly once.
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
